"""Standard evaluation figures (matplotlib, Agg backend, PNG at dpi 150).

* ``plot_cost_accuracy``: cost–accuracy curves of routers, single models as labelled markers, Oracle line.
* ``plot_reliability``: reliability diagrams per target (accuracy vs mean confidence, bin counts).
* ``plot_auc_bars``: per-target AUC bars with bootstrap CI whiskers, one bar group per router.
* ``plot_transfer_matrix``: encoder x target heat map of test AUC with CIs (the transfer experiment).
Palette: Okabe–Ito (colourblind-safe). Every figure is written atomically (`fileio.atomic_writer`).
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from prefill_router import fileio  # noqa: E402

__all__ = ["OKABE_ITO", "plot_cost_accuracy", "plot_reliability", "plot_auc_bars", "plot_result",
           "plot_transfer_matrix"]

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">"]
DPI = 150


def _save(fig, path) -> str:
    path = os.fspath(path)
    with fileio.atomic_writer(path) as f:
        fig.savefig(f, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_cost_accuracy(path, router_curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                       model_points: tuple[Sequence[float], Sequence[float], Sequence[str]],
                       oracle: float | None = None, *,
                       cost_label: str = "mean price of chosen model ($ / M input tokens)",
                       title: str = "Cost–accuracy trade-off", log_x: bool = False) -> str:
    """Router curves (operating points sorted by cost, joined by lines), single models, Oracle.

    Args:
      router_curves: name -> (cost [T], accuracy [T]) operating points.
      model_points: (cost [K], accuracy [K], names [K]) of the single models.
      oracle: Oracle accuracy (horizontal dashed line) or None.
    """
    fig, ax = plt.subplots(figsize=(7.5, 5.0))
    for i, (name, (c, a)) in enumerate(router_curves.items()):
        c = np.asarray(c, dtype=float)
        a = np.asarray(a, dtype=float)
        o = np.argsort(c, kind="mergesort")
        ax.plot(c[o], a[o], "-", color=OKABE_ITO[i % len(OKABE_ITO)], lw=1.8, alpha=0.9, label=name,
                marker=".", ms=3)
    mc, ma, names = model_points
    for k, (c, a, n) in enumerate(zip(mc, ma, names)):
        ax.scatter([c], [a], marker=_MARKERS[k % len(_MARKERS)], s=55, color="0.35", edgecolor="black",
                   zorder=5, label=n)
    if oracle is not None:
        ax.axhline(oracle, color="black", ls="--", lw=1.0, label=f"Oracle ({oracle:.3f})")
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(cost_label)
    ax.set_ylabel("accuracy (fraction of prompts answered correctly)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)  # outside: never covers data
    return _save(fig, path)


def plot_reliability(path, reliability: Sequence[dict], target_names: Sequence[str], *,
                     title: str = "Reliability diagrams") -> str:
    """Grid of reliability diagrams, one panel per target, from ``calibration.per_target_reliability``."""
    K = len(reliability)
    cols = min(K, 4)
    rows = int(np.ceil(K / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    for k in range(rows * cols):
        ax = axes[k // cols][k % cols]
        if k >= K:
            ax.axis("off")
            continue
        r = reliability[k]
        ok = r["count"] > 0
        ax.plot([0, 1], [0, 1], ls="--", color="0.5", lw=1, label="perfect calibration")
        ax.plot(r["confidence"][ok], r["accuracy"][ok], "-o", color=OKABE_ITO[0], ms=4, label="observed")
        frac = r["count"] / max(r["count"].sum(), 1)
        centers = np.where(ok, r["confidence"], np.nan)
        ax.bar(centers[ok], frac[ok], width=0.03, color=OKABE_ITO[1], alpha=0.6, label="share of prompts")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(str(target_names[k]), fontsize=9)
        ax.set_xlabel("mean predicted P(correct)", fontsize=8)
        ax.set_ylabel("observed accuracy", fontsize=8)
        ax.tick_params(labelsize=7)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    return _save(fig, path)


def plot_auc_bars(path, aucs: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float]]],
                  target_names: Sequence[str], *, title: str = "Per-target ROC-AUC (95% bootstrap CI)") -> str:
    """Grouped bars: router name -> (auc [K], ci_low [K], ci_high [K]); whiskers are the CI."""
    K = len(target_names)
    R = len(aucs)
    width = 0.8 / max(R, 1)
    x = np.arange(K)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * K * max(R, 1) ** 0.5 + 2), 4.5))
    for i, (name, (v, lo, hi)) in enumerate(aucs.items()):
        v, lo, hi = (np.asarray(t, dtype=float) for t in (v, lo, hi))
        err = np.vstack([np.maximum(v - lo, 0), np.maximum(hi - v, 0)])
        ax.bar(x + (i - (R - 1) / 2) * width, v, width, yerr=err, capsize=2, color=OKABE_ITO[i % len(OKABE_ITO)],
               label=name, error_kw={"lw": 0.8})
    ax.axhline(0.5, color="0.4", ls=":", lw=1, label="chance (0.5)")
    ax.set_xticks(x)
    ax.set_xticklabels([str(n) for n in target_names], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("ROC-AUC")
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("target model")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return _save(fig, path)


def _auc_with_ci(result: dict) -> tuple[list, list, list]:
    """(auc [K], ci_low [K], ci_high [K]) of an ``evaluate_router`` result, in target order."""
    pt = [result["per_target"][n] for n in result["target_names"]]
    return [t["auc"] for t in pt], [t["auc_ci"][0] for t in pt], [t["auc_ci"][1] for t in pt]


def plot_comparison(results: Mapping[str, dict], out_dir, prefix: str = "routers") -> list[str]:
    """Several routers' ``evaluate_router`` results (same rows) in one figure each: their tolerance-rule
    cost–accuracy curves with the single models and Oracle (per cost axis), and per-target AUC bars."""
    os.makedirs(out_dir, exist_ok=True)
    first = next(iter(results.values()))
    names, cv0 = first["target_names"], first["curves"]
    paths = []
    for ax_name, label in (("price", "mean price of chosen model ($ / M input tokens)"),
                           ("query", "mean cost per prompt ($)")):
        if ax_name not in cv0["model_cost"]:
            continue
        curves_ = {router: (r["curves"]["tolerance"][ax_name], r["curves"]["tolerance"]["acc"])
                   for router, r in results.items()}
        paths.append(plot_cost_accuracy(os.path.join(out_dir, f"{prefix}_cost_accuracy_{ax_name}.png"), curves_,
                                        (cv0["model_cost"][ax_name], cv0["model_acc"], names), cv0["oracle"],
                                        cost_label=label, title=f"Routers, tolerance rule ({ax_name} axis)"))
    aucs = {router: _auc_with_ci(r) for router, r in results.items()}
    paths.append(plot_auc_bars(os.path.join(out_dir, f"{prefix}_auc.png"), aucs, names))
    return paths


def plot_result(result: dict, out_dir, prefix: str = "router") -> list[str]:
    """All three figures for one ``evaluate_router`` result; returns the written paths."""
    os.makedirs(out_dir, exist_ok=True)
    names = result["target_names"]
    cv = result["curves"]
    paths = []
    for ax_name, label in (("price", "mean price of chosen model ($ / M input tokens)"),
                           ("query", "mean cost per prompt ($)")):
        if ax_name not in cv["model_cost"]:
            continue
        curves_ = {"tolerance rule": (cv["tolerance"][ax_name], cv["tolerance"]["acc"]),
                   "λ-utility rule": (cv["lambda"][ax_name], cv["lambda"]["acc"])}
        paths.append(plot_cost_accuracy(os.path.join(out_dir, f"{prefix}_cost_accuracy_{ax_name}.png"), curves_,
                                        (cv["model_cost"][ax_name], cv["model_acc"], names), cv["oracle"],
                                        cost_label=label, title=f"Cost–accuracy ({ax_name} axis)"))
    paths.append(plot_reliability(os.path.join(out_dir, f"{prefix}_reliability.png"), result["calibration"]["uniform"],
                                  names))
    paths.append(plot_auc_bars(os.path.join(out_dir, f"{prefix}_auc.png"), {prefix: _auc_with_ci(result)}, names))
    return paths


def plot_transfer_matrix(path, m: Mapping, control: str) -> str:
    """Heat map of test AUC (encoders x targets), cells annotated with AUC and CI; own-state cells boxed.

    m: {"auc", "ci_low", "ci_high": [E, K], "encoders": [E], "targets": [K]} (NaN cells shown as 'NaN').
    """
    A = np.asarray(m["auc"], np.float64)
    E, K = A.shape
    fig, ax = plt.subplots(figsize=(2.2 + 2.0 * K, 1.2 + 0.9 * E))
    im = ax.imshow(np.ma.masked_invalid(A), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    for i in range(E):
        for k in range(K):
            text = "NaN" if not np.isfinite(A[i, k]) else (
                f"{A[i, k]:.3f}\n[{m['ci_low'][i][k]:.2f}, {m['ci_high'][i][k]:.2f}]")
            ax.text(k, i, text, ha="center", va="center", fontsize=8,
                    color="black" if np.isfinite(A[i, k]) and A[i, k] > 0.6 else "white")
            if m["encoders"][i] == m["targets"][k]:
                ax.add_patch(plt.Rectangle((k - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", lw=2))
    ax.set_xticks(range(K), m["targets"], rotation=20, ha="right")
    ax.set_yticks(range(E), m["encoders"])
    ax.set_xlabel("target (whose correctness is predicted)")
    ax.set_ylabel("encoder (whose prefill states are read)")
    ax.set_title(f"Test ROC-AUC [95% CI], readout {control} (red: own states)", fontsize=9)
    fig.colorbar(im, ax=ax, label="test ROC-AUC")
    return _save(fig, path)
