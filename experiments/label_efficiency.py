"""The `label_efficiency` experiment (issue #19): how many labels a new target needs when it is added to a
trained router (`prefill_router.stages.label_efficiency`).

    python -m experiments.main --config=configs/label_efficiency.py --workdir=runs/label_efficiency_default
    python -m experiments.main --config=configs/label_efficiency.py:pool=llmrouter,max_train=1000 --workdir=...

Stages: data -> features -> probe (layer choice on training rows, all targets) -> the router retrained on all
targets (the reference; saved as workdir/router) -> sentence embeddings (kNN) -> per held-out target: the router
without it, then the target added with N labels by each method, repeated -> summary, plot, report.
Writes label_efficiency/<target>.json (resumable), plots/label_efficiency.png, report.md, metrics.json (last).
"""
import dataclasses
import pathlib

import numpy as np

from prefill_router import fileio, stages
from prefill_router.baselines import sentence
from prefill_router.stages import label_efficiency as le_stage


def run(config, workdir: pathlib.Path) -> dict:
    timings = {}
    outdir = workdir / "label_efficiency"
    outdir.mkdir(parents=True, exist_ok=True)
    with stages.stage("data", timings):
        split = stages.load_split(config)
        stats = stages.data_stats(split, workdir)
    with stages.stage("features", timings):
        feats = stages.extract_all(config, split.ds.prompts)
    with stages.stage("probe", timings):
        _, choices = stages.probe(config, feats, split.ds, split.train, workdir / "probes")
    with stages.stage("router", timings):  # retrained from scratch on every target with all labels: the reference
        ensemble, X = stages.fit_router(config, feats, choices, split, workdir)
        reference_P = ensemble.predict(X[split.test])
    emb = None
    if config.baselines.semantic:
        with stages.stage("sentence", timings):
            path = outdir / f"sentence_{config.baselines.sentence_encoder}.npy"
            if path.is_file() and np.load(path).shape[0] == len(split.ds.prompts):
                emb = np.load(path)
            else:
                emb = sentence.embed_prompts(config.baselines.sentence_encoder, split.ds.prompts,
                                             config.cache_dir or None)
                with fileio.atomic_writer(path) as f:
                    np.save(f, emb)
    with stages.stage("curves", timings):
        curves = le_stage.run_curves(config, feats, choices, split, emb, reference_P, outdir)
    summary = le_stage.summarize(curves, config)
    title = f"Label efficiency on {split.ds.name} ({len(curves)} held-out target(s))"
    summary["plot"] = le_stage.plot(summary, workdir / "plots" / "label_efficiency.png", title)
    fileio.atomic_write_text(workdir / "report.md", le_stage.markdown(summary, title))
    metrics = {"label_efficiency": summary, "data": stats, "timings_s": timings,
               "layer_choices": [dataclasses.asdict(c) for c in choices]}
    stages.write_json(workdir / "metrics.json", metrics)  # last: the run is complete
    return metrics
