"""Cross-attention router (arXiv 2509.09782) on prefill and sentence query tokens, per-query output-length
prediction and linear / exponential reward routing, against SharedTrunkNet and the controls (issue #20).

    python -m experiments.main --config=configs/cross_attention.py --workdir=runs/ca_gsm8k        # RouteLLM GSM8K
    python -m experiments.main --config=configs/cross_attention.py:source=llmrouter --workdir=runs/ca_llmrouter
    python -m experiments.main --config=configs/cross_attention.py:source=routerbench,path=FILE --workdir=...
    python -m experiments.main --config=configs/cross_attention.py:runlocal --workdir=/tmp/ca_smoke  # smoke test

A RouterBench-layout file without '<model>|total_cost' columns (e.g. the LLMRouter rows written by
benchmarks/cross_attention_routerbench_layout.py) needs prices: --config.data.prices=PRICES.json.

``router.kind=cross_attention`` adds to the pipeline: the cross-attention routers (one per query kind in
``cross_attention.queries``), the output-length predictor (ridge vs per-target median, chosen on validation;
only where the data has output lengths: RouteLLM GSM8K responses, RouterBench responses, long format) and the
reward curves of every router (AIQ, P-AUCCC, savings at >= best single, λ-stability, paired tests); each
cross-attention router is also tested against SharedTrunkNet (paired bootstrap).

Args: source=gsm8k|llmrouter|routerbench|long (gsm8k = RouteLLM's GSM8K pool; routerbench/long need path=FILE),
encoders=a+b, queries=prefill+sentence, max_train, max_test (0 = all), seed, repeats=R (R runs over seeds, the
cross-attention routers refitted in each: mean and t-interval, stages/repeats.py), runlocal (tiny random encoder
and sentence encoder, 300/100 prompts, 2 seeds: numbers meaningless).
"""
from configs import common

SOURCES = {"gsm8k": ("routellm", "gsm8k"), "llmrouter": ("llmrouter", ""), "routerbench": ("routerbench", ""),
           "long": ("long", "")}


def get_config(arg=None):
    a = common.parse_arg(arg, source="gsm8k", path="", encoders=("smollm2_135m",), queries=("prefill", "sentence"),
                         max_train=0, max_test=0, seed=0, repeats=1, runlocal=False)
    if a.source not in SOURCES:
        raise ValueError(f"unknown source {a.source!r}; choose one of {', '.join(SOURCES)}")
    c = common.base_config()
    c.seed = a.seed
    c.repeats = a.repeats
    c.data.source, subset = SOURCES[a.source]
    c.data.subset = subset or c.data.subset
    c.data.path = a.path
    c.data.max_train, c.data.max_test = a.max_train, a.max_test
    c.encoders = a.encoders
    c.router.kind = "cross_attention"
    c.cross_attention.queries = a.queries
    if a.runlocal:
        common.shrink_for_real_data_smoke_test(c)
        c.cross_attention.width, c.cross_attention.ffn = 8, 16
        c.routing.n_lambdas = 21
    return c
