"""Calibration: reliability-diagram data and expected calibration error (ECE).

Axis letters: N prompts, K targets, B bins.

Binning strategies:
    * ``'uniform'`` (equal width): bin b = [b/B, (b+1)/B) for b < B−1 and the last bin [(B−1)/B, 1]
      (p = 1 falls in the last bin);
    * ``'quantile'`` (equal mass): sort p (stable), the i-th sorted prediction (0-based) goes to bin
      floor(i·B/n), so bin sizes differ by at most one; tied predictions may straddle two bins.
ECE = Σ_b (n_b / n) · |acc_b − conf_b|, acc_b = mean y in bin b, conf_b = mean p in bin b; empty bins
contribute nothing.
"""
from __future__ import annotations

import numpy as np

from prefill_router.evaluation.metrics import check_inputs

__all__ = ["bin_assignments", "reliability_bins", "expected_calibration_error", "per_target_ece",
           "per_target_reliability"]

_STRATEGIES = ("uniform", "quantile")


def bin_assignments(p, n_bins: int = 15, strategy: str = "uniform") -> np.ndarray:
    """[n] bin index in [0, n_bins) of each prediction under ``strategy`` (see module docstring)."""
    p = np.asarray(p, dtype=np.float64)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1; got {n_bins}.")
    if strategy == "uniform":
        if p.size and (p.min() < 0 or p.max() > 1):
            raise ValueError("uniform-bin ECE needs probabilities in [0, 1]; apply a sigmoid first.")
        return np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    if strategy == "quantile":
        order = np.argsort(p, kind="mergesort")
        bins = np.empty(p.size, dtype=np.int64)
        bins[order] = (np.arange(p.size) * n_bins) // max(p.size, 1)
        return bins
    raise ValueError(f"unknown binning strategy {strategy!r}; use one of {_STRATEGIES}.")


def reliability_bins(p, y, n_bins: int = 15, strategy: str = "uniform") -> dict:
    """Reliability-diagram data: per bin the count, mean confidence, accuracy, and the bin's [lo, hi] range.

    Returns arrays of length n_bins: ``count``, ``confidence`` (mean p), ``accuracy`` (mean y), ``lo``/``hi``
    (min/max p in the bin for 'quantile'; the fixed edges for 'uniform'); NaN for empty bins.
    """
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if p.shape != y.shape or p.ndim != 1:
        raise ValueError(f"p and y must be 1-D of the same length; got {p.shape} and {y.shape}.")
    b = bin_assignments(p, n_bins, strategy)
    count = np.bincount(b, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(b, weights=p, minlength=n_bins) / count
        acc = np.bincount(b, weights=y, minlength=n_bins) / count
    if strategy == "uniform":
        lo = np.arange(n_bins) / n_bins
        hi = (np.arange(n_bins) + 1) / n_bins
    else:
        lo = np.full(n_bins, np.nan)
        hi = np.full(n_bins, np.nan)
        nonempty = count > 0
        lo[nonempty] = [p[b == i].min() for i in np.flatnonzero(nonempty)]
        hi[nonempty] = [p[b == i].max() for i in np.flatnonzero(nonempty)]
    return {"count": count, "confidence": conf, "accuracy": acc, "lo": lo, "hi": hi,
            "strategy": strategy, "n_bins": n_bins}


def expected_calibration_error(p, y, n_bins: int = 15, strategy: str = "uniform") -> float:
    """ECE = Σ_b (n_b/n)·|acc_b − conf_b| (NaN for no predictions)."""
    p = np.asarray(p, dtype=np.float64)
    if p.size == 0:
        return float("nan")
    r = reliability_bins(p, y, n_bins, strategy)
    nonempty = r["count"] > 0
    w = r["count"][nonempty] / p.size
    return float(np.sum(w * np.abs(r["accuracy"][nonempty] - r["confidence"][nonempty])))


def per_target_ece(P, Y, M=None, n_bins: int = 15, strategy: str = "uniform") -> np.ndarray:
    """[K] ECE of each target over rows where its label exists."""
    P, Y, M, _, _ = check_inputs(P, Y, M)
    return np.array([expected_calibration_error(P[M[:, k], k], Y[M[:, k], k], n_bins, strategy)
                     for k in range(Y.shape[1])])


def per_target_reliability(P, Y, M=None, n_bins: int = 10, strategy: str = "uniform") -> list[dict]:
    """List of K ``reliability_bins`` dicts (rows with a label for each target)."""
    P, Y, M, _, _ = check_inputs(P, Y, M)
    return [reliability_bins(P[M[:, k], k], Y[M[:, k], k], n_bins, strategy) for k in range(Y.shape[1])]
