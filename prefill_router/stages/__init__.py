"""Pipeline stages: the steps every experiment composes (big_vision ``train.py`` style).

An experiment under ``experiments/`` is a short script of these calls inside ``stage(name, timings)``
timers; no experiment imports another. Each function takes the ml_collections config (plus the products
of earlier stages) and fits on training rows only; the test split is scored once, in `evaluate`.

    stage(name, timings)                      context manager: logs and times a stage (seconds)
    typed(cls, config.<subtree>, skip=(), **extra)   a library dataclass from its same-named config entries
    load_routing_data(config) -> RoutingDataset   load_split(config) -> Split(ds, train, test, costs, prices_in)
    data_stats(split, workdir) -> stats       extract_all(config, prompts) -> {encoder: (FeatureSet, L)}
    extract(config, encoder, prompts, template_kwargs) -> FeatureSet      readout_encoder(enc, template, kw)
    probe(config, feats, ds, train_rows, outdir) -> (ProbeTable, [LayerChoice])
    FeatureLookup(feats)   block_specs(config, choices)   train_config(config) -> router.TrainConfig
    fit_router(config, feats, choices, split, workdir) -> (Ensemble, X [N, F])   (saves workdir/router)
    baselines(config, split) -> {name: P [N_test, K]}
    evaluate(config, predictions, split, stats, plot_dir) -> Evaluation (headline: evaluation.leaderboard)
    write_json(path, obj)   write_report(workdir, config, split, stats, choices, evaluation, timings[, repeats])
    task_priors(split) -> ({name: P}, info)   control_headline(evaluation) -> dict   (controls: task lookups)
    run_repeats(config, workdir, split, comparison, feats, choices) -> dict   (config.repeats > 1)
Experiment-specific stages: `stages.sweep` (layer_sweep combinations and leaderboard rows) and
`stages.transfer` (encoder x target matrix).
"""
from prefill_router.fileio import write_json
from prefill_router.stages.base import stage, typed
from prefill_router.stages.baselines import baselines
from prefill_router.stages.controls import control_headline, task_priors
from prefill_router.stages.data import SOURCES, Split, data_stats, load_routing_data, load_split, subsample
from prefill_router.stages.evaluate import Evaluation, evaluate, routellm_metrics
from prefill_router.stages.features import TEMPLATES, FeatureLookup, extract, extract_all, readout_encoder
from prefill_router.stages.probe import probe
from prefill_router.stages.repeats import run_repeats
from prefill_router.stages.report import write_report
from prefill_router.stages.router import block_specs, cost_table, fit_router, per_target_specs, train_config

__all__ = [
    "stage", "typed", "write_json", "baselines", "SOURCES", "Split", "data_stats", "load_routing_data", "load_split",
    "subsample", "Evaluation", "evaluate", "routellm_metrics", "TEMPLATES",
    "FeatureLookup", "extract", "extract_all", "readout_encoder", "probe", "write_report", "block_specs",
    "cost_table", "fit_router", "per_target_specs", "train_config", "control_headline", "task_priors",
    "run_repeats",
]
