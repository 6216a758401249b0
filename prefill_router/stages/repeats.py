"""Repeat mode (``config.repeats = R``): uncertainty over the method, not only over the test sample.

Repeat r in 0..R-1 reruns the pipeline's fitted parts with ``seed = config.seed + r``: where the dataset has
no split of its own, the data split and the ``max_train``/``max_test`` subsample (a dataset's own split and
its subsample stay those of the main run, so its cached features are reused); always the router's training
seeds and the seeded baselines (kNN validation split, MLP and MF seeds). Features come from the feature
store; `fit_predict` reruns the probe only when the training rows changed. Repeat 0 is the main run. Each repeat's summary is written to ``repeats/seed_<s>/summary.json``
and reused on a rerun (resumable).

Over the R values v_r of a metric: mean, sample s.d. and the t-interval mean ± t_{0.975, R-1}·s.d./√R,
reported beside the main run's per-run bootstrap CI. The extra runs' paired tests against the task lookup
use B = min(eval.n_boot, 200) resamples (only whether their CI excludes 0 is reported).
"""
import json
import pathlib

import numpy as np
from absl import logging
from scipy import stats as scipy_stats

from prefill_router import data as data_lib
from prefill_router import fileio
from prefill_router.evaluation import report as report_lib
from prefill_router.stages import controls as controls_lib
from prefill_router.stages import cross_attention as ca_stage
from prefill_router.stages.baselines import baselines
from prefill_router.stages.data import load_split
from prefill_router.stages.evaluate import scoring_args
from prefill_router.stages.features import extract_all
from prefill_router.stages.probe import probe
from prefill_router.stages.router import fit_router

REPEAT_N_BOOT = 200  # resamples of the extra runs' paired tests (only their CI's side of 0 is reported)
REPEAT_METRICS = (("router_acc", "router acc"), ("gap_captured_pct", "gap captured %"), ("auc_mean", "mean AUC"),
                  ("within_task_auc_mean", "within-task AUC"), ("disagree_router_acc", "acc (disagree zone)"),
                  ("cost_savings_price_pct", "savings % (price)"), ("p_auccc", "P-AUCCC"), ("aiq", "AIQ"))


def summarise(comparison: dict, split, seed: int, router: str) -> dict:
    """One repeat's numbers: router -> {metric: value}, and ``router`` − task lookup differences."""
    keys = [k for k, _ in REPEAT_METRICS]
    return {"seed": seed, "n_train": int(len(split.train)), "n_test": int(len(split.test)),
            "rows": {name: {k: row[k]["value"] for k in keys if k in row} for name, row in comparison["rows"].items()},
            "vs_task_lookup": controls_lib.versus_lookup(comparison, router)}


def interval(values) -> dict:
    """Mean, s.d. and 95% t-interval over the finite entries of ``values`` (n = how many)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
    if v.size == 0:
        return {"mean": float("nan"), "sd": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0}
    mean = float(v.mean())
    if v.size == 1:
        return {"mean": mean, "sd": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 1}
    sd = float(v.std(ddof=1))
    half = float(scipy_stats.t.ppf(0.975, v.size - 1)) * sd / np.sqrt(v.size)
    return {"mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half, "n": int(v.size)}


def aggregate(runs: list[dict]) -> dict:
    """{'routers': {name: {metric: interval}}, 'vs_task_lookup': {metric: interval of the differences,
    plus 'n_significant_above' / 'n_significant_below' (repeats whose paired CI excludes 0)}}."""
    names = list(dict.fromkeys(n for r in runs for n in r["rows"]))
    routers = {n: {k: interval([r["rows"].get(n, {}).get(k) for r in runs]) for k, _ in REPEAT_METRICS
                   if any(k in r["rows"].get(n, {}) for r in runs)} for n in names}
    vs = {}
    for k in dict.fromkeys(k for r in runs for k in r["vs_task_lookup"]):
        diffs = [r["vs_task_lookup"][k] for r in runs if k in r["vs_task_lookup"]]
        vs[k] = {**interval([d["diff"] for d in diffs]),
                 "n_significant_above": sum(d["low"] is not None and d["low"] > 0 for d in diffs),
                 "n_significant_below": sum(d["high"] is not None and d["high"] < 0 for d in diffs)}
    return {"routers": routers, "vs_task_lookup": vs}


def _evaluate(config, split, predictions: dict) -> dict:
    ds = split.ds
    best_single = ds.targets.index(data_lib.dataset_stats(ds, split.train)["best_single"]["target"])
    return report_lib.compare_routers(predictions, reference=controls_lib.TASK_LOOKUP, **scoring_args(
        config, split, best_single, n_boot=min(config.eval.n_boot, REPEAT_N_BOOT)))


def _fit_predict(config, split, workdir: pathlib.Path, feats: dict, choices) -> dict:
    """The prefill router (and, for router.kind=cross_attention, the cross-attention routers) and the semantic
    baselines fitted on ``split``'s training rows: name -> P [N_test, K].
    ``feats``/``choices`` are the main run's, or None when the training rows changed (extract, probe again);
    sentence embeddings come from their cache."""
    if feats is None:
        feats = extract_all(config, split.ds.prompts)
        _, choices = probe(config, feats, split.ds, split.train, workdir / "probes")
    ensemble, X = fit_router(config, feats, choices, split, workdir)
    predictions = {"SharedTrunkNet": ensemble.predict(X[split.test])}
    if config.router.kind == "cross_attention":
        predictions.update(ca_stage.fit_routers(config, split, workdir, X)[0])
    if config.baselines.semantic or config.baselines.mf:
        predictions.update(baselines(config, split))
    return predictions


def run_repeats(config, workdir: pathlib.Path, main_split, main_comparison: dict, feats: dict, choices) -> dict:
    """Repeats 1..R-1 after the main run (repeat 0: ``main_split``, its compare_routers result, features and
    layer choices); returns metrics.json ``repeats``."""
    R = int(config.repeats)
    if R < 1:
        raise ValueError(f"repeats={R}: must be >= 1 (1 = no repeats)")
    runs = [summarise(main_comparison, main_split, config.seed, "SharedTrunkNet")]
    fixed = main_split.ds.meta.get("split_source") == "dataset"
    for r in range(1, R):
        cfg = config.copy_and_resolve_references()
        cfg.seed = config.seed + r
        rdir = workdir / "repeats" / f"seed_{cfg.seed}"
        done = rdir / "summary.json"
        if done.exists():
            logging.info("repeat %d/%d (seed %d): reusing %s", r + 1, R, cfg.seed, done)
            runs.append(json.loads(done.read_text()))
            continue
        rdir.mkdir(parents=True, exist_ok=True)
        logging.info("repeat %d/%d (seed %d)", r + 1, R, cfg.seed)
        split = main_split if fixed else load_split(cfg)
        predictions = (_fit_predict(cfg, split, rdir, feats, choices) if fixed else
                       _fit_predict(cfg, split, rdir, None, None))
        predictions.update(controls_lib.task_priors(split)[0])
        summary = summarise(_evaluate(cfg, split, predictions), split, cfg.seed, "SharedTrunkNet")
        fileio.atomic_write_json(done, report_lib.to_jsonable(summary), indent=1)
        runs.append(summary)
    varied = "router seeds, baselines' seeds" + ("" if fixed else ", the data split and subsample")
    return {"R": R, "seeds": [r["seed"] for r in runs], "runs": runs, **aggregate(runs), "varied": varied,
            "fixed_split": fixed}


def _cell(m: dict) -> str:
    return "—" if m is None or not np.isfinite(m["mean"]) else report_lib.format_ci(m["mean"], m["ci_low"],
                                                                                  m["ci_high"])


def repeats_markdown(rep: dict, router: str = "SharedTrunkNet") -> list[str]:
    """Report section: mean [95% t-interval over repeats] per router and metric, and the paired differences."""
    keys = [(k, label) for k, label in REPEAT_METRICS if any(k in m for m in rep["routers"].values())]
    lines = [f"## Repeats: {rep['R']} runs (seeds {', '.join(map(str, rep['seeds']))})", "",
             f"Varied per run: {rep['varied']}. Cells: mean over runs [95% t-interval over runs]; the per-run "
             "bootstrap CIs of the main run are in the table above.", "",
             "| router | " + " | ".join(label for _, label in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, m in rep["routers"].items():
        lines.append(f"| {name} | " + " | ".join(_cell(m.get(k)) for k, _ in keys) + " |")
    lines += ["", f"{router} − task lookup over runs (mean [t-interval]; runs whose paired bootstrap CI is "
              "above / below 0):", "", "| metric | difference | runs above / below |", "|---|---|---|"]
    for k, label in controls_lib.PAIRED_KEYS:
        if k in rep["vs_task_lookup"]:
            d = rep["vs_task_lookup"][k]
            lines.append(f"| {label} | {_cell(d)} | {d['n_significant_above']} / {d['n_significant_below']} "
                         f"of {d['n']} |")
    return lines + [""]
