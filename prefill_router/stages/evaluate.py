"""Evaluation stage: every router's test-split metrics with bootstrap CIs, comparison table and plots."""
import pathlib
from typing import NamedTuple

import numpy as np

from prefill_router.evaluation import bootstrap, curves
from prefill_router.evaluation import plots as plots_lib
from prefill_router.evaluation import report as report_lib
from prefill_router.stages import controls as controls_lib
from prefill_router.stages.data import Split

ROUTER = "SharedTrunkNet"  # the key of the prefill router in the predictions dict


class Evaluation(NamedTuple):
    """router: evaluate_router result of the prefill router; comparison: compare_routers result;
    routellm: RouteLLM metrics per router (2-target pools, else None); plots: written figure paths;
    controls: `stages.controls.controls` (task lookups, within-task counts, paired test vs the lookup);
    lookups: the task-prior routers' test predictions it scored ({name: P [N_test, K]}, for later stages)."""
    router: dict
    comparison: dict
    routellm: dict | None
    plots: list
    controls: dict | None = None
    lookups: dict | None = None


def evaluate(config, predictions: dict, split: Split, stats: dict, plot_dir: pathlib.Path) -> Evaluation:
    """Scores ``predictions`` (router name -> P [N_test, K]; must hold ``ROUTER``) on the test rows once.

    The best single model is chosen on training rows (``stats["train"]``). The task-prior routers
    (`stages.controls.task_priors`, fitted on training rows) join every evaluation; the comparison's paired
    differences are against the task lookup, and every metric set includes within-task AUC."""
    ds, test = split.ds, split.test
    priors, prior_info = controls_lib.task_priors(split)
    predictions = {**predictions, **priors}
    best_single = ds.targets.index(stats["train"]["best_single"]["target"])
    args = scoring_args(config, split, best_single)
    comparison = report_lib.compare_routers(predictions, reference=controls_lib.TASK_LOOKUP, **args)
    rows = comparison["rows"]  # every router's bootstrap headline on the shared resamples: not bootstrapped again
    router_result = report_lib.evaluate_router(predictions[ROUTER], **args, headline=rows[ROUTER])
    two_model = (routellm_metrics(predictions, ds.labels[test], ds.mask[test], split.prices_in, config)
                 if ds.num_targets == 2 else None)
    plot_files = plots_lib.plot_result(router_result, plot_dir)
    others = {name: report_lib.evaluate_router(P, **args, headline=rows[name])
              for name, P in predictions.items() if name != ROUTER}
    if others:
        plot_files += plots_lib.plot_comparison({ROUTER: router_result, **others}, plot_dir)
    evaluation = Evaluation(router_result, comparison, two_model, plot_files, lookups=priors)
    return evaluation._replace(controls=controls_lib.controls(split, evaluation, prior_info, ROUTER))


def scoring_args(config, split: Split, best_single: int, n_boot: int | None = None) -> dict:
    """Keyword arguments of `report.evaluate_router` / `compare_routers` scoring ``split``'s test rows
    (``n_boot`` default: ``config.eval.n_boot``)."""
    ds, test = split.ds, split.test
    return dict(Y=ds.labels[test], M=ds.mask[test], costs=split.costs[test], prices_in=split.prices_in,
                target_names=ds.targets, n_boot=config.eval.n_boot if n_boot is None else n_boot,
                seed=config.seed, best_single_index=best_single, operating_tolerance=config.routing.tolerance,
                tasks=[ds.tasks[i] for i in test])


def routellm_metrics(predictions: dict, Y, M, prices_in, config) -> dict:
    """APGR and CPT(20/50/80 %) per router for a 2-target pool (strong = the pricier target), with CIs.

    Score s = p_strong - p_weak (method.md §7); rows lacking either label are dropped.
    """
    strong = int(np.argmax(prices_in))
    weak = 1 - strong
    rows = np.flatnonzero(M[:, 0] & M[:, 1])
    out = {}
    for name, P in predictions.items():
        score = P[rows, strong] - P[rows, weak]

        def stat(r, score=score):
            c = curves.routellm_curve(score[r], Y[rows[r], weak], Y[rows[r], strong])
            return [curves.apgr(c)] + [curves.cpt(c, q) for q in (0.2, 0.5, 0.8)]

        ci = bootstrap.bootstrap_ci(stat, len(rows), n_boot=config.eval.n_boot, seed=config.seed)
        out[name] = {key: {"value": float(ci["estimate"][i]), "ci_low": float(ci["low"][i]),
                           "ci_high": float(ci["high"][i])}
                     for i, key in enumerate(("apgr", "cpt20_pct", "cpt50_pct", "cpt80_pct"))}
    return out
