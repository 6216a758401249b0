"""Probe report: table (JSON + Markdown), heat maps, depth curves, J-vs-CV-AUC agreement summary.

Plots use matplotlib's Agg backend (no display). Every file is written atomically (tmp + os.replace).
"""
from __future__ import annotations

import math
import os
import pathlib
from typing import Sequence

import numpy as np
import scipy.stats

from prefill_router import fileio
from prefill_router.probes.select import CRITERIA, LayerChoice, select_layers
from prefill_router.probes.table import ProbeTable

_LABELS = {"fisher": "Fisher J", "fisher_diag": "diagonal Fisher J", "cv_auc": "CV ROC-AUC"}


def _save_fig(fig, path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with fileio.atomic_writer(path) as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")


def _fmt(v, digits=4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "NaN"
    return f"{v:.{digits}g}"


def _value(v) -> float:
    return float("nan") if v is None else float(v)


# ----------------------------------------------------------------------------------------------
# Tables and summary.
# ----------------------------------------------------------------------------------------------
def markdown_table(table: ProbeTable) -> str:
    """One Markdown row per (encoder, pooling, layer, target)."""
    has_cv = any("cv_auc" in r for r in table.records)
    head = ["encoder", "pooling", "layer", "rel. depth", "target", "J", "J_diag", "d_eff (PR)",
            "d_eff (entropy)", "isotropy"] + (["CV-AUC", "PCA dim"] if has_cv else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table.records:
        cells = [r["encoder"], r["pooling"], str(r["layer"]), f"{r['rel_depth']:.3f}", r["target"],
                 _fmt(r["fisher_j"]), _fmt(r["fisher_j_diag"]), _fmt(r["d_eff_pr"]), _fmt(r["d_eff_entropy"]),
                 _fmt(r["isotropy"], 3)]
        if has_cv:
            cells += [_fmt(r.get("cv_auc")), str(r.get("cv_pca_dim"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho over the pairs where both are finite (tied values share their average rank); NaN with
    fewer than 3 pairs or a constant side."""
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(scipy.stats.spearmanr(a[ok], b[ok]).statistic)


def agreement_summary(table: ProbeTable) -> str:
    """Per target: where Fisher J and CV-AUC agree or disagree about the best (encoder, pooling, layer)."""
    if not any("cv_auc" in r for r in table.records):
        return "CV-AUC was not computed; no agreement summary.\n"
    lines = ["## Where J and CV-AUC agree about the best layer", ""]
    for target in table.targets:
        rows = table.rows(target=target)
        J = np.array([_value(r["fisher_j"]) for r in rows])
        A = np.array([_value(r.get("cv_auc")) for r in rows])
        try:
            (bj,) = select_layers(table, "fisher", [target])
            (ba,) = select_layers(table, "cv_auc", [target])
        except ValueError as e:
            lines.append(f"- **{target}**: {e}")
            continue
        same = (bj.encoder, bj.pooling, bj.layer) == (ba.encoder, ba.pooling, ba.layer)
        at_j = [r for r in rows if (r["encoder"], r["pooling"], r["layer"]) == (bj.encoder, bj.pooling, bj.layer)]
        auc_at_j = _value(at_j[0].get("cv_auc")) if at_j else float("nan")
        verdict = "agree" if same else "disagree"
        lines.append(
            f"- **{target}**: {verdict}. J picks {bj.encoder}/{bj.pooling}/L{bj.layer} (J={_fmt(bj.score)}, "
            f"CV-AUC there {_fmt(auc_at_j)}); CV-AUC picks {ba.encoder}/{ba.pooling}/L{ba.layer} "
            f"PCA {ba.pca_dim} (AUC={_fmt(ba.score)}); AUC lost by following J: {_fmt(ba.score - auc_at_j, 3)}; "
            f"Spearman(J, CV-AUC) over {len(rows)} candidates = {_fmt(_spearman(J, A), 3)}.")
    return "\n".join(lines) + "\n"


def write_table(table: ProbeTable, out_dir: str | os.PathLike) -> dict[str, pathlib.Path]:
    """Writes probes.json, probes.md (table + agreement summary) under out_dir; returns their paths."""
    out = pathlib.Path(out_dir)
    paths = {"json": out / "probes.json", "markdown": out / "probes.md"}
    out.mkdir(parents=True, exist_ok=True)
    fileio.atomic_write_text(paths["json"], table.to_json())
    md = "# Layer probes (training rows)\n\n" + agreement_summary(table) + "\n## Table\n\n" + markdown_table(table)
    fileio.atomic_write_text(paths["markdown"], md)
    return paths


# ----------------------------------------------------------------------------------------------
# Plots.
# ----------------------------------------------------------------------------------------------
def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _choices(table: ProbeTable, criterion: str) -> dict[str, LayerChoice]:
    out = {}
    for t in table.targets:
        try:
            out[t] = select_layers(table, criterion, [t])[0]
        except ValueError:
            pass
    return out


def plot_heatmaps(table: ProbeTable, out_dir: str | os.PathLike,
                  criteria: Sequence[str] = ("fisher", "cv_auc")) -> list[pathlib.Path]:
    """One heat map (layer x target) per (encoder, pooling, criterion); the selected cell is circled."""
    plt = _plt()
    out, paths = pathlib.Path(out_dir), []
    for criterion in criteria:
        if criterion == "cv_auc" and not any("cv_auc" in r for r in table.records):
            continue
        field = CRITERIA[criterion]
        chosen = _choices(table, criterion)
        for encoder, pooling in table.groups():
            layers = sorted({r["layer"] for r in table.rows(encoder=encoder, pooling=pooling)})
            grid = np.full((len(layers), len(table.targets)), np.nan)
            for r in table.rows(encoder=encoder, pooling=pooling):
                grid[layers.index(r["layer"]), table.targets.index(r["target"])] = _value(r.get(field))
            fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(table.targets), 1.5 + 0.22 * len(layers)))
            im = ax.imshow(grid, aspect="auto", origin="lower", cmap="viridis")
            fig.colorbar(im, ax=ax, label=_LABELS[criterion])
            for k, t in enumerate(table.targets):
                c = chosen.get(t)
                if c is not None and (c.encoder, c.pooling) == (encoder, pooling):
                    ax.scatter([k], [layers.index(c.layer)], s=90, facecolors="none", edgecolors="red",
                               linewidths=2)
            ax.set_xticks(range(len(table.targets)), table.targets, rotation=45, ha="right")
            step = max(1, len(layers) // 16)
            ax.set_yticks(range(0, len(layers), step), [str(v) for v in layers[::step]])
            ax.set_xlabel("target")
            ax.set_ylabel("layer")
            ax.set_title(f"{_LABELS[criterion]}: {encoder} ({pooling} pooling)\nred circle = selected layer")
            path = out / f"heatmap_{criterion}_{encoder}_{pooling}.png"
            _save_fig(fig, path)
            plt.close(fig)
            paths.append(path)
    return paths


def plot_depth_curves(table: ProbeTable, out_dir: str | os.PathLike) -> list[pathlib.Path]:
    """Per encoder: d_eff vs relative depth (top panel), then per target J (left axis) and CV-AUC (twin
    axis) vs relative depth per pooling; the layers chosen by J (triangle) and CV-AUC (star) are marked."""
    plt = _plt()
    out, paths = pathlib.Path(out_dir), []
    has_cv = any("cv_auc" in r for r in table.records)
    pick_j = _choices(table, "fisher")
    pick_a = _choices(table, "cv_auc") if has_cv else {}
    encoders = list(dict.fromkeys(e for e, _ in table.groups()))
    styles = ["-", "--", ":", "-."]
    for encoder in encoders:
        poolings = [p for e, p in table.groups() if e == encoder]
        K = len(table.targets)
        ncol = min(3, K)
        nrow = 1 + math.ceil(K / ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(5 * ncol, 3.2 * nrow), squeeze=False)
        top = axes[0, 0]
        for i, pooling in enumerate(poolings):
            rows = sorted(table.rows(encoder=encoder, pooling=pooling, target=table.targets[0]),
                          key=lambda r: r["rel_depth"])
            x = [r["rel_depth"] for r in rows]
            top.plot(x, [_value(r["d_eff_pr"]) for r in rows], styles[i % 4], color="C0", label=f"PR, {pooling}")
            top.plot(x, [_value(r["d_eff_entropy"]) for r in rows], styles[i % 4], color="C1",
                     label=f"entropy, {pooling}")
        top.set_xlabel("relative depth (layer / n_layers)")
        top.set_ylabel("effective dimensionality")
        top.set_title(f"{encoder}: d_eff vs depth")
        top.legend(fontsize=7)
        for ax in axes[0, 1:]:
            ax.axis("off")
        for k, target in enumerate(table.targets):
            ax = axes[1 + k // ncol, k % ncol]
            twin = ax.twinx() if has_cv else None
            for i, pooling in enumerate(poolings):
                rows = sorted(table.rows(encoder=encoder, pooling=pooling, target=target),
                              key=lambda r: r["rel_depth"])
                x = [r["rel_depth"] for r in rows]
                ax.plot(x, [_value(r["fisher_j"]) for r in rows], styles[i % 4], color="C2", label=f"J, {pooling}")
                if twin is not None:
                    twin.plot(x, [_value(r.get("cv_auc")) for r in rows], styles[i % 4], color="C3",
                              label=f"CV-AUC, {pooling}")
            cj = pick_j.get(target)
            if cj is not None and cj.encoder == encoder:
                ax.plot([cj.rel_depth], [cj.score], "^", color="C2", ms=10, label=f"J pick L{cj.layer} ({cj.pooling})")
            ca = pick_a.get(target)
            if twin is not None and ca is not None and ca.encoder == encoder:
                twin.plot([ca.rel_depth], [ca.score], "*", color="C3", ms=13,
                          label=f"AUC pick L{ca.layer} ({ca.pooling}, PCA {ca.pca_dim})")
            ax.set_xlabel("relative depth")
            ax.set_ylabel("Fisher J", color="C2")
            if twin is not None:
                twin.set_ylabel("CV ROC-AUC", color="C3")
            ax.set_title(f"{encoder} -> {target}")
            handles, labels = ax.get_legend_handles_labels()
            if twin is not None:
                h2, l2 = twin.get_legend_handles_labels()
                handles, labels = handles + h2, labels + l2
            ax.legend(handles, labels, fontsize=6, loc="best")
        for k in range(K, (nrow - 1) * ncol):
            axes[1 + k // ncol, k % ncol].axis("off")
        fig.tight_layout()
        path = out / f"depth_{encoder}.png"
        _save_fig(fig, path)
        plt.close(fig)
        paths.append(path)
    return paths


def write_report(table: ProbeTable, out_dir: str | os.PathLike) -> dict[str, object]:
    """Table (JSON + Markdown with the agreement summary), heat maps and depth curves under out_dir."""
    paths: dict[str, object] = dict(write_table(table, out_dir))
    paths["heatmaps"] = plot_heatmaps(table, out_dir)
    paths["depth_curves"] = plot_depth_curves(table, out_dir)
    return paths


__all__ = ["markdown_table", "agreement_summary", "write_table", "plot_heatmaps", "plot_depth_curves",
           "write_report"]
