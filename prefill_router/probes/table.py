"""All layer probes over every (encoder, pooling, layer, target) in one compiled call per feature group.

Axes: G feature groups (encoder, pooling), L layers, N rows (TRAINING rows only: the caller slices them,
so scalers, PCA, folds and selection never see validation/test rows), D width, K targets, P PCA widths.

`run_probes` stacks every (encoder, pooling) array of equal width D along the layer axis
(`stack_feature_groups`; groups of different D are probed one group per compiled function), then calls
`probe_layers` on layer chunks: one jitted function returning Fisher J, J_diag, d_eff (both forms) and the
CV-AUC grid for the whole chunk. The result is a long-format `ProbeTable` (one record per
(encoder, pooling, layer, target)).
"""
from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from tqdm import tqdm

from prefill_router.probes.cv_auc import (DEFAULT_C, DEFAULT_MAX_ITER, Folds, cv_auc_layer_target,
                                          cv_bytes_per_layer, normalize_pca_dims, resolve_folds,
                                          stratified_folds)
from prefill_router.probes import effdim as effdim_lib
from prefill_router.probes import fisher as fisher_lib
from prefill_router.probes import linalg

METRICS = ("fisher_j", "fisher_j_diag", "d_eff_pr", "d_eff_entropy", "isotropy", "cv_auc")


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """Options of `run_probes` (defaults: method.md section 3 and the toolkit's CV grid). Field names are the
    ``config.probe`` names, so the probe stage builds it from that subtree (`stages.typed`)."""
    shrink: float = fisher_lib.DEFAULT_SHRINK   # eps = shrink * tr(S_W) / k
    shrinkage: str = "fixed"                    # 'fixed' | 'ledoit_wolf'
    pca_dim: int | None = None                  # PCA width inside Fisher J (None: all D)
    cv_pca_dims: tuple = (50, 100, 150, 200, 300)  # CV-AUC grid; None entries = no PCA
    cv_auc: bool = True                         # compute the CV-AUC column
    cv_folds: int = 5
    seed: int = 42
    C: float = DEFAULT_C
    max_iter: int = DEFAULT_MAX_ITER
    effdim_standardize: bool = True
    max_bytes: int = fisher_lib.DEFAULT_MAX_BYTES
    layer_chunk: int | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ProbeTable:
    """Long-format probe results.

    records: one dict per (encoder, pooling, layer, target) with keys encoder, pooling, layer (index as
      given by layer_ids), rel_depth (layer / n_layers of the encoder), target, valid, fisher_j,
      fisher_j_diag, d_eff_pr, d_eff_entropy, isotropy, D, and when CV ran: cv_auc (best over the PCA
      grid), cv_pca_dim (its width; None = no PCA), cv_auc_by_pca {str(width): auc}.
    config: the ProbeConfig as a dict; targets: target names in column order.
    """
    records: list[dict]
    config: dict
    targets: list[str]

    def rows(self, **where) -> list[dict]:
        """Records whose fields equal every keyword, e.g. ``rows(target='gpt', pooling='mean')``."""
        return [r for r in self.records if all(r.get(k) == v for k, v in where.items())]

    def groups(self) -> list[tuple[str, str]]:
        """(encoder, pooling) pairs in first-seen order."""
        return list(dict.fromkeys((r["encoder"], r["pooling"]) for r in self.records))

    def to_json(self) -> str:
        return json.dumps({"config": self.config, "targets": self.targets, "records": self.records},
                          indent=1, default=_json_default)

    @classmethod
    def from_json(cls, text: str) -> "ProbeTable":
        d = json.loads(text)
        return cls(records=d["records"], config=d["config"], targets=d["targets"])


def _json_default(o):
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def _num(v) -> float | None:
    v = float(v)
    return None if not np.isfinite(v) else v


# ----------------------------------------------------------------------------------------------
# Stacking feature groups.
# ----------------------------------------------------------------------------------------------
def stack_feature_groups(features: Mapping[Any, np.ndarray]) -> list[tuple[list, np.ndarray, list[int]]]:
    """Groups the [L_g, N, D_g] arrays by width D and stacks each group along the layer axis.

    Returns [(keys, X [sum L_g, N, D], offsets)]: rows offsets[i] : offsets[i] + L of keys[i] belong to
    keys[i]. Arrays of different D are never padded (zero columns would change tr(S_W)/k and d_eff/D).
    """
    by_width: dict[int, list] = {}
    N = None
    for key, arr in features.items():
        arr = np.asarray(arr, dtype=np.float32)
        if arr.ndim != 3:
            raise ValueError(f"features[{key!r}] must be [L, N, D], got {arr.shape}")
        if N is not None and arr.shape[1] != N:
            raise ValueError(f"features[{key!r}] has N={arr.shape[1]} rows, others {N}; pass the same rows")
        N = arr.shape[1]
        by_width.setdefault(arr.shape[2], []).append((key, arr))
    out = []
    for items in by_width.values():
        keys = [k for k, _ in items]
        offsets = list(np.cumsum([0] + [a.shape[0] for _, a in items])[:-1])
        out.append((keys, np.concatenate([a for _, a in items], axis=0), [int(o) for o in offsets]))
    return out


# ----------------------------------------------------------------------------------------------
# One compiled call per layer chunk.
# ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def probe_layers_fn(config: ProbeConfig, pca_dims: tuple, max_splits: int):
    """A jitted f(X [c, N, D], Y, M, fold_ids, n_splits, w_rows) -> (J, J_diag, d_pr, d_H, auc [c,K,P])."""
    def fn(X, Y, M, fold_ids, n_splits, w_rows):
        Xs = fisher_lib.prestandardize(X)
        J = fisher_lib.fisher_layer_target(Xs, Y, M, shrink=config.shrink, shrinkage=config.shrinkage,
                                           pca_dim=config.pca_dim)
        Jd = fisher_lib.fisher_diag_layer_target(Xs, Y, M)
        pr, ent = effdim_lib.effdim_layers(X, w_rows, standardize=config.effdim_standardize)
        if config.cv_auc:
            auc = cv_auc_layer_target(Xs, Y, M, fold_ids, n_splits, max_splits=max_splits,
                                             pca_dims=pca_dims, C=config.C, max_iter=config.max_iter)
        else:
            auc = jnp.full(J.shape + (len(pca_dims),), jnp.nan)
        return J, Jd, pr, ent, auc
    return jax.jit(fn)


def probe_layers(X, Y, M, config: ProbeConfig = ProbeConfig(), folds: Folds | None = None
                 ) -> dict[str, np.ndarray]:
    """Every probe for one stack X [L, N, D]: {'fisher_j', 'fisher_j_diag' [L, K], 'd_eff_pr',
    'd_eff_entropy', 'isotropy' [L], 'cv_auc' [L, K, P], 'valid' [K], 'pca_dims' (P,)}.

    d_eff uses all N rows (all of them are training rows); the label-based probes use M per target.
    """
    X, Y, M = fisher_lib.check_inputs(X, Y, M)
    L, N, D = X.shape
    K = Y.shape[1]
    if config.shrinkage not in fisher_lib.SHRINKAGES:
        raise ValueError(f"shrinkage must be one of {fisher_lib.SHRINKAGES}, got {config.shrinkage!r}")
    if config.pca_dim is not None and not 1 <= config.pca_dim <= D:
        raise ValueError(f"probe pca_dim={config.pca_dim} must lie in [1, D={D}]")
    dims = normalize_pca_dims(config.cv_pca_dims, D)
    folds = resolve_folds(Y, M, folds, config.cv_folds, config.seed)
    F = max(int(folds.n_splits.max()), 1)
    per_layer = (fisher_lib.fisher_bytes_per_layer(N, D, K)
                 + (cv_bytes_per_layer(N, D, K, F, dims) if config.cv_auc else 0.0))
    chunk = fisher_lib.chunk_for(per_layer, config.max_bytes, config.layer_chunk)
    fn = probe_layers_fn(config, dims, F)
    args = (jnp.asarray(Y), jnp.asarray(M), jnp.asarray(folds.ids), jnp.asarray(folds.n_splits),
            jnp.ones(N, jnp.float32))
    parts = []
    with linalg.lapack_threads(1):  # no OpenBLAS pool under XLA's threads (linalg: shared-CPU collapse)
        for start in tqdm(range(0, L, chunk), desc=f"probes D={D}", leave=False, disable=L <= chunk):
            parts.append(fisher_lib.map_layer_chunks(fn, X[start:start + chunk], chunk, *args))
    J, Jd, pr, ent, auc = [np.concatenate(p, axis=0) for p in zip(*parts)]
    return {"fisher_j": J, "fisher_j_diag": Jd, "d_eff_pr": pr, "d_eff_entropy": ent,
            "isotropy": pr / D, "cv_auc": auc, "valid": fisher_lib.label_validity(Y, M),
            "pca_dims": dims}


def run_probes(features: Mapping[tuple[str, str], np.ndarray], Y, M, config: ProbeConfig = ProbeConfig(), *,
               targets: Sequence[str] | None = None, layer_ids: Mapping[tuple[str, str], Sequence[int]] | None = None,
               n_layers: Mapping[str, int] | None = None) -> ProbeTable:
    """Probes every (encoder, pooling) feature stack on the TRAINING rows passed in.

    Args:
      features: {(encoder, pooling): [L_g, N, D_g]}; all with the same N training rows.
      Y, M: [N, K] labels in {0, 1} and bool mask of the same rows.
      targets: K names (default 't0'...). layer_ids: {(encoder, pooling): the encoder layer index of each
        of the L_g slices} (default 0..L_g-1). n_layers: {encoder: number of blocks} for rel_depth
        (default: max layer id, so the deepest slice has rel_depth 1).
    """
    Y = np.asarray(Y, np.float32)
    K = Y.shape[1] if Y.ndim == 2 else 1
    targets = list(targets) if targets is not None else [f"t{k}" for k in range(K)]
    if len(targets) != K:
        raise ValueError(f"{len(targets)} target names for K={K} label columns")
    folds = stratified_folds(Y, M, config.cv_folds, config.seed)
    records = []
    for keys, X, offsets in stack_feature_groups(features):
        logging.info("probing %d stacked layers of width %d for %s", X.shape[0], X.shape[2], keys)
        res = probe_layers(X, Y, M, config, folds)
        for key, off in zip(keys, offsets):
            encoder, pooling = key
            L = np.asarray(features[key]).shape[0]
            ids = list(layer_ids[key]) if layer_ids and key in layer_ids else list(range(L))
            if len(ids) != L:
                raise ValueError(f"layer_ids[{key!r}] has {len(ids)} entries for {L} layers")
            depth = (n_layers or {}).get(encoder) or max(max(ids), 1)
            for i, layer in enumerate(ids):
                row = off + i
                for k, target in enumerate(targets):
                    rec = {"encoder": encoder, "pooling": pooling, "layer": int(layer),
                           "rel_depth": float(layer) / depth, "target": target, "D": int(X.shape[2]),
                           "valid": bool(res["valid"][k]),
                           "fisher_j": _num(res["fisher_j"][row, k]),
                           "fisher_j_diag": _num(res["fisher_j_diag"][row, k]),
                           "d_eff_pr": _num(res["d_eff_pr"][row]),
                           "d_eff_entropy": _num(res["d_eff_entropy"][row]),
                           "isotropy": _num(res["isotropy"][row])}
                    if config.cv_auc:
                        aucs = res["cv_auc"][row, k]
                        rec["cv_auc_by_pca"] = {str(p): _num(a) for p, a in zip(res["pca_dims"], aucs)}
                        best = int(np.nanargmax(aucs)) if np.isfinite(aucs).any() else None
                        rec["cv_auc"] = None if best is None else _num(aucs[best])
                        rec["cv_pca_dim"] = None if best is None else res["pca_dims"][best]
                    records.append(rec)
    return ProbeTable(records=records, config=config.to_dict(), targets=targets)


__all__ = ["ProbeConfig", "ProbeTable", "run_probes", "probe_layers", "stack_feature_groups", "METRICS"]
