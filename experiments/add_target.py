"""The `add_target` experiment (issue #19): add a new target to a saved router from its labels on N prompts,
without retraining the router; writes a new self-contained checkpoint with K + 1 targets.

    python -m experiments.main --config=configs/add_target.py:checkpoint=runs/default/router,labels=new.csv \
        --workdir=runs/add_new

The labels file is long format (question, model, is_correct, output_tokens[, cost][, task]; CSV or JSONL,
`data.loaders.load_long_format`); prices come from its cost column or --config.data.prices=prices.json.
Prompts the router has never seen are fine: their features are computed (and cached) with the checkpoint's
encoders. ``mode`` (router.add_target): head (default; old targets' predictions unchanged), readout, finetune
(old targets drift; reported). Writes workdir/router (route with experiments.route, score with
experiments.evaluate), report.md and metrics.json (last).
"""
import pathlib

import numpy as np
from absl import logging

from prefill_router import fileio, stages, validation
from prefill_router import router as router_lib
from prefill_router.data import loaders
from prefill_router.encoders import registry
from prefill_router.predict import RouterPredictor
from prefill_router.router import add_target as add_lib


def _check_encoders(bundle, checkpoint) -> None:
    """ValueError naming a checkpoint encoder this installation cannot load (before any label is read)."""
    for name in sorted({s.encoder for b in bundle.blocks for s in b.sources}):
        if name not in registry.ENCODERS:
            raise ValueError(f"checkpoint {checkpoint} reads encoder {name!r}, which is not available here "
                             f"(registry: {', '.join(sorted(registry.ENCODERS))}); add it to the encoder registry "
                             "or use a checkpoint of an available encoder")


def _labels(config, bundle):
    """(prompts, y [N], price, median output tokens, dataset name) of the new target from the long-format file."""
    a = config.add
    ds = loaders.load_long_format(pathlib.Path(a.labels).expanduser(), prices=validation.prices_from_config(config))
    target = a.target or (ds.targets[0] if len(ds.targets) == 1 else None)
    if target is None or target not in ds.targets:
        raise ValueError(f"{a.labels} has models {ds.targets}; choose the new target with target=<model>")
    name = a.name or target
    if name in bundle.targets:
        raise ValueError(f"target {name!r} already exists in {a.checkpoint} (targets {list(bundle.targets)}); "
                         "give the new target another name with name=<new name>")
    j = ds.targets.index(target)
    rows = np.flatnonzero(ds.mask[:, j])
    if 0 < a.num_labels < len(rows):
        rows = np.sort(np.random.default_rng(config.seed).choice(rows, a.num_labels, replace=False))
    y = add_lib.check_labels(ds.labels[rows, j], name)
    tokens = ds.output_tokens[rows, j] if ds.output_tokens is not None else np.array([np.nan])
    if np.isfinite(tokens).any():
        median = float(np.nanmedian(tokens))
    else:
        median = float(np.median([v["output_tokens_median"] for v in bundle.cost_table.values()]))
        logging.warning("%s has no output_tokens for %s; ASSUMPTION: its median output length is the old "
                        "targets' median, %.0f tokens", a.labels, target, median)
    return name, [ds.prompts[i] for i in rows], y, ds.prices[target], median


def run(config, workdir: pathlib.Path) -> dict:
    a = config.add
    if not a.checkpoint or not a.labels:
        raise ValueError("set the router and the labels: --config=configs/add_target.py:checkpoint=DIR,labels=FILE")
    timings = {}
    with stages.stage("load", timings):
        predictor = RouterPredictor.load(a.checkpoint, config.cache_dir or None)
        bundle = predictor.bundle
        _check_encoders(bundle, a.checkpoint)
        name, prompts, y, price, median = _labels(config, bundle)
    with stages.stage("features", timings):  # on the fly for prompts the feature store has not seen
        X = bundle.features(predictor.features(prompts))
    with stages.stage("fit", timings):
        cfg = add_lib.AddConfig(mode=a.mode, C=a.C, finetune_steps=a.finetune_steps, finetune_lr=a.finetune_lr,
                                distill_weight=a.distill_weight)
        new, report = add_lib.add_target(bundle, name, X, y, cfg, prompts=prompts, price=price,
                                         output_tokens_median=median)
        path = router_lib.save_router(workdir / "router", new, overwrite=True)
    report.update(checkpoint=str(path), source_checkpoint=str(a.checkpoint), labels=str(a.labels),
                  targets=list(new.targets), price=list(price), output_tokens_median=median, timings_s=timings)
    drift = ("unchanged (head on the frozen trunk)" if a.mode == "head" else
             f"max |ΔP| {report['drift_old_max']:.3g}, mean {report['drift_old_mean']:.3g} on the {len(y)} prompts")
    fileio.atomic_write_text(workdir / "report.md", "\n".join([
        f"# Added target {name!r} to {a.checkpoint}", "",
        f"- mode: {a.mode}; labels: {len(y)} prompts ({int(y.sum())} correct) from {a.labels}",
        f"- targets now: {', '.join(new.targets)}", f"- old targets' predictions: {drift}",
        f"- new checkpoint: {path}", ""]))
    stages.write_json(workdir / "metrics.json", report)  # last: the run is complete
    return report
