"""The PyTorch reference recipe of SharedTrunkNet (the toolkit's loop), the peer of ``router/train.py``.

Seed after seed: ``torch.manual_seed(seed)``; inner split = ``randperm(N)`` (first ceil(val_fraction·N) rows
validate); ``Sequential(Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear)`` with PyTorch's default
init; ``Adam(lr, weight_decay)`` (coupled L2); every epoch a fresh ``randperm`` of the training rows in
mini-batches of ``batch_size`` (last partial batch kept); loss = BCE-with-logits averaged over observed
(row, target) entries (as ``model.masked_bce``); validation in eval mode under ``no_grad`` after every
epoch; early stopping (improvement iff val < best - min_delta, ``patience`` epochs); best weights restored.
Batches are taken by tensor indexing, not a DataLoader (its per-row collation would only slow the peer).
torch is a test dependency: only benchmarks import this module.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from prefill_router.router.train import TrainConfig


def trunk(d_in: int, n_targets: int, cfg: TrainConfig) -> nn.Sequential:
    layers, width = [], d_in
    for hidden, rate in zip(cfg.hidden, cfg.dropout):
        layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(rate)]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, n_targets))


def masked_bce(logits: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    per_entry = nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
    return (per_entry * m).sum() / m.sum().clamp(min=1.0)


def train_seed(x: torch.Tensor, y: torch.Tensor, m: torch.Tensor, seed: int, cfg: TrainConfig):
    """One seed on X [N, d], Y [N, K] (0 where missing), M [N, K] float -> (model, best_val, epochs_run)."""
    torch.manual_seed(seed)
    n = x.shape[0]
    n_val = math.ceil(cfg.val_fraction * n)
    perm = torch.randperm(n)
    val, tr = perm[:n_val], perm[n_val:]
    model = trunk(x.shape[1], y.shape[1], cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    best, best_state, wait = math.inf, copy.deepcopy(model.state_dict()), 0
    epoch = 0
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        order = tr[torch.randperm(len(tr))]
        for start in range(0, len(order), cfg.batch_size):
            b = order[start:start + cfg.batch_size]
            loss = masked_bce(model(x[b]), y[b], m[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            v = masked_bce(model(x[val]), y[val], m[val]).item()
        if v < best - cfg.min_delta:
            best, best_state, wait = v, copy.deepcopy(model.state_dict()), 0
        else:
            wait += 1
            if wait >= cfg.patience:
                break
    model.load_state_dict(best_state)
    return model, best, epoch


def train_seeds(x: np.ndarray, y: np.ndarray, m: np.ndarray, cfg: TrainConfig) -> dict:
    """Every seed of ``cfg`` one after another; {'best_val' [S], 'epochs_run' [S], 'kept_val' [keep] (lowest)}."""
    xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    yt = torch.from_numpy(np.where(m, np.nan_to_num(y), 0.0).astype(np.float32))
    mt = torch.from_numpy(np.asarray(m, np.float32))
    runs = [train_seed(xt, yt, mt, s, cfg)[1:] for s in cfg.seeds]
    best_val = np.asarray([r[0] for r in runs])
    return {"best_val": best_val, "epochs_run": np.asarray([r[1] for r in runs]),
            "kept_val": np.sort(best_val)[:cfg.keep]}


def load_jax_params(model: nn.Sequential, params: dict) -> None:
    """Copy a JAX trunk's pure-dict params ({'layers': {i: {'kernel' [in, out], 'bias'}}}) into ``model``."""
    linears = [mod for mod in model if isinstance(mod, nn.Linear)]
    with torch.no_grad():
        for i, lin in enumerate(linears):
            lin.weight.copy_(torch.from_numpy(np.asarray(params["layers"][i]["kernel"]).T.copy()))
            lin.bias.copy_(torch.from_numpy(np.asarray(params["layers"][i]["bias"]).copy()))
