"""Report stage: the pipeline's report.md (headline, router comparison, layer choices, dataset, timings)."""
import pathlib

from prefill_router import data as data_lib
from prefill_router import fileio
from prefill_router.evaluation import report as report_lib
from prefill_router.stages.data import Split
from prefill_router.stages import controls as controls_lib
from prefill_router.stages import repeats as repeats_lib
from prefill_router.stages.evaluate import ROUTER, Evaluation


def _routellm_lines(two_model: dict) -> list[str]:
    fmt = lambda m: report_lib.format_ci(m["value"], m["ci_low"], m["ci_high"])
    lines = ["## Two-model pool: RouteLLM metrics (strong = pricier target)", "",
             "| router | APGR | CPT(20%) | CPT(50%) | CPT(80%) |", "|---|---|---|---|---|"]
    lines += [f"| {name} | " + " | ".join(fmt(m[k]) for k in ("apgr", "cpt20_pct", "cpt50_pct", "cpt80_pct"))
              + " |" for name, m in two_model.items()]
    return lines + [""]


def write_report(workdir: pathlib.Path, config, split: Split, stats: dict, choices, evaluation: Evaluation,
                 timings: dict, repeats: dict | None = None) -> None:
    """Writes workdir/report.md atomically (with the controls section, and the repeats section when given)."""
    ds, router_result = split.ds, evaluation.router
    h = router_result["headline"]
    fmt = lambda k: report_lib.format_ci(h[k]["value"], h[k]["ci_low"], h[k]["ci_high"])
    router_acc = h["router_acc"]["value"]
    best_single = h["best_single_acc"]["value"]
    verdict = ("beats" if h["router_acc"]["ci_low"] > best_single else
               "does not beat" if router_acc <= best_single else "is above, but not significantly above,")
    lines = [
        f"# Routing report: {ds.name}", "",
        f"{ds.num_rows} prompts × {ds.num_targets} targets ({len(ds.rows('train'))} train / "
        f"{len(ds.rows('test'))} test); encoders: {', '.join(config.encoders)}; "
        f"layer criterion: {config.probe.criterion}; router layout: {config.router.layout}.", "",
        f"**{ROUTER}** mean AUC {fmt('auc_mean')}, router accuracy {fmt('router_acc')}, gap to Oracle "
        f"captured {fmt('gap_captured_pct')} %. The router {verdict} the best single model "
        f"({router_result['best_single']['name']}, {best_single:.3f}).",
        *(["", controls_lib.verdict(evaluation.controls["vs_task_lookup"], ROUTER)] if evaluation.controls else []),
        "", "## Routers on the test split (95% bootstrap CIs)", "", evaluation.comparison["markdown"], "",
        *(controls_lib.controls_markdown(evaluation.controls, ROUTER) if evaluation.controls else []),
        *(repeats_lib.repeats_markdown(repeats, ROUTER) if repeats else []),
        *(_routellm_lines(evaluation.routellm) if evaluation.routellm else []),
        "## Selected layers (training rows only)", "",
        "| target | encoder | layer | pooling | criterion | score |", "|---|---|---|---|---|---|",
        *[f"| {c.target} | {c.encoder} | {c.layer} | {c.pooling} | {c.criterion} | {c.score:.4g} |" for c in choices],
        "", report_lib.markdown_report(router_result, title=f"{ROUTER}: all metrics").strip(), "",
        "## Dataset", "", data_lib.format_stats_markdown(stats["all"]), "",
        "## Stage timings (s)", "", " · ".join(f"{k} {v:.1f}" for k, v in timings.items()), "",
        "Plots: `plots/`; probe heat maps and depth curves: `probes/`; router checkpoint: `router/`.",
    ]
    fileio.atomic_write_text(workdir / "report.md", "\n".join(lines) + "\n")
