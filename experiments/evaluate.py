"""The `evaluate` experiment: score a saved router checkpoint on a dataset split, without retraining.

    python -m experiments.main --config=configs/evaluate.py:checkpoint=runs/default/router --workdir=runs/eval

The dataset (config.data, same fields and seed as the pipeline, so the split is the same) must have
the checkpoint's targets; features come from the encoders named in the checkpoint. Writes
metrics.json, report.md and plots/ like the pipeline's evaluation stage.
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
    stages.write_json(workdir / "metrics.json", metrics)
    fileio.atomic_write_text(workdir / "report.md", report_lib.markdown_report(
        result, title=f"Router {config.checkpoint} on {ds.name} ({config.split})"))
    return metrics
