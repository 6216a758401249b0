"""Encoder x target transfer matrix with local targets (issue 8): for each target, how well each encoder's
prefill states (the target's own included) predict its correctness, under readout controls.

    python -m experiments.main --config=configs/transfer.py --workdir=runs/transfer
    python -m experiments.main --config=configs/transfer.py:items=200 --workdir=runs/transfer_200
    python -m experiments.main --config=configs/transfer.py:runlocal --workdir=/tmp/transfer_smoke  # < 1 min, CPU

Produces in the workdir: transfer.json (matrices of test AUC with CIs, chosen layers and relative depths,
per-layer training CV-AUC curves, own-vs-foreign paired bootstrap tests), metrics.json (headline: the
matrix per readout control), report.md (tables + plain-language summary) and plots/transfer_<control>.png.
Labels are collected from the targets (cached); features are cached per encoder and template control.

Args (`:key=value,...`):
  runlocal      tiny random encoders/targets (tiny_llama, tiny_qwen3, tiny_gemma3), 48 items: smoke test
                (numbers meaningless).
  items=N       number of generated items (default 400).
  targets=a+b   target registry names (default smollm2_135m+gemma3_270m+qwen25_coder_05b).
  encoders=a+b  encoder registry names (default: the targets, so the diagonal is the target's own states).
  templates=a+b template controls: chat (default rendering) | no_gen_prompt (add_generation_prompt=False)
                | raw (no template); default chat+no_gen_prompt.
  seed=S        split / CV / bootstrap seed.
"""
import ml_collections

from configs import common

DEFAULT_TARGETS = ("smollm2_135m", "gemma3_270m", "qwen25_coder_05b")
TINY = ("tiny_llama", "tiny_qwen3", "tiny_gemma3")


def get_config(arg=None):
    a = common.parse_arg(arg, runlocal=False, items=400, targets=DEFAULT_TARGETS, encoders=(),
                         templates=("chat", "no_gen_prompt"), seed=0)
    c = common.base_config()
    c.experiment = "transfer"
    c.seed = a.seed
    c.data.source = "collect"
    c.data.num_items = a.items
    c.data.test_fraction = 0.25
    c.data.targets = a.targets
    c.extract.max_length = 512
    c.transfer = ml_collections.ConfigDict()
    c.transfer.templates = a.templates
    c.transfer.poolings = ("last", "mean")
    c.transfer.cv_pca_dims = (16, 64)  # clipped to the feature width and the rows of a CV fit
    c.transfer.cv_folds = 5
    c.transfer.C = 1.0
    c.eval.n_boot = 1000
    if a.runlocal:
        c.data.targets = TINY if a.targets == DEFAULT_TARGETS else a.targets
        c.data.num_items = 48 if a.items == 400 else a.items
        c.extract.max_length = 256
        c.transfer.cv_pca_dims = (4,)
        c.transfer.cv_folds = 3
        c.eval.n_boot = 50
    c.encoders = a.encoders or c.data.targets
    return c
