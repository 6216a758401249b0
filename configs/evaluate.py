"""Evaluate a saved router checkpoint on a dataset split (no retraining).

    python -m experiments.main --config=configs/evaluate.py:checkpoint=runs/default/router --workdir=runs/eval
    python -m experiments.main --config=configs/evaluate.py:checkpoint=DIR,source=llmrouter,split=test --workdir=...

Args: checkpoint=DIR (required), split (default test); every other arg is configs/default.py's (source,
items, seed, runlocal, ...), so the data settings match the training run's. The data fields and seed must match the training run so
that the split is the same; extra config fields can be overridden with --config.data.<field>=...
Writes metrics.json, report.md and plots/ in the workdir.
"""
from configs import common
from configs import default as default_config


def get_config(arg=None):
    items = [item for item in (arg or "").split(",") if item.strip()]
    own = [item for item in items if item.partition("=")[0].strip() in ("checkpoint", "split")]
    a = common.parse_arg(",".join(own), checkpoint="", split="test")
    # every other arg goes to configs/default.py as given (so its runlocal sizes and defaults apply)
    c = default_config.get_config(",".join(item for item in items if item not in own))
    c.experiment = "evaluate"
    c.checkpoint = a.checkpoint
    c.split = a.split
    return c
