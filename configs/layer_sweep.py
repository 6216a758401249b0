"""Layer-combination sweep in one process: single layers, probe-selected top-k, cross-encoder concatenations.

    python -m experiments.main --config=configs/layer_sweep.py --workdir=runs/layer_sweep
    python -m experiments.main --config=configs/layer_sweep.py:base=llmrouter_pool,encoders=smollm2_135m,max_train=1000 --workdir=runs/llmrouter_layers
    python -m experiments.main --config=configs/layer_sweep.py:runlocal --workdir=/tmp/layer_sweep_smoke  # < 1 min

Starts from another config's data, encoders and router settings (``base``, default: the embedded default)
and trains one shared-block SharedTrunkNet per combination, all combinations x seeds in one compiled
program (see experiments/layer_sweep.py), plus the paper's per-target layout as a reference row.
Writes leaderboard.{json,md,png} sorted by mean AUC on validation rows carved from the training rows
(each metric with a bootstrap 95% CI); only the winner, refitted on all training rows, is scored on test.

Args (`:key=value,...`):
  base=NAME     config module in configs/ to start from: default (default) | llmrouter_pool | routellm_mmlu.
  stride=S      every S-th layer for the single-layer rows (default 3).
  Any other key is passed to the base config (e.g. runlocal, items=N, encoders=a+b, max_train=N).
Expected outcome (default base): ~25 rows; see README "Results".
"""
import importlib

import ml_collections

BASES = ("default", "llmrouter_pool", "routellm_mmlu")


def get_config(arg=None):
    own, rest = {"base": "default", "stride": "3"}, []
    for item in (arg or "").split(","):
        key = item.partition("=")[0].strip()
        if key in own:
            own[key] = item.partition("=")[2].strip()
        elif item.strip():
            rest.append(item.strip())
    if own["base"] not in BASES:
        raise ValueError(f"config arg base={own['base']!r}: choose one of {', '.join(BASES)}")
    c = importlib.import_module(f"configs.{own['base']}").get_config(",".join(rest))
    c.experiment = "layer_sweep"
    c.sweep = ml_collections.ConfigDict()
    c.sweep.poolings = ("last", "mean")
    if not own["stride"].isdigit() or int(own["stride"]) < 1:
        raise ValueError(f"config arg stride={own['stride']!r}: expected a positive integer (every stride-th layer)")
    c.sweep.layer_stride = int(own["stride"])
    c.sweep.top_k = (1, 2, 3)        # union over targets of each target's k best candidates
    c.sweep.depths = (0.25, 0.5, 0.75)  # relative depths for cross-encoder concatenations
    c.sweep.n_boot = 200
    c.sweep.val_fraction = 0.2       # share of each task's training rows the combinations are ranked on
    c.router.num_seeds = min(c.router.num_seeds, 3)  # 3 seeds per combination, all kept
    c.router.keep = c.router.num_seeds
    return c
