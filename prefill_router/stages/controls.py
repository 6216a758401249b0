"""Controls stage: task-prior routers and the numbers that separate prefill signal from task identity.

    task_priors(split) -> ({router name: P [N_test, K]}, info)   fitted on training rows only
    controls(split, evaluation, info) -> dict                    metrics.json `controls`
    versus_lookup(comparison) -> {metric: {diff, low, high, p_value}}   SharedTrunkNet − task lookup
    controls_markdown(controls) -> [lines]                       report.md section
    control_headline(evaluation) -> dict                         metrics.json headline additions

A dataset "has a task field" when its rows carry more than one task name; without one the task lookup is
the global training rate of each target and within-task AUC equals AUC (the report says so). The
task × difficulty lookup runs where rows carry ``row_meta['difficulty']``.
"""
import numpy as np

from prefill_router.baselines import task_prior
from prefill_router.evaluation import report as report_lib

TASK_LOOKUP = "task lookup"
TASK_DIFFICULTY_LOOKUP = "task × difficulty lookup"
PAIRED_KEYS = (("router_acc", "router accuracy"), ("gap_captured_pct", "gap captured %"), ("auc_mean", "mean AUC"),
               ("within_task_auc_mean", "within-task AUC"), ("disagree_router_acc", "accuracy (disagreement zone)"))


def task_priors(split) -> tuple[dict, dict]:
    """Task (and task × difficulty) lookup predictions on the test rows, and their fallback counts."""
    ds, train, test = split.ds, split.train, split.test
    tasks = np.asarray(ds.tasks)
    difficulty = ds.row_meta.get("difficulty")
    prior = task_prior.fit_task_prior(tasks[train], ds.labels[train], ds.mask[train])
    P, counts = prior.predict(tasks[test])
    predictions = {TASK_LOOKUP: P}
    info = {"has_task_field": len(set(ds.tasks)) > 1, "tasks": sorted(set(ds.tasks)),
            "task_lookup": counts, "has_difficulty": difficulty is not None}
    if difficulty is not None:
        prior = task_prior.fit_task_prior(tasks[train], ds.labels[train], ds.mask[train], difficulty[train])
        predictions[TASK_DIFFICULTY_LOOKUP], info["task_difficulty_lookup"] = prior.predict(tasks[test],
                                                                                            difficulty[test])
    return predictions, info


def versus_lookup(comparison: dict, router: str = "SharedTrunkNet") -> dict:
    """Paired bootstrap of ``router`` − task lookup from a compare_routers result (reference: either)."""
    paired = comparison["paired"]
    if comparison["reference"] == TASK_LOOKUP:
        return {k: paired[router][k] for k, _ in PAIRED_KEYS if k in paired.get(router, {})}
    flip = paired[TASK_LOOKUP]  # lookup − router: negate the difference and swap the bounds
    return {k: {"diff": -flip[k]["diff"], "low": -flip[k]["high"], "high": -flip[k]["low"],
                "p_value": flip[k]["p_value"]} for k, _ in PAIRED_KEYS if k in flip}


def controls(split, evaluation, info: dict, router: str = "SharedTrunkNet") -> dict:
    """metrics.json `controls`: task field, lookup fallbacks, within-task counts, disagreement zone,
    near-duplicate drops, and the paired test of ``router`` against the task lookup."""
    result = evaluation.router
    rows = evaluation.comparison["rows"]
    dedup = split.ds.meta.get("dedup", {})
    return {
        **info,
        "within_task": result.get("within_task"),
        "disagreement_zone": {"n": result["counts"]["n_disagree"], "n_complete": result["counts"]["n_complete"]},
        "twins_dropped": dedup.get("twins_dropped", 0), "twins_by_task": dedup.get("twins_by_task", {}),
        "vs_task_lookup": versus_lookup(evaluation.comparison, router),
        "lookup_rows": {name: rows[name] for name in (TASK_LOOKUP, TASK_DIFFICULTY_LOOKUP) if name in rows},
    }


def _fmt_diff(d: dict) -> str:
    return f"{report_lib.format_ci(d['diff'], d['low'], d['high'])} (p={d['p_value']:.3g})"


def controls_markdown(c: dict, router: str = "SharedTrunkNet") -> list[str]:
    """The report's controls section: what the task-only routers score and whether ``router`` beats them."""
    lines = ["## Controls: prefill signal vs task identity", ""]
    if c["has_task_field"]:
        unseen = c["task_lookup"]["unseen_tasks"]
        lines.append(f"Task lookup = each target's training accuracy on the prompt's task ({len(c['tasks'])} tasks); "
                     f"{c['task_lookup']['task_unseen']} test prompts fell back to the global rate"
                     + (f" (tasks absent from training: {unseen})" if unseen else "") + ".")
    else:
        lines.append(f"**This dataset has no task field** (every prompt has task {c['tasks'][0]!r}): the task lookup "
                     "is each target's global training rate and within-task AUC equals AUC.")
    if c["has_difficulty"]:
        lines.append(f"Task × difficulty lookup: {c['task_difficulty_lookup']['difficulty_unseen']} test prompts "
                     "fell back to the task (or global) rate.")
    else:
        lines.append("No task × difficulty lookup: the rows carry no difficulty field.")
    zone = c["disagreement_zone"]
    lines += ["", f"Within-task AUC: per target, the prompt-weighted mean of per-task AUCs over test tasks with both "
              "classes (a task-only router scores 0.5). Disagreement zone: the "
              f"{zone['n']} of {zone['n_complete']} complete test prompts where the targets do not all agree. "
              f"Near-duplicates: {c['twins_dropped']} training twins of test prompts dropped "
              f"({', '.join(f'{t} {n}' for t, n in c['twins_by_task'].items()) or 'none'}).", ""]
    if c.get("within_task"):
        lines += ["| target | within-task AUC | tasks used | tasks excluded (one class in test) |", "|---|---|---|---|"]
        lines += [f"| {t} | {w['auc']:.3f} | {w['tasks_used']} | {w['tasks_excluded']} |"
                  for t, w in c["within_task"].items()]
        lines.append("")
    vs = c["vs_task_lookup"]
    lines += [f"Paired bootstrap, {router} − task lookup (95% CI, two-sided p):", "",
              "| metric | difference |", "|---|---|"]
    lines += [f"| {label} | {_fmt_diff(vs[k])} |" for k, label in PAIRED_KEYS if k in vs]
    lines += ["", verdict(vs, router), ""]
    return lines


def verdict(vs: dict, router: str = "SharedTrunkNet") -> str:
    """One sentence: does ``router`` beat the task lookup (CI of the paired difference above 0)?"""
    def state(key):
        if key not in vs or not np.isfinite(vs[key]["diff"]):
            return "not comparable"
        d = vs[key]
        return "above" if d["low"] > 0 else "below" if d["high"] < 0 else "not distinguishable"
    return (f"**{router} vs the task lookup** (95% paired CI of the difference): router accuracy "
            f"{state('router_acc')}, gap captured {state('gap_captured_pct')}, mean AUC {state('auc_mean')}, "
            f"within-task AUC {state('within_task_auc_mean')}.")


def control_headline(evaluation) -> dict:
    """metrics.json headline addition ``vs_task_lookup``: {metric: {diff, low, high, p_value}} of the prefill
    router − task lookup (the control metrics themselves are in `evaluation.leaderboard.HEADLINE`)."""
    return {"vs_task_lookup": evaluation.controls["vs_task_lookup"]}
