"""Evaluate a saved router checkpoint on a dataset split (no retraining).

    python -m experiments.main --config=configs/evaluate.py:checkpoint=runs/default/router --workdir=runs/eval
    python -m experiments.main --config=configs/evaluate.py:checkpoint=DIR,source=llmrouter,split=test --workdir=...

Args: checkpoint=DIR (required), source (collect | llmrouter | routellm | routerbench | long; default
collect, i.e. the embedded default's data), split (default test), items, seed, runlocal (the data
settings of configs/default.py:runlocal). The data fields and seed must match the training run so
that the split is the same; extra config fields can be overridden with --config.data.<field>=...
Writes metrics.json, report.md and plots/ in the workdir.
"""
from configs import common
from configs import default as default_config


def get_config(arg=None):
    a = common.parse_arg(arg, checkpoint="", source="collect", split="test", items=400, seed=0, runlocal=False)
    c = default_config.get_config(f"source={a.source},items={a.items},seed={a.seed}"
                                  + (",runlocal" if a.runlocal else ""))
    c.experiment = "evaluate"
    c.checkpoint = a.checkpoint
    c.split = a.split
    return c
