"""Feature blocks: per-target StandardScaler + PCA on pooled prefill states (method.md §4).

Axis letters: N rows (prompts), D raw feature width of a block, k PCA components of a block.

A block reads one or more feature *sources* (encoder, layer, pooling, template kwargs), concatenates them
along features ([N, D]), standardises with the training rows' mean and population std, and projects on the
top-k principal components of the standardised training rows:

    z = ((x - mean) / scale - pca_mean) @ components.T          # [N, k]

Two layouts:
  * per target (the paper's): one ``BlockSpec`` per target, each with its own (encoder, layer, pooling,
    pca_dim); the trunk input is concat(z_1 ... z_K) in the fixed target order, d_in = sum_k pca_dim_k.
  * shared: one ``SharedBlockSpec`` whose sources (e.g. all layers of one encoder, mean pooled) are
    concatenated and then pass through one scaler + PCA.

Everything is fitted on training rows only (``fit_transform`` receives only those rows), in float64 numpy
by the linear readout (`probes.readout.fit_scaler_pca`). The PCA sign convention makes the largest-|.| entry
of every component positive (scikit-learn's ``svd_flip(u_based_decision=False)``), so fits are deterministic. ``pca_dim`` larger than
min(N_train, D) is clamped to that value with a logged warning; the fitted ``k`` is the effective width.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Mapping, Sequence, Union

import numpy as np
from absl import logging

from prefill_router.probes import readout

POOLINGS = ("last", "mean")


def _canonical_kwargs(template_kwargs: Mapping[str, Any] | Sequence[tuple[str, Any]] | None) -> tuple:
    """Template kwargs as a sorted, hashable tuple of (name, value) pairs (JSON-serialisable values)."""
    if not template_kwargs:
        return ()
    items = dict(template_kwargs).items()
    for name, value in items:
        json.dumps(value)  # raises TypeError for values a checkpoint could not store
    return tuple(sorted(items))


@dataclasses.dataclass(frozen=True)
class FeatureSource:
    """One pooled feature matrix: states of ``encoder`` at ``layer`` (0 = embeddings) pooled by ``pooling``.

    ``template_kwargs`` are the chat-template kwargs the prompts were rendered with (e.g. enable_thinking);
    two sources differing only in them are different features.
    """

    encoder: str
    layer: int
    pooling: str
    template_kwargs: tuple = ()

    def __post_init__(self):
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        object.__setattr__(self, "layer", int(self.layer))
        object.__setattr__(self, "template_kwargs", _canonical_kwargs(self.template_kwargs))

    def describe(self) -> str:
        kw = f", {dict(self.template_kwargs)}" if self.template_kwargs else ""
        return f"{self.encoder}[layer {self.layer}, {self.pooling}{kw}]"

    def to_json(self) -> dict:
        return {"encoder": self.encoder, "layer": self.layer, "pooling": self.pooling,
                "template_kwargs": dict(self.template_kwargs)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "FeatureSource":
        return cls(d["encoder"], d["layer"], d["pooling"], d.get("template_kwargs") or ())


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """Per-target block (the paper's layout): one source, scaler + PCA to ``pca_dim``."""

    target: str
    encoder: str
    layer: int
    pooling: str
    pca_dim: int
    template_kwargs: tuple = ()

    def __post_init__(self):
        source = FeatureSource(self.encoder, self.layer, self.pooling, self.template_kwargs)  # validates
        object.__setattr__(self, "layer", source.layer)
        object.__setattr__(self, "template_kwargs", source.template_kwargs)
        _check_pca_dim(self.pca_dim, self.name)

    @property
    def name(self) -> str:
        return self.target

    @property
    def sources(self) -> tuple[FeatureSource, ...]:
        return (FeatureSource(self.encoder, self.layer, self.pooling, self.template_kwargs),)

    def to_json(self) -> dict:
        return {"kind": "per_target", "target": self.target, "encoder": self.encoder, "layer": int(self.layer),
                "pooling": self.pooling, "pca_dim": int(self.pca_dim),
                "template_kwargs": dict(self.template_kwargs)}


@dataclasses.dataclass(frozen=True)
class SharedBlockSpec:
    """Shared block: the sources' features are concatenated ([N, sum D]) then one scaler + PCA."""

    sources: tuple[FeatureSource, ...]
    pca_dim: int
    name: str = "shared"

    def __post_init__(self):
        srcs = tuple(s if isinstance(s, FeatureSource) else FeatureSource(*s) for s in self.sources)
        if not srcs:
            raise ValueError("SharedBlockSpec needs at least one feature source")
        object.__setattr__(self, "sources", srcs)
        _check_pca_dim(self.pca_dim, self.name)

    def to_json(self) -> dict:
        return {"kind": "shared", "name": self.name, "pca_dim": int(self.pca_dim),
                "sources": [s.to_json() for s in self.sources]}


AnyBlockSpec = Union[BlockSpec, SharedBlockSpec]


def spec_from_json(d: Mapping[str, Any]) -> AnyBlockSpec:
    """Inverse of ``spec.to_json()``."""
    if d["kind"] == "per_target":
        return BlockSpec(d["target"], d["encoder"], d["layer"], d["pooling"], d["pca_dim"],
                         d.get("template_kwargs") or ())
    if d["kind"] == "shared":
        return SharedBlockSpec(tuple(FeatureSource.from_json(s) for s in d["sources"]), d["pca_dim"], d["name"])
    raise ValueError(f"unknown block kind {d['kind']!r}; expected 'per_target' or 'shared'")


def _check_pca_dim(pca_dim: int, name: str) -> None:
    if int(pca_dim) < 1:
        raise ValueError(f"block {name!r}: pca_dim must be >= 1, got {pca_dim}")


class FittedTransform(readout.ScalerPCA):
    """A block's fitted StandardScaler + PCA (`probes.readout.ScalerPCA`, always with PCA):
    z = ((x - mean) / scale - pca_mean) @ components.T; components [k, D] float64 (orthonormal rows)."""

    @property
    def in_dim(self) -> int:
        return int(self.mean.shape[0])

    @property
    def out_dim(self) -> int:
        return int(self.components.shape[0])

    def apply(self, x: np.ndarray, name: str = "block") -> np.ndarray:
        """Project rows x [N, D] -> [N, k] float32. Raises on a width mismatch or non-finite values."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"block {name!r}: features have shape {x.shape}, the fitted transform expects "
                             f"[N, {self.in_dim}]; check the encoder/layer/pooling of the features")
        check_finite(x, name)
        return self.transform(x).astype(np.float32)


def check_finite(x: np.ndarray, name: str, row_ids: np.ndarray | None = None) -> None:
    """Raise ValueError naming the first rows of ``x`` [N, D] that hold NaN/inf."""
    bad = ~np.isfinite(x)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        if row_ids is not None:
            rows = np.asarray(row_ids)[rows]
        raise ValueError(f"block {name!r}: non-finite (NaN/inf) features in {len(rows)} row(s), first rows "
                         f"{rows[:8].tolist()}; fix or drop those prompts before fitting/applying")


def fit_transform(x_train: np.ndarray, pca_dim: int, name: str = "block") -> FittedTransform:
    """Fit StandardScaler (population std; scale 1 for constant features) + full-SVD PCA on x_train [N, D]."""
    x = np.asarray(x_train)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"block {name!r}: need a 2-D training matrix with >= 2 rows, got shape {x.shape}")
    check_finite(x, name)
    x = x.astype(np.float64)
    n, d = x.shape
    k = int(pca_dim)
    if k > min(n, d):
        logging.warning("block %r: pca_dim %d > min(N_train=%d, D=%d); clamped to %d", name, k, n, d, min(n, d))
        k = min(n, d)
    return FittedTransform(**readout.fit_scaler_pca(x, k).arrays())


FeaturesLookup = Union[Mapping[Any, np.ndarray], Callable[[FeatureSource], np.ndarray]]


def lookup_source(features_lookup: FeaturesLookup, source: FeatureSource) -> np.ndarray:
    """Features [N, D] of one source from a callable(source) or a mapping.

    A mapping may be keyed by ``FeatureSource`` objects, or (when the source has no template kwargs) by
    plain ``(encoder, layer, pooling)`` tuples.
    """
    if callable(features_lookup) and not isinstance(features_lookup, Mapping):
        x = features_lookup(source)
    elif source in features_lookup:
        x = features_lookup[source]
    elif not source.template_kwargs and (source.encoder, source.layer, source.pooling) in features_lookup:
        x = features_lookup[(source.encoder, source.layer, source.pooling)]
    else:
        raise KeyError(f"no features for {source.describe()}; add them to the lookup (keyed by FeatureSource "
                       f"or (encoder, layer, pooling))")
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"features of {source.describe()} must be [N, D], got shape {x.shape}")
    return x


def block_features(features_lookup: FeaturesLookup, spec: AnyBlockSpec) -> np.ndarray:
    """Raw features of a block [N, sum D]: its sources concatenated in order."""
    mats = [lookup_source(features_lookup, s) for s in spec.sources]
    if len({m.shape[0] for m in mats}) != 1:
        raise ValueError(f"block {spec.name!r}: sources have different row counts {[m.shape[0] for m in mats]}")
    return mats[0] if len(mats) == 1 else np.concatenate(mats, axis=1)


def _row_index(train_rows: np.ndarray, n: int) -> np.ndarray:
    rows = np.asarray(train_rows)
    if rows.dtype == bool:
        if rows.shape != (n,):
            raise ValueError(f"boolean train_rows must have shape ({n},), got {rows.shape}")
        return np.flatnonzero(rows)
    if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
        raise ValueError("train_rows must be a boolean mask [N] or a 1-D integer index array")
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise ValueError(f"train_rows indices must lie in [0, {n}); got range [{rows.min()}, {rows.max()}]")
    return rows


def build_design(features_lookup: FeaturesLookup, specs: Sequence[AnyBlockSpec],
                 train_rows: np.ndarray) -> tuple[list[FittedTransform], np.ndarray]:
    """Fit each block on ``train_rows`` only and project all rows: -> (transforms, X_all [N, sum k]).

    Blocks are concatenated in the given (fixed target) order. ``train_rows``: bool mask [N] or indices.
    Non-finite features raise ValueError naming the block and rows (checked on all rows).
    """
    if not specs:
        raise ValueError("build_design needs at least one block spec")
    transforms, zs, n_rows = [], [], None
    for spec in specs:
        x = block_features(features_lookup, spec)
        if n_rows is None:
            n_rows = x.shape[0]
        elif x.shape[0] != n_rows:
            raise ValueError(f"block {spec.name!r} has {x.shape[0]} rows, earlier blocks have {n_rows}")
        check_finite(x, spec.name)
        rows = _row_index(train_rows, n_rows)
        t = fit_transform(x[rows], spec.pca_dim, spec.name)
        transforms.append(t)
        zs.append(t.apply(x, spec.name))
    return transforms, np.concatenate(zs, axis=1)


def apply_design(features_lookup: FeaturesLookup, specs: Sequence[AnyBlockSpec],
                 transforms: Sequence[FittedTransform]) -> np.ndarray:
    """Apply fitted transforms to new features: -> X [N, sum k] in the specs' order."""
    if len(specs) != len(transforms):
        raise ValueError(f"{len(specs)} block specs but {len(transforms)} fitted transforms")
    zs = [t.apply(block_features(features_lookup, s), s.name) for s, t in zip(specs, transforms)]
    if len({z.shape[0] for z in zs}) != 1:
        raise ValueError(f"blocks have different row counts {[z.shape[0] for z in zs]}")
    return np.concatenate(zs, axis=1)
