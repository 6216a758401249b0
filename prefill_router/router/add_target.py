"""Add a target to a trained router from a few labels, without retraining it (issue #19).

Axis letters: N labelled prompts, K old targets, S kept seeds, d trunk input width (the bundle's blocks), H the
trunk's last hidden width. Inputs: X [N, d] = ``bundle.features(...)`` of the labelled prompts, y [N] in {0, 1}.
Every fit below is an L2 logistic regression (`probes.readout.fit_logreg`, C as scikit-learn's) on features
standardised with the N rows' mean / std, the standardisation folded back into the weights.

    head      frozen trunk: per kept seed s, a logistic regression on its penultimate activations h_s(x) [N, H]
              becomes output column K of that seed's last layer. The old columns are untouched, so the old
              targets' predictions are unchanged; the ensemble averages the members' sigmoids as for any target.
    readout   one logistic regression u(x) = w·x + b on the trunk input (the selected layers' PCA blocks), carried
              exactly through the trunk by two extra ReLU units per hidden layer, relu(u) and relu(-u)
              (relu(relu(u)) = relu(u); logit_K = relu(u) - relu(-u) = u). The extra units have zero weights to
              and from the old units, so the old predictions change only by float32 rounding (two more zero
              terms in the second layer's sums; <= a few 1e-7).
    finetune  head, then ``finetune_steps`` full-batch Adam steps on ALL trunk weights of every member with
              loss = BCE(logit_K, y) + distill_weight · mean_k BCE(logit_k, p_k^old), p^old the member's own
              frozen old probabilities on the same prompts (distillation); the old targets drift (reported).

The result is an ordinary ``RouterBundle`` with K + 1 targets (save_router / load_router / route / evaluate).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from prefill_router.probes import readout
from prefill_router.router import model as model_lib
from prefill_router.router.ensemble import Ensemble, RouterBundle, prompt_hashes

MODES = ("head", "readout", "finetune")
MIN_LABELS = 8       # fewest labelled prompts of the new target
MIN_PER_CLASS = 2    # fewest correct and fewest incorrect among them (a two-class fit)


@dataclasses.dataclass(frozen=True)
class AddConfig:
    """mode: head | readout | finetune; C: inverse L2 strength of the logistic fits; finetune_*: Adam steps and
    learning rate of the fine-tune; distill_weight: weight of the old heads' distillation term."""

    mode: str = "head"
    C: float = 1.0
    finetune_steps: int = 100
    finetune_lr: float = 1e-4
    distill_weight: float = 1.0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown add-target mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.C <= 0 or self.finetune_steps < 1 or self.finetune_lr <= 0 or self.distill_weight < 0:
            raise ValueError(f"add-target settings out of range: {self}; need C > 0, finetune_steps >= 1, "
                             "finetune_lr > 0, distill_weight >= 0")


def check_labels(y: np.ndarray, name: str) -> np.ndarray:
    """y [N] as float32 after checking it is 0/1 with >= MIN_LABELS rows and >= MIN_PER_CLASS of each class."""
    y = np.asarray(y, np.float64)
    if y.ndim != 1 or not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"labels of new target {name!r} must be a 1-D array of 0/1 without missing values")
    pos = int(y.sum())
    if len(y) < MIN_LABELS or min(pos, len(y) - pos) < MIN_PER_CLASS:
        raise ValueError(f"new target {name!r} has {len(y)} labelled prompts ({pos} correct, {len(y) - pos} "
                         f"incorrect); a two-class fit needs >= {MIN_LABELS} prompts with >= {MIN_PER_CLASS} of "
                         "each class; label more prompts")
    return y.astype(np.float32)


def _logreg_folded(z: jax.Array, y: jax.Array, C: float) -> tuple[jax.Array, jax.Array]:
    """Logistic regression on standardised z [N, p] -> (w [p], b) acting on the raw z: logit = z @ w + b."""
    w_rows = jnp.ones(z.shape[0], z.dtype)
    zs, mu, sigma = readout.weighted_standardize(z, w_rows)
    theta, _ = readout.fit_logreg(zs, y, w_rows, C=C)
    w = theta[:-1] / sigma
    return w, theta[-1] - jnp.dot(w, mu)


def _hidden(params, x):
    """Activations of the last hidden layer [N, H] of one member (inference mode)."""
    layers = params["layers"]
    for i in range(len(layers) - 1):
        x = jax.nn.relu(x @ layers[i]["kernel"] + layers[i]["bias"])
    return x


def penultimate(ensemble: Ensemble, x: np.ndarray) -> np.ndarray:
    """[S, N, H]: every kept member's last hidden activations for trunk inputs x [N, d]."""
    x = jnp.asarray(x, jnp.float32)
    return np.asarray(jax.vmap(lambda p: _hidden(p, x))(ensemble.params))


@functools.partial(jax.jit, static_argnames="C")
def _heads(params, x, y, C):
    return jax.vmap(lambda p: _logreg_folded(_hidden(p, x), y, C))(params)


def fit_heads(ensemble: Ensemble, x: np.ndarray, y: np.ndarray, C: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-member heads on the frozen trunk: (W [S, H], b [S]), logit_s = h_s(x) @ W[s] + b[s]."""
    w, b = _heads(ensemble.params, jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), float(C))
    return np.asarray(w), np.asarray(b)


def fit_readout(x: np.ndarray, y: np.ndarray, C: float) -> tuple[np.ndarray, float]:
    """Logistic readout on the trunk input: (w [d], b), logit = x @ w + b."""
    w, b = jax.jit(_logreg_folded, static_argnames="C")(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32),
                                                          C=float(C))
    return np.asarray(w), float(b)


def _stack(params: dict) -> int:
    return int(np.shape(params["layers"][0]["kernel"])[0])


def with_head(params: dict, w: np.ndarray, b: np.ndarray) -> dict:
    """Stacked member params with output column K appended to the last layer: kernel [S, H, K+1], bias [S, K+1]."""
    layers = {i: dict(layer) for i, layer in params["layers"].items()}
    last = layers[len(layers) - 1]
    last["kernel"] = np.concatenate([np.asarray(last["kernel"]), np.asarray(w, np.float32)[:, :, None]], axis=2)
    last["bias"] = np.concatenate([np.asarray(last["bias"]), np.asarray(b, np.float32)[:, None]], axis=1)
    return {"layers": layers}


def with_readout(params: dict, w: np.ndarray, b: float) -> dict:
    """Stacked params whose trunk also carries u = x @ w + b through two ReLU units per hidden layer (module doc)."""
    S = _stack(params)
    layers = {i: {k: np.asarray(v) for k, v in layer.items()} for i, layer in params["layers"].items()}
    n = len(layers)
    w = np.asarray(w, np.float32)
    # first hidden layer: units relu(u), relu(-u)
    layers[0]["kernel"] = np.concatenate([layers[0]["kernel"], np.broadcast_to(
        np.stack([w, -w], axis=1), (S, w.size, 2))], axis=2)
    layers[0]["bias"] = np.concatenate([layers[0]["bias"], np.tile(np.float32([b, -b]), (S, 1))], axis=1)
    for i in range(1, n):
        k = layers[i]["kernel"]                                           # [S, in, out]
        rows = np.zeros((S, 2, k.shape[2]), np.float32)                   # the 2 carried units feed no old unit
        k = np.concatenate([k, rows], axis=1)
        if i < n - 1:                                                     # copy the carried units onwards
            cols = np.zeros((S, k.shape[1], 2), np.float32)
            cols[:, -2:, :] = np.eye(2, dtype=np.float32)
            layers[i]["kernel"] = np.concatenate([k, cols], axis=2)
            layers[i]["bias"] = np.concatenate([layers[i]["bias"], np.zeros((S, 2), np.float32)], axis=1)
        else:                                                             # output K = relu(u) - relu(-u)
            col = np.zeros((S, k.shape[1], 1), np.float32)
            col[:, -2:, 0] = (1.0, -1.0)
            layers[i]["kernel"] = np.concatenate([k, col], axis=2)
            layers[i]["bias"] = np.concatenate([layers[i]["bias"], np.zeros((S, 1), np.float32)], axis=1)
    return {"layers": layers}


@functools.lru_cache(maxsize=8)
def _finetune_fn(config: model_lib.TrunkConfig, cfg: AddConfig):
    """Jitted (stacked params, x, y) -> (params, loss history [S, steps]); one program per config and shapes."""
    graphdef = model_lib.graphdef_of(config)
    K = config.n_targets - 1
    opt = optax.adam(cfg.finetune_lr)

    def member(p0, x, y):
        p_old = jax.nn.sigmoid(model_lib.apply(graphdef, p0, x)[:, :K])

        def loss(p):
            logits = model_lib.apply(graphdef, p, x)
            new = jnp.mean(optax.sigmoid_binary_cross_entropy(logits[:, K], y))
            old = jnp.mean(optax.sigmoid_binary_cross_entropy(logits[:, :K], p_old)) if K else 0.0
            return new + cfg.distill_weight * old

        def step(carry, _):
            p, state = carry
            value, grads = jax.value_and_grad(loss)(p)
            updates, state = opt.update(grads, state, p)
            return (optax.apply_updates(p, updates), state), value

        (p, _), history = jax.lax.scan(step, (p0, opt.init(p0)), None, length=cfg.finetune_steps)
        return p, history

    return jax.jit(jax.vmap(member, in_axes=(0, None, None)))


def finetune(config: model_lib.TrunkConfig, params: dict, x: np.ndarray, y: np.ndarray,
             cfg: AddConfig) -> tuple[dict, np.ndarray]:
    """Fine-tunes every member (params with K + 1 outputs) on (x, y); distils the old K outputs against the
    member's own starting probabilities. Returns (params, loss history [steps, S])."""
    out, history = _finetune_fn(config, cfg)(jax.tree.map(jnp.asarray, params), jnp.asarray(x, jnp.float32),
                                             jnp.asarray(y, jnp.float32))
    return jax.tree.map(np.asarray, out), np.asarray(history).T


def add_target(bundle: RouterBundle, name: str, x: np.ndarray, y: np.ndarray, cfg: AddConfig, *,
               prompts: Sequence[str], price: tuple[float, float],
               output_tokens_median: float) -> tuple[RouterBundle, dict]:
    """A new bundle with target ``name`` appended (column K) and a report (labels, mode, drift of old targets).

    x [N, d]: ``bundle.features`` of ``prompts``; y [N] 0/1; price ($/M in, $/M out) and the median output
    length of the new target for the cost estimate. The new bundle's training split adds ``prompts``.
    """
    if name in bundle.targets:
        raise ValueError(f"target {name!r} already exists in the router (targets {list(bundle.targets)}); "
                         "choose another name")
    x = np.asarray(x, np.float32)
    if x.ndim != 2 or x.shape != (len(prompts), bundle.ensemble.config.d_in):
        raise ValueError(f"features have shape {x.shape}; expected [{len(prompts)}, {bundle.ensemble.config.d_in}]")
    y = check_labels(y, name)
    ens = bundle.ensemble
    old = ens.predict(x)
    if cfg.mode == "readout":
        w, b = fit_readout(x, y, cfg.C)
        params = with_readout(ens.params, w, b)
        trunk = model_lib.TrunkConfig(ens.config.d_in, ens.config.n_targets + 1,
                                      tuple(h + 2 for h in ens.config.hidden), ens.config.dropout)
    else:
        W, b = fit_heads(ens, x, y, cfg.C)
        params = with_head(ens.params, W, b)
        trunk = dataclasses.replace(ens.config, n_targets=ens.config.n_targets + 1)
    history = None
    if cfg.mode == "finetune":
        params, history = finetune(trunk, params, x, y, cfg)
    names = tuple(ens.target_names or bundle.targets) + (name,)
    new_ens = Ensemble(trunk, params, ens.seeds, ens.val_losses, names, ens.report)
    P = new_ens.predict(x)
    drift = np.abs(P[:, :-1] - old)
    split = dict(bundle.train_split)
    hashes = sorted(set(split.get("prompt_hashes", ())) | set(prompt_hashes(prompts)))
    split.update(prompt_hashes=hashes, n_train=len(hashes))
    report = {"target": name, "mode": cfg.mode, "n_labels": len(y), "n_correct": int(y.sum()),
              "C": cfg.C, "drift_old_max": float(drift.max()), "drift_old_mean": float(drift.mean()),
              "finetune_loss": None if history is None else {"first": history[0].tolist(),
                                                             "last": history[-1].tolist()}}
    if cfg.mode == "finetune":
        report.update(finetune_steps=cfg.finetune_steps, finetune_lr=cfg.finetune_lr,
                      distill_weight=cfg.distill_weight)
    extra = dict(bundle.extra)
    extra["added_targets"] = list(extra.get("added_targets", [])) + [report]
    new = RouterBundle(targets=tuple(bundle.targets) + (name,), blocks=list(bundle.blocks),
                       transforms=list(bundle.transforms), ensemble=new_ens,
                       prices={**bundle.prices, name: tuple(float(v) for v in price)},
                       cost_table={**bundle.cost_table, name: {"output_tokens_median": float(output_tokens_median)}},
                       encoders=dict(bundle.encoders), train_config=dict(bundle.train_config), train_split=split,
                       extra=extra, package_version=bundle.package_version)
    return new, report
