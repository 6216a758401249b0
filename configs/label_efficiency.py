"""Label-efficiency curves of adding a target to a trained router (issue #19; experiments/label_efficiency.py).

    python -m experiments.main --config=configs/label_efficiency.py --workdir=runs/label_efficiency_default
    python -m experiments.main --config=configs/label_efficiency.py:pool=llmrouter,max_train=1000 \
        --workdir=runs/label_efficiency_llmrouter
    python -m experiments.main --config=configs/label_efficiency.py:runlocal --workdir=/tmp/le_smoke

Args (`:key=value,...`):
  pool=P         default (configs/default.py: 3 local targets on generated items) | llmrouter (9-target pool)
  encoders=a+b   router encoders (default smollm2_135m)
  max_train=N, max_test=N   llmrouter subsample (as configs/llmrouter_pool.py; 0 = all)
  items=N        default pool: generated items (default 1200)
  targets=a+b    held-out targets (default: every target in turn)
  grid=25+50+... labels of the added target (0 = all of its labelled training rows)
  repeats=R      draws of the N labels per grid point (default 5)
  modes=a+b      how the target is added: head+readout+finetune (router.add_target)
  seed=S         split / training seed;  runlocal   tiny random models: a smoke test (numbers meaningless)
"""
import ml_collections

from configs import common
from configs import default as default_config
from configs import llmrouter_pool

GRID = (25, 50, 100, 200, 400, 800, 0)


def get_config(arg=None):
    a = common.parse_arg(arg, {"repeats": 2, "grid": (10, 20, 0), "modes": ("head", "readout"), "items": 48,
                               **common.REAL_DATA_RUNLOCAL_ARGS},
                         pool="default", encoders=("smollm2_135m",), max_train=0, max_test=0, items=1200,
                         targets=(), grid=tuple(str(n) for n in GRID), repeats=5,
                         modes=("head", "readout", "finetune"), seed=0, runlocal=False)
    runlocal = ",runlocal" if a.runlocal else ""
    if a.pool == "default":
        c = default_config.get_config(f"seed={a.seed},items={a.items},encoders={'+'.join(a.encoders)}{runlocal}")
    elif a.pool == "llmrouter":
        c = llmrouter_pool.get_config(f"seed={a.seed},max_train={a.max_train},max_test={a.max_test},"
                                      f"encoders={'+'.join(a.encoders)}{runlocal}")
    else:
        raise ValueError(f"config arg pool={a.pool!r}: use 'default' or 'llmrouter'")
    c.experiment = "label_efficiency"
    c.baselines.mf = False
    le = c.label_efficiency = ml_collections.ConfigDict()
    le.targets = tuple(a.targets)
    le.grid = tuple(int(n) for n in a.grid)
    le.repeats = a.repeats
    le.modes = tuple(a.modes)
    le.C = 1.0                 # inverse L2 strength of the head / readout logistic fits
    le.finetune_steps = 100    # full-batch Adam steps of the fine-tune
    le.finetune_lr = 1e-4
    le.distill_weight = 1.0    # weight of the old heads' distillation term
    return c
