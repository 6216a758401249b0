"""Bootstrap over prompts: percentile confidence intervals and paired tests between routers.

Axis letters: N prompts, B bootstrap replicates, D statistics per replicate.

A statistic is a function ``stat(rows) -> float | [D] array`` of an int array of row indices (with
repeats); the point estimate is ``stat(arange(N))``. Resamples are drawn once per call from
``np.random.default_rng(seed)`` as a [B, N] index matrix, so the same seed gives the same resamples for
every statistic (which is what makes a test between two routers *paired*).

Percentile CI at level 1 − α: [q_{α/2}, q_{1−α/2}] of the replicates (``np.nanquantile``, linear);
replicates where the statistic is NaN (e.g. a resample with one class for AUC) are left out and counted.
Paired test of d = stat_a − stat_b: CI of the replicated differences and the two-sided bootstrap p-value
p = min(1, 2·min((1 + #{d*_b ≤ 0}) / (B + 1), (1 + #{d*_b ≥ 0}) / (B + 1))); identical routers give
d* ≡ 0 and p = 1.
"""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np

__all__ = ["resample_indices", "bootstrap_replicates", "bootstrap_ci", "bootstrap_mean_ci",
           "paired_bootstrap_test"]

Stat = Callable[[np.ndarray], "float | np.ndarray"]


def resample_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """[B, N] row indices drawn uniformly with replacement (seeded, reproducible)."""
    if n < 1 or n_boot < 1:
        raise ValueError(f"bootstrap needs n >= 1 rows and n_boot >= 1; got n={n}, n_boot={n_boot}.")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def bootstrap_replicates(stat: Stat, n: int, *, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """[B] or [B, D] values of ``stat`` on each resample."""
    idx = resample_indices(n, n_boot, seed)
    return np.asarray([np.asarray(stat(r), dtype=np.float64) for r in idx])


def _percentile_ci(reps: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_nan = np.isnan(reps).sum(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns → NaN bounds
        lo = np.nanquantile(reps, alpha / 2, axis=0)
        hi = np.nanquantile(reps, 1 - alpha / 2, axis=0)
    return lo, hi, n_nan


def bootstrap_ci(stat: Stat, n: int, *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Percentile bootstrap CI of ``stat`` over prompts.

    Returns {'estimate', 'low', 'high', 'n_nan', 'n_boot', 'alpha'} (arrays of [D] for a vector statistic).
    """
    est = np.asarray(stat(np.arange(n)), dtype=np.float64)
    reps = bootstrap_replicates(stat, n, n_boot=n_boot, seed=seed)
    lo, hi, n_nan = _percentile_ci(reps, alpha)
    return {"estimate": est, "low": lo, "high": hi, "n_nan": n_nan, "n_boot": n_boot, "alpha": alpha}


def bootstrap_mean_ci(values, *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Vectorised CI of a mean: values [N] or [N, D] per-row quantities (NaN rows not allowed).

    Replicate b = values[idx_b].mean(0) with idx from ``resample_indices(N, n_boot, seed)``, i.e. the same
    resamples as ``bootstrap_ci`` with the same seed; computed by gathering in one [B, N(, D)] op.
    """
    v = np.asarray(values, dtype=np.float64)
    if np.isnan(v).any():
        raise ValueError("bootstrap_mean_ci got NaN values; drop rows with missing labels first.")
    idx = resample_indices(v.shape[0], n_boot, seed)
    reps = v[idx].mean(axis=1)
    lo, hi, n_nan = _percentile_ci(reps, alpha)
    return {"estimate": v.mean(axis=0), "low": lo, "high": hi, "n_nan": n_nan, "n_boot": n_boot, "alpha": alpha}


def paired_bootstrap_test(stat_a: Stat, stat_b: Stat, n: int, *, n_boot: int = 1000, seed: int = 0,
                          alpha: float = 0.05) -> dict:
    """Paired bootstrap of d = stat_a − stat_b on shared resamples: {'diff', 'low', 'high', 'p_value', 'n_nan'}."""
    idx = resample_indices(n, n_boot, seed)
    full = np.arange(n)
    diff = float(stat_a(full)) - float(stat_b(full))
    d = np.array([float(stat_a(r)) - float(stat_b(r)) for r in idx])
    return _paired_summary(diff, d, alpha)


def _paired_summary(diff: float, d: np.ndarray, alpha: float) -> dict:
    valid = d[~np.isnan(d)]
    if valid.size == 0:
        return {"diff": diff, "low": float("nan"), "high": float("nan"), "p_value": float("nan"),
                "n_nan": int(d.size)}
    B = valid.size
    p_le = (1 + np.sum(valid <= 0)) / (B + 1)
    p_ge = (1 + np.sum(valid >= 0)) / (B + 1)
    return {"diff": diff, "low": float(np.quantile(valid, alpha / 2)), "high": float(np.quantile(valid, 1 - alpha / 2)),
            "p_value": float(min(1.0, 2 * min(p_le, p_ge))), "n_nan": int(d.size - B)}
