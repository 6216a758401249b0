"""Add a target to a saved router from a few labels (issue #19; experiments/add_target.py).

    python -m experiments.main --config=configs/add_target.py:checkpoint=runs/default/router,labels=new.csv \
        --workdir=runs/add_new

Args (`:key=value,...`):
  checkpoint=DIR   the router to extend (required)
  labels=FILE      long-format labels (question, model, is_correct, output_tokens; CSV / JSONL) (required)
  target=MODEL     the model of the file to add (default: the file's only model)
  name=NAME        its name in the router (default: MODEL); must be new
  num_labels=N     use a seeded draw of N of its labelled prompts (default 0 = all)
  mode=M           head (frozen trunk, default) | readout (logistic on the selected layers) | finetune
  seed=S           the draw's seed;  runlocal   a 10-step fine-tune (smoke tests)
Prices of the new target: the file's cost column, or --config.data.prices=prices.json.
"""
import ml_collections

from configs import common


def get_config(arg=None):
    a = common.parse_arg(arg, {"finetune_steps": 10}, checkpoint="", labels="", target="", name="", num_labels=0,
                         mode="head", seed=0, finetune_steps=100, runlocal=False)
    c = ml_collections.ConfigDict()
    c.experiment = "add_target"
    c.seed = a.seed
    c.cache_dir = ""       # '' -> $PREFILL_ROUTER_CACHE or ~/.cache/prefill_router
    c.compile_cache = True
    c.data = ml_collections.ConfigDict()
    c.data.prices = ""     # JSON price file {model: [in $/M, out $/M]} when the labels file has no cost column
    c.add = ml_collections.ConfigDict()
    c.add.checkpoint = a.checkpoint
    c.add.labels = a.labels
    c.add.target = a.target
    c.add.name = a.name
    c.add.num_labels = a.num_labels
    c.add.mode = a.mode
    c.add.C = 1.0                    # inverse L2 strength of the logistic fits
    c.add.finetune_steps = a.finetune_steps
    c.add.finetune_lr = 1e-4
    c.add.distill_weight = 1.0       # weight of the old heads' distillation term (finetune)
    return c
