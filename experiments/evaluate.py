"""The `evaluate` experiment: score a saved router checkpoint on a dataset split, without retraining.

    python -m experiments.main --config=configs/evaluate.py:checkpoint=runs/default/router --workdir=runs/eval

The dataset (config.data, same fields and seed as the pipeline, so the split is the same) must have
the checkpoint's targets; features come from the encoders named in the checkpoint. Evaluation rows that
the checkpoint was trained on (by prompt hash, `RouterBundle.train_split`) are refused before any
feature is extracted. Writes report.md, plots/ and, last, metrics.json like the pipeline.
"""
import pathlib

import numpy as np
from absl import logging

from prefill_router import data as data_lib
from prefill_router import fileio, stages
from prefill_router.evaluation import leaderboard
from prefill_router.evaluation import plots as plots_lib
from prefill_router.evaluation import report as report_lib
from prefill_router.predict import RouterPredictor


def run(config, workdir: pathlib.Path) -> dict:
    if not config.checkpoint:
        raise ValueError("set the router checkpoint: --config=configs/evaluate.py:checkpoint=DIR")
    predictor = RouterPredictor.load(config.checkpoint, config.cache_dir or None)
    ds = stages.load_routing_data(config)
    missing = [t for t in predictor.targets if t not in ds.targets]
    if missing:
        raise ValueError(f"the dataset {ds.name!r} lacks the checkpoint's targets {missing}; "
                         f"it has {ds.targets}")
    ds = ds.select_targets(list(predictor.targets))
    rows, train = ds.rows(config.split), ds.rows("train")
    if len(rows) == 0:
        raise ValueError(f"the dataset has no {config.split!r} rows")
    check_not_trained_on(predictor.bundle, [ds.prompts[i] for i in rows], config.split)
    logging.info("evaluating %s on %d %s rows of %s", config.checkpoint, len(rows), config.split, ds.name)
    P = predictor.predict([ds.prompts[i] for i in rows])
    costs = data_lib.per_prompt_costs(ds, train_rows=train if len(train) else rows)
    prices_in = np.array([predictor.bundle.prices[t][0] for t in ds.targets], np.float64)
    best_single = (ds.targets.index(data_lib.dataset_stats(ds, train)["best_single"]["target"])
                   if len(train) else None)  # chosen on training rows when the dataset has them
    result = report_lib.evaluate_router(P, ds.labels[rows], ds.mask[rows], costs[rows], prices_in,
                                        target_names=list(ds.targets), n_boot=config.eval.n_boot,
                                        seed=config.seed, best_single_index=best_single,
                                        operating_tolerance=config.routing.tolerance)
    plot_files = plots_lib.plot_result(result, workdir / "plots")
    metrics = {"headline": leaderboard.headline(result), "router": result, "checkpoint": str(config.checkpoint),
               "split": config.split, "plots": plot_files}
    fileio.atomic_write_text(workdir / "report.md", report_lib.markdown_report(
        result, title=f"Router {config.checkpoint} on {ds.name} ({config.split})"))
    stages.write_json(workdir / "metrics.json", metrics)  # last: a complete run
    return metrics


def check_not_trained_on(bundle, prompts: list[str], split: str) -> None:
    """ValueError when any of ``prompts`` (the rows to score) trained the router: its AUC would be inflated."""
    record = bundle.train_split
    if not record:
        logging.warning("the checkpoint records no training split; cannot check the %s rows for overlap", split)
        return
    seen = int(bundle.trained_on(prompts).sum())
    if seen:
        raise ValueError(f"{seen} of the {len(prompts)} {split!r} rows are training rows of the checkpoint (trained "
                         f"with seed={record['seed']} on {record['n_train']} prompts); use the training run's data "
                         f"settings (e.g. seed={record['seed']}) so that the split is the same")
