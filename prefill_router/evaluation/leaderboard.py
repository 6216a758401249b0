"""Leaderboard of many routers (sweep runs or layer combinations): JSON, Markdown table and a bar plot.

A row is ``{"name", "overrides", "headline", "rank_value"}``: ``headline`` maps metric names to
``{"value", "ci_low", "ci_high"}`` (as in metrics.json), ``rank_value`` is the number rows are sorted by.
"""
import pathlib

from prefill_router import fileio


def write_leaderboard(workdir: pathlib.Path, rows: list[dict], rank_by: str) -> None:
    """Writes ``leaderboard.{json,md,png}`` under workdir for rows already sorted best first."""
    fileio.atomic_write_json(workdir / "leaderboard.json", rows, indent=2, default=str)
    keys = sorted({k for r in rows for k in r["headline"]})
    lines = [f"# Sweep leaderboard (sorted by `{rank_by}`)", "",
             "| rank | run | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for i, r in enumerate(rows, 1):
        cells = [_fmt(r["headline"].get(k)) for k in keys]
        lines.append(f"| {i} | `{r['name']}` | " + " | ".join(cells) + " |")
    fileio.atomic_write_text(workdir / "leaderboard.md", "\n".join(lines) + "\n")
    if rows:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        values = [r["rank_value"] if isinstance(r["rank_value"], (int, float)) else float("nan") for r in rows]
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


def _fmt(value) -> str:
    if isinstance(value, dict) and "value" in value:
        lo, hi = value.get("ci_low"), value.get("ci_high")
        return f"{value['value']:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else "")
    if isinstance(value, float):
        return f"{value:.3f}"
    return "" if value is None else str(value)
