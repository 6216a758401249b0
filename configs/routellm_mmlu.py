"""RouteLLM's 2-target MMLU pool (Mixtral-8x7B-Instruct vs GPT-4-1106-preview; 14,042 prompts, 57 subjects).

    python -m experiments.main --config=configs/routellm_mmlu.py:max_train=3000,max_test=1000 --workdir=runs/routellm

Besides the common metrics, the report gives RouteLLM's APGR and CPT(20/50/80 %) per router (strong =
GPT-4, score = p_strong - p_weak) with bootstrap CIs. No official split: a seeded 85/15 split after
de-duplication, stratified by subject. Prices are an assumption (Mixtral $0.24/M; GPT-4-1106 $10/M in,
$30/M out), recorded in the dataset metadata.

Args: encoders=a+b (default smollm2_135m), max_train, max_test (0 = all), subset=mmlu|gsm8k, seed, repeats=R, runlocal.
"""
from configs import common


def get_config(arg=None):
    a = common.parse_arg(arg, common.REAL_DATA_RUNLOCAL_ARGS, encoders=("smollm2_135m",), max_train=3000,
                         max_test=1000, subset="mmlu", seed=0, repeats=1, runlocal=False)
    c = common.base_config()
    c.seed = a.seed
    c.repeats = a.repeats
    c.data.source = "routellm"
    c.data.subset = a.subset
    c.data.max_train, c.data.max_test = a.max_train, a.max_test
    c.encoders = a.encoders
    c.router.pca_dim = 100
    if a.runlocal:
        common.shrink_for_real_data_smoke_test(c)
    return c


def sweep(add, arg=None):
    """Single encoders, then all three concatenated (shared layout)."""
    for enc in ("smollm2_135m", "gemma3_270m", "qwen25_coder_05b"):
        add(name=enc, encoders=(enc,))
    add(name="all3-shared", encoders=("smollm2_135m", "gemma3_270m", "qwen25_coder_05b"),
        **{"router.layout": "shared"})
