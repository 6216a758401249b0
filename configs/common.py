"""Helpers shared by config files: parsing the ``:arg`` string of ``--config=configs/x.py:arg``.

The arg is a comma-separated list of ``key=value`` (or bare ``key`` for True); lists use ``+``
(``encoders=smollm2_135m+gemma3_270m``). Every key must be declared with a default, so a typo
fails with a message naming the accepted keys instead of being ignored. ``runlocal`` only changes
defaults: an arg given explicitly next to it is never overridden (``runlocal,items=20`` has 20 items).
"""
import types

import ml_collections


def _convert(key, text, default):
    if isinstance(default, bool):
        if text.lower() in ("1", "true", "yes", ""):
            return True
        if text.lower() in ("0", "false", "no"):
            return False
        raise ValueError(f"config arg {key}={text!r}: expected a boolean (true/false)")
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)
    if isinstance(default, (tuple, list)):
        return tuple(t for t in text.split("+") if t)
    return text


def parse_arg(arg: str | None, runlocal_defaults: dict | None = None, **defaults) -> types.SimpleNamespace:
    """Parses ``"a=1,b,c=x+y"`` against typed ``defaults``; raises ValueError on unknown keys.

    With a true ``runlocal`` arg, ``runlocal_defaults`` replace the defaults of the args they name (the
    smoke test's sizes); arguments given explicitly always win, e.g. ``runlocal,items=20`` gives 20 items.
    """
    explicit = {}
    for item in (arg or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, _, value = item.partition("=")
        key = key.strip()
        if key not in defaults:
            raise ValueError(
                f"unknown config arg {key!r}; accepted: {', '.join(sorted(defaults))}")
        try:
            explicit[key] = _convert(key, value.strip() if "=" in item else "true", defaults[key])
        except ValueError as e:
            raise ValueError(f"config arg {key}={value!r}: {e}") from None
    parsed = dict(defaults)
    if explicit.get("runlocal"):
        parsed.update(runlocal_defaults or {})
    parsed.update(explicit)
    return types.SimpleNamespace(**parsed)


def base_config() -> ml_collections.ConfigDict:
    """Every field the pipeline experiment reads, with the paper's defaults (method.md)."""
    c = ml_collections.ConfigDict()
    c.experiment = "pipeline"
    c.seed = 0
    c.repeats = 1     # R > 1: rerun router seeds and baselines (and the split where the dataset has none)
    #                   with seeds seed..seed+R-1; mean + t-interval over runs (stages/repeats.py)
    c.data_dir = ""   # '' -> $PREFILL_ROUTER_DATA or <repo>/../shared/data
    c.cache_dir = ""  # '' -> $PREFILL_ROUTER_CACHE or ~/.cache/prefill_router
    c.compile_cache = True  # JAX persistent compilation cache in <cache_dir>/jax_compile; False or env
    #                         PREFILL_ROUTER_COMPILE_CACHE=0 turns it off

    c.data = ml_collections.ConfigDict()
    c.data.source = "llmrouter"  # collect | llmrouter | routellm | routerbench | long
    c.data.path = ""              # file for routerbench / long formats
    c.data.subset = "mmlu"        # routellm: mmlu | gsm8k
    c.data.threshold = 0.5        # graded score >= threshold counts as correct
    c.data.max_train = 0          # seeded subsample of training prompts after dedup (0 = all)
    c.data.max_test = 0           # same for test prompts
    c.data.test_fraction = 0.15   # used when the dataset has no split of its own
    c.data.stratify_by = "task"
    c.data.prices = ""            # JSON price file {model: [in $/M, out $/M]} for sources without prices/costs
    c.data.drop_targets = ()      # target names removed after loading (e.g. single-class targets)
    # Label collection with local targets (source = collect).
    c.data.targets = ("smollm2_135m", "gemma3_270m", "qwen25_coder_05b")
    c.data.num_items = 400
    c.data.item_seed = 0
    c.data.mix = "uniform"  # uniform | local_targets (cells tuned for the 3 local models on item seed 1)

    c.encoders = ("smollm2_135m",)
    c.extract = ml_collections.ConfigDict()
    c.extract.max_length = 512
    c.extract.batch_tokens = 2048  # tokens per padded batch: ~1.1x faster than 4096 on a 2-core CPU;
    #                                raise it on accelerators
    c.extract.dtype = "float32"   # or "bfloat16" (fp32 accumulation): 3-4x faster on this CPU, but on the
    #                                default its best probe CV-AUC per target moved up to 0.0096 (README "Benchmarks")
    c.extract.truncate = "warn"   # warn | error
    c.extract.template_kwargs = ml_collections.ConfigDict()

    c.probe = ml_collections.ConfigDict()
    c.probe.criterion = "fisher"  # fisher | fisher_diag | cv_auc
    c.probe.poolings = ("last", "mean")
    c.probe.pca_dim = 64          # features are reduced to this many PCA dims before J (0 = raw)
    c.probe.shrink = 1e-3         # Fisher J ridge: eps = shrink * tr(S_W) / k
    c.probe.shrinkage = "fixed"   # fixed | ledoit_wolf
    c.probe.cv_auc = True         # also compute the toolkit's CV-AUC, for comparison
    c.probe.cv_folds = 5
    c.probe.cv_pca_dims = (50, 100)  # the toolkit's grid is (50, 100, 150, 200, 300)

    c.router = ml_collections.ConfigDict()
    c.router.layout = "per_target"  # per_target | shared
    c.router.pca_dim = 100          # per-target block PCA dims
    c.router.hidden = (256, 128)
    c.router.dropout = (0.3, 0.2)
    c.router.learning_rate = 1e-3
    c.router.weight_decay = 1e-4
    c.router.batch_size = 512
    c.router.max_epochs = 150
    c.router.patience = 15
    c.router.val_fraction = 0.15
    c.router.num_seeds = 10
    c.router.keep = 5
    c.router.kind = "shared_trunk"  # shared_trunk | cross_attention (adds the cross-attention routers, per-query
    #                                 length prediction and reward curves)

    c.cross_attention = ml_collections.ConfigDict()
    c.cross_attention.queries = ("prefill", "sentence")  # query tokens: prefill feature blocks and/or the sentence
    #                                                      embedding
    c.cross_attention.width = 64
    c.cross_attention.ffn = 128
    c.cross_attention.dropout = 0.1
    c.cross_attention.length_weight = 0.5  # [Assumption] weight of the masked log-length MSE beside the BCE

    c.routing = ml_collections.ConfigDict()
    c.routing.tolerance = 0.2
    c.routing.operating_val_fraction = 0.2  # #14.4: training rows held out to choose τ (0: no operating_point stage)
    c.routing.lam = 0.5
    c.routing.reward_forms = ("linear", "exponential")  # reward routing: λ·p − c and p·exp(−c/λ)
    c.routing.n_lambdas = 201  # λ grid of the reward curves (log-spaced over the tie points)

    c.baselines = ml_collections.ConfigDict()
    c.baselines.semantic = True     # kNN and MLP on all-MiniLM-L6-v2 embeddings
    c.baselines.mf = True
    c.baselines.sentence_encoder = "minilm_l6"

    c.eval = ml_collections.ConfigDict()
    c.eval.n_boot = 1000
    return c


# `runlocal` arg defaults of configs on real routing data (see `parse_arg`): tiny random encoder, 300/100 prompts.
REAL_DATA_RUNLOCAL_ARGS = {"encoders": ("tiny_llama",), "max_train": 300, "max_test": 100}


def shrink_for_real_data_smoke_test(c: ml_collections.ConfigDict) -> None:
    """`runlocal` for configs on real routing data, beyond its arg defaults: small trunk, 2 seeds, 100 bootstraps."""
    c.router.pca_dim = 16
    c.router.num_seeds, c.router.keep, c.router.max_epochs = 2, 1, 10
    c.baselines.sentence_encoder = "tiny_bert"
    c.eval.n_boot = 100
