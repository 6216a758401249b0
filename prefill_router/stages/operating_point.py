"""Operating-point stage (#14.4): the tolerance τ (and the utility λ) that reaches "accuracy ≥ best single"
picked on validation rows carved from the training rows, then reported on test (accuracy, savings vs the most
expensive target).

    validation_rows(train, fraction, seed) -> (fit [n_fit], val [n_val])   seeded split of the training rows
    operating_point(config, feats, split, stats, test_predictions) -> dict  metrics.json `operating_point`
    report_lines(result) -> [lines]    append_report(workdir, result)        report.md section

Out-of-sample validation predictions: the router is refitted on the fit rows only (no checkpoint): its layers
re-chosen by the probe on the fit rows (the main choice saw the validation rows' labels), then its blocks and
trunk; it predicts the validation rows. The task lookup is refitted on the fit rows likewise. The chosen τ / λ
is then applied to the main router's and the main task lookup's test predictions (both fitted on all training
rows; the lookup's as the evaluation stage fitted it). The best single target is the training-rows one
(``stats``), as in the evaluation.
"""
from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from prefill_router import fileio
from prefill_router import router as router_lib
from prefill_router.baselines import task_prior
from prefill_router.evaluation import operating
from prefill_router.evaluation.report import format_ci, markdown_table
from prefill_router.stages import controls
from prefill_router.stages.data import Split
from prefill_router.stages.features import FeatureLookup
from prefill_router.stages.probe import choose_layers
from prefill_router.stages.router import block_specs, train_config

ROUTER = "SharedTrunkNet"
SYMBOL = {"tolerance": "τ", "utility": "λ"}  # report names of the rules' parameters


def validation_rows(train: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, val) sorted row indices: a seeded random ``fraction`` of ``train`` is held out (at least 1 row
    each side)."""
    train = np.asarray(train)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"routing.operating_val_fraction must lie in (0, 1), got {fraction}")
    n_val = int(round(fraction * train.size))
    if n_val < 1 or n_val >= train.size:
        raise ValueError(f"routing.operating_val_fraction={fraction} leaves {n_val} of {train.size} training rows "
                         "for validation; need at least 1 on each side (raise the fraction or add rows)")
    perm = np.random.default_rng(seed).permutation(train.size)
    return np.sort(train[perm[n_val:]]), np.sort(train[perm[:n_val]])


def _validation_predictions(config, feats: dict, split: Split, fit: np.ndarray, val: np.ndarray) -> tuple[dict, list]:
    """({router name: P [n_val, K]} of the prefill router and the task lookup, the router's [LayerChoice]); every
    fit (layer choice, blocks, trunk, lookup) sees the ``fit`` rows only."""
    ds = split.ds
    choices = choose_layers(config, feats, ds, fit)
    _, X = router_lib.build_design(FeatureLookup(feats), block_specs(config, choices), fit)
    ensemble = router_lib.train_ensemble(X[fit], ds.labels[fit], ds.mask[fit], train_config(config),
                                         target_names=ds.targets)
    tasks = np.asarray(ds.tasks)
    prior = task_prior.fit_task_prior(tasks[fit], ds.labels[fit], ds.mask[fit])
    return {ROUTER: ensemble.predict(X[val]), controls.TASK_LOOKUP: prior.predict(tasks[val])[0]}, choices


def operating_point(config, feats: dict, split: Split, stats: dict, test_predictions: dict) -> dict:
    """Per router (prefill router, task lookup) and rule (``operating.RULES``): τ / λ chosen on validation
    (`evaluation.operating.choose_point`) and its test metrics with bootstrap CIs (`point_metrics`).
    ``test_predictions``: P [N_test, K] of the main router (``ROUTER``) and of the task lookup
    (``controls.TASK_LOOKUP``, as `stages.controls.task_priors` fitted it), both fitted on all training rows."""
    missing = sorted({ROUTER, controls.TASK_LOOKUP} - set(test_predictions))
    if missing:
        raise ValueError(f"operating_point needs the test predictions of {missing}; pass the main router's and "
                         "the evaluation's task lookup (Evaluation.lookups)")
    ds, test = split.ds, split.test
    fraction = config.routing.operating_val_fraction
    fit, val = validation_rows(split.train, fraction, config.seed)
    best = ds.targets.index(stats["train"]["best_single"]["target"])
    val_P, fit_choices = _validation_predictions(config, feats, split, fit, val)
    test_P = {name: test_predictions[name] for name in val_P}
    routers = {}
    for name, P in val_P.items():
        routers[name] = {}
        for rule in operating.RULES:
            chosen = operating.choose_point(P, ds.labels[val], ds.mask[val], split.prices_in, best, rule)
            routers[name][rule] = {"validation": chosen, "test": operating.point_metrics(
                test_P[name], ds.labels[test], ds.mask[test], split.costs[test], split.prices_in, chosen["param"],
                best, rule, n_boot=config.eval.n_boot, seed=config.seed)}
    expensive = int(np.argmax(split.prices_in))
    return {"val_fraction": fraction, "n_fit": int(fit.size), "n_val": int(val.size),
            "best_single": ds.targets[best], "most_expensive_price": ds.targets[expensive],
            "fit_layer_choices": [dataclasses.asdict(c) for c in fit_choices], "routers": routers}


def report_lines(result: dict) -> list[str]:
    """The report.md section: per router and rule, the validation-chosen τ / λ and its test accuracy and savings."""
    lines = ["## Cost-aware operating points (τ / λ chosen on validation)", "",
             "Tolerance rule: cheapest target by input price among p_k ≥ p_max − τ; utility rule: argmax "
             "λ·p_k − (1−λ)·ĉ_k (ĉ = min-max normalised input price). τ (λ) = the cheapest point whose "
             f"accuracy on {result['n_val']} validation rows (held out of the training rows; routers refitted on "
             f"the other {result['n_fit']}, layers re-chosen on them) is ≥ the best single target "
             f"({result['best_single']}); if none, the most accurate point (reached = no). Test: accuracy and "
             "savings vs the most expensive target (price "
             f"axis: {result['most_expensive_price']}; per-query axis: the target of highest total $ on test), "
             "95% bootstrap CIs.", ""]
    rows = [["router", "rule", "reached on val", "val acc / best single", "test acc", "test acc − best single",
             "savings % (price)", "savings % (per-query)"]]
    for name, by_rule in result["routers"].items():
        for rule, r in by_rule.items():
            v, t = r["validation"], r["test"]

            def ci(key, t=t):
                return format_ci(t[key]["value"], t[key]["ci_low"], t[key]["ci_high"]) if key in t else "–"
            rows.append([name, f"{SYMBOL[rule]} = {v['param']:.4g}", "yes" if v["reached"] else "no",
                         f"{v['acc']:.3f} / {v['best_single_acc']:.3f}", ci("router_acc"),
                         ci("acc_minus_best_single"), ci("cost_savings_price_pct"), ci("cost_savings_query_pct")])
    return lines + [markdown_table(rows), ""]


def append_report(workdir: pathlib.Path, result: dict) -> None:
    """Appends the ``report_lines`` section to workdir/report.md (atomic rewrite)."""
    path = workdir / "report.md"
    fileio.atomic_write_text(path, path.read_text() + "\n" + "\n".join(report_lines(result)) + "\n")
