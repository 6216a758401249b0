"""Per-query output-length prediction, usable by every router (the paper's per-model median is the baseline);
its error metrics are ``evaluation.lengths.length_metrics``.

Axis letters: N prompts, K targets, D query-feature width, A ridge penalties.

The prefill paper prices a call as n_in·price_in + median_train_output_tokens_k·price_out (method.md §6);
output length is not predicted per query. Here:

* ``median_tokens``: the paper's constant, median observed output tokens per target on training rows.
* ``fit_length_predictor``: per target, ridge regression of log1p(output tokens) on standardised query
  features (prefill design matrix, sentence embedding, ...), fitted on training rows only. An inner split
  of the training rows (seeded, ``val_fraction``) picks the ridge penalty α per target (validation MSE in log
  space) and then the SOURCE per target: the ridge prediction replaces the median only where its validation
  MAE in tokens is lower. The chosen model is refitted on all training rows. Prediction: expm1(ŷ) ≥ 0 (a
  conditional median under a symmetric log-error, the same statistic as the baseline).
* ``query_costs``: $ [N, K] = n_in·price_in/1e6 + out_tokens·price_out/1e6 from any output-token estimate;
  ``realised_costs``: the measured cost (the dataset's real $ where known, else n_in·price_in + OBSERVED
  output tokens·price_out) — for measuring a policy only, never for deciding.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from prefill_router.data.costs import PriceTable, estimate_input_tokens

DEFAULT_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
SOURCES = ("median", "ridge")


def check_tokens(tokens, n_rows: int | None = None) -> np.ndarray:
    """Output tokens [N, K] as float64 (NaN = unknown); one-line ValueError on a wrong shape, a negative or an infinite count."""
    t = np.asarray(tokens, np.float64)
    if t.ndim != 2 or (n_rows is not None and t.shape[0] != n_rows):
        raise ValueError(f"output tokens must be [N, K]{'' if n_rows is None else f' with N={n_rows}'}, "
                         f"got shape {t.shape}")
    if np.any(t[np.isfinite(t)] < 0) or np.any(np.isinf(t)):
        raise ValueError("output tokens must be finite and >= 0 (NaN where unknown)")
    return t


def median_tokens(tokens, rows) -> np.ndarray:
    """[K] median observed output tokens per target over ``rows``; NaN for a target never observed there."""
    t = check_tokens(tokens)[np.asarray(rows)]
    out = np.full(t.shape[1], np.nan)
    for k in range(t.shape[1]):
        col = t[:, k][~np.isnan(t[:, k])]
        if col.size:
            out[k] = np.median(col)
    return out


@dataclasses.dataclass
class _Ridge:
    """ŷ = ((x − mean)/scale)·w + b for one target, in log1p space."""
    mean: np.ndarray
    scale: np.ndarray
    w: np.ndarray
    b: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale) @ self.w + self.b


def _ridge_path(x: np.ndarray, y: np.ndarray, alphas) -> list[_Ridge]:
    """Ridge fits for every α (one SVD): w(α) = V diag(s/(s² + α)) Uᵀ(y − ȳ) on standardised x."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    z = (x - mean) / scale
    b = float(y.mean())
    u, s, vt = np.linalg.svd(z, full_matrices=False)
    uty = u.T @ (y - b)
    return [_Ridge(mean, scale, vt.T @ (s / (s ** 2 + a) * uty), b) for a in alphas]


def mae(pred: np.ndarray, obs: np.ndarray) -> float:
    """Mean absolute error (tokens) of pred vs obs, same shape."""
    return float(np.mean(np.abs(pred - obs)))


@dataclasses.dataclass
class LengthPredictor:
    """Per-target output-length model: source[k] ∈ {'median', 'ridge'}; predict(X) -> tokens [N, K]."""

    medians: np.ndarray                 # [K] training-row medians (NaN: never observed)
    ridges: list                        # [K] _Ridge or None
    source: tuple[str, ...]             # [K] chosen on the inner validation rows
    alpha: np.ndarray                   # [K] chosen ridge penalty (NaN without a ridge)
    val_mae: dict                       # {'median': [K], 'ridge': [K]} inner-validation MAE (tokens)

    def predict(self, x: np.ndarray, *, source: str | None = None) -> np.ndarray:
        """Tokens [N, K] from each target's chosen source (``source`` forces one for every target that has
        it; a target without observed lengths stays NaN)."""
        x = np.asarray(x, np.float64)
        out = np.tile(self.medians, (x.shape[0], 1))
        for k, ridge in enumerate(self.ridges):
            use = source or self.source[k]
            if use not in SOURCES:
                raise ValueError(f"unknown length source {use!r}; use one of {SOURCES}")
            if use == "ridge" and ridge is not None:
                out[:, k] = np.maximum(np.expm1(ridge(x)), 0.0)
        return out


def fit_length_predictor(x, tokens, train_rows, *, alphas=DEFAULT_ALPHAS, val_fraction: float = 0.15,
                         seed: int = 0, min_rows: int = 20) -> LengthPredictor:
    """Fit per-target ridge length models on ``train_rows`` and choose ridge vs median per target (module
    docstring). x [N, D] query features; tokens [N, K] observed output tokens, NaN where unknown.
    Targets with fewer than ``min_rows`` observed training lengths keep the median."""
    x = np.asarray(x, np.float64)
    t = check_tokens(tokens, x.shape[0])
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    if not np.isfinite(x).all():
        raise ValueError("query features hold NaN/inf; fix the feature rows before fitting lengths")
    rows = np.asarray(train_rows)
    perm = np.random.default_rng(seed).permutation(rows)
    n_val = max(1, int(np.ceil(val_fraction * rows.size)))
    val, fit = perm[:n_val], perm[n_val:]
    k_count = t.shape[1]
    medians = median_tokens(t, rows)
    fit_medians = median_tokens(t, fit)
    ridges, source, alpha = [None] * k_count, ["median"] * k_count, np.full(k_count, np.nan)
    val_mae = {"median": np.full(k_count, np.nan), "ridge": np.full(k_count, np.nan)}
    for k in range(k_count):
        f = fit[~np.isnan(t[fit, k])]
        v = val[~np.isnan(t[val, k])]
        if f.size < min_rows or v.size == 0:
            continue
        path = _ridge_path(x[f], np.log1p(t[f, k]), alphas)
        mse = [np.mean((r(x[v]) - np.log1p(t[v, k])) ** 2) for r in path]
        best = int(np.argmin(mse))
        val_mae["ridge"][k] = mae(np.maximum(np.expm1(path[best](x[v])), 0.0), t[v, k])
        val_mae["median"][k] = mae(np.full(v.size, fit_medians[k]), t[v, k])
        alpha[k] = alphas[best]
        if val_mae["ridge"][k] < val_mae["median"][k]:
            source[k] = "ridge"
        all_k = rows[~np.isnan(t[rows, k])]
        ridges[k] = _ridge_path(x[all_k], np.log1p(t[all_k, k]), [alphas[best]])[0]
    return LengthPredictor(medians, ridges, tuple(source), alpha, val_mae)


def query_costs(n_input_tokens, output_tokens, prices, targets) -> np.ndarray:
    """$ [N, K] = n_in·price_in/1e6 + out·price_out/1e6; output_tokens [K] or [N, K] (NaN not allowed)."""
    p_in, p_out = (prices if isinstance(prices, PriceTable) else PriceTable.from_dict(prices)).per_token(targets)
    n_in = np.asarray(n_input_tokens, np.float64)[:, None]
    out = np.broadcast_to(np.asarray(output_tokens, np.float64), (n_in.shape[0], len(targets)))
    if np.isnan(out).any():
        raise ValueError("output-token estimate holds NaN; fill every (prompt, target) (e.g. the median)")
    return n_in * p_in + out * p_out


def realised_costs(ds, fallback_tokens) -> tuple[np.ndarray, float]:
    """(measured $ [N, K], fraction of entries that fell back): ds.costs where known, else n_in·price_in +
    observed output tokens·price_out, else the ``fallback_tokens`` [K] estimate (e.g. training medians)."""
    n_in = estimate_input_tokens(ds.prompts)
    fb = query_costs(n_in, np.nan_to_num(np.asarray(fallback_tokens, np.float64)), ds.prices, ds.targets)
    out = fb.copy()
    known = np.zeros(fb.shape, bool)
    if ds.output_tokens is not None:
        obs = ~np.isnan(ds.output_tokens)
        from_tokens = query_costs(n_in, np.nan_to_num(ds.output_tokens.astype(np.float64)), ds.prices, ds.targets)
        out = np.where(obs, from_tokens, out)
        known |= obs
    if ds.costs is not None:
        real = ~np.isnan(ds.costs)
        out = np.where(real, ds.costs.astype(np.float64), out)
        known |= real
    return out, float(1.0 - known.mean())
