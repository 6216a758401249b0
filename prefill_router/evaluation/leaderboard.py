"""The metrics schema of a run and leaderboards of many runs (sweeps, layer combinations).

Schema: every experiment's ``metrics.json`` holds ``headline = {metric: {"value", "ci_low", "ci_high", ...}}``
for the metrics in ``HEADLINE`` (all higher-is-better); a metric is named ``headline.<metric>`` (or just
``<metric>``) when ranking. A leaderboard row is ``{"name", "overrides", "headline", "rank_value"}`` with
``rank_value`` = the ranked metric's ``value`` (NaN when the run lacks it); rows are sorted best first.
"""
import math
import pathlib

from prefill_router import fileio

# Headline metrics of a router, copied from evaluation.report.evaluate_router's result when present (the
# within-task / disagreement-zone ones need its `tasks=`); higher is better.
HEADLINE = ("auc_mean", "router_acc", "gap_captured_pct", "cost_savings_price_pct", "cost_savings_query_pct",
            "p_auccc", "aiq", "oracle_acc", "best_single_acc", "within_task_auc_mean", "disagree_router_acc",
            "disagree_best_single_acc")
DEFAULT_RANK_BY = "headline.auc_mean"


def headline(result: dict) -> dict:
    """The ``HEADLINE`` entries of an ``evaluate_router`` result (its ``headline`` dict)."""
    return {k: result["headline"][k] for k in HEADLINE if k in result["headline"]}


def metric_name(rank_by: str) -> str:
    """``'headline.auc_mean'`` or ``'auc_mean'`` -> ``'auc_mean'``; ValueError naming the valid keys otherwise."""
    name = rank_by.removeprefix("headline.")
    if name not in HEADLINE:
        raise ValueError(f"unknown metric {rank_by!r} to rank by; valid keys: "
                         + ", ".join(f"headline.{k}" for k in HEADLINE))
    return name


def metric_value(headline_dict: dict, name: str) -> float:
    """A headline metric as a float: a dict's ``value`` or a bare number; NaN when absent or not numeric."""
    value = headline_dict.get(name)
    if isinstance(value, dict):
        value = value.get("value")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def rank_rows(rows: list[dict], rank_by: str) -> list[dict]:
    """Rows with ``rank_value`` set from their headline, sorted by it descending (NaN last, ties keep order)."""
    name = metric_name(rank_by)
    for r in rows:
        r["rank_value"] = metric_value(r["headline"], name)
    return sorted(rows, key=lambda r: -r["rank_value"] if not math.isnan(r["rank_value"]) else math.inf)


def write_leaderboard(workdir: pathlib.Path, rows: list[dict], rank_by: str) -> None:
    """Writes ``leaderboard.{json,md,png}`` under workdir for rows already sorted best first."""
    rank_by = f"headline.{metric_name(rank_by)}"
    fileio.atomic_write_json(workdir / "leaderboard.json",
                             [{**r, "rank_value": _json_number(r["rank_value"])} for r in rows], indent=2, default=str)
    keys = sorted({k for r in rows for k in r["headline"]})
    lines = [f"# Sweep leaderboard (sorted by `{rank_by}`, best first)", "",
             "| rank | run | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for i, r in enumerate(rows, 1):
        cells = [_fmt(r["headline"].get(k)) for k in keys]
        lines.append(f"| {i} | `{r['name']}` | " + " | ".join(cells) + " |")
    fileio.atomic_write_text(workdir / "leaderboard.md", "\n".join(lines) + "\n")
    if rows:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        values = [math.nan if r["rank_value"] is None else float(r["rank_value"]) for r in rows]
        fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
        ax.barh(range(len(rows)), values, color="#0072B2")
        ax.set_yticks(range(len(rows)), [r["name"] for r in rows], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(rank_by)
        ax.set_title("Sweep leaderboard")
        finite = [v for v in values if v == v]
        if finite:
            ax.set_xlim(min(finite) - 0.05 * (max(finite) - min(finite) + 1e-9), max(finite) * 1.01)
        fig.tight_layout()
        with fileio.atomic_writer(workdir / "leaderboard.png") as f:
            fig.savefig(f, format="png", dpi=150)
        plt.close(fig)


def _json_number(value):
    return None if isinstance(value, float) and math.isnan(value) else value


def _fmt(value) -> str:
    if isinstance(value, dict) and "value" in value:
        lo, hi = value.get("ci_low"), value.get("ci_high")
        return f"{value['value']:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else "")
    if isinstance(value, float):
        return f"{value:.3f}"
    return "" if value is None else str(value)
