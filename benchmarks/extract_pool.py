"""Full LLMRouter pool extraction per encoder, measured on the whole pool or estimated from a random sample:
tokens/s, peak RSS, length caps.

    python benchmarks/extract_pool.py [--num_prompts=256] [--encoders=smollm2_135m,gemma3_270m,qwen25_coder_05b]
                                      [--dtypes=float32,bfloat16] [--max_length=512] [--batch_tokens=2048]
    python benchmarks/extract_pool.py --num_prompts=0 --dtypes=bfloat16     # all 6,108 prompts, measured

For each encoder: renders and tokenizes every prompt of the pool (data.load_llmrouter: all 6,108 rows) and
prints how many prompts and tokens lie beyond candidate length caps. Then, for each (encoder, dtype), a child
process extracts a seeded random sample of `num_prompts` prompts (0: every prompt) into an empty temporary
store (so every prompt is computed) and reports tokens/s (compute only), compile seconds, the extraction's wall
time, its peak resident memory (ru_maxrss) at the end of loading and overall, and the load time. The child
loads the encoder as extraction does: parameters in that dtype, no untied LM head (`load_encoder(name, dtype=,
head=False)`). With a sample, the full-pool time is extrapolated as pool tokens at the cap / sample tokens/s +
sample compile time (a random sample has the pool's length mix; attention's n^2 share is included by measuring,
not modelled); with the whole pool it is the measured extraction wall time (loading excluded, printed apart).
The three-encoder total is compared with the 60-minute target; dtype ratios come from the same script.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from absl import app, flags

flags.DEFINE_integer("num_prompts", 256, "random sample size per encoder (0: the whole pool, measured, not "
                     "extrapolated)")
flags.DEFINE_list("encoders", ["smollm2_135m", "gemma3_270m", "qwen25_coder_05b"], "registry names")
flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "compute dtypes to measure")
flags.DEFINE_integer("max_length", 512, "length cap (configs/common.py default)")
flags.DEFINE_list("caps", ["256", "512", "1024", "2048"], "caps whose truncation share is printed")
flags.DEFINE_integer("batch_tokens", 2048, "token budget per batch (configs/common.py default)")
flags.DEFINE_integer("seed", 0, "sample seed")
flags.DEFINE_string("child", "", "internal: run one (encoder, dtype) measurement and print JSON")
F = flags.FLAGS
_MARK = "EXTRACT_POOL "


def _pool_prompts() -> list[str]:
    from prefill_router import data, paths
    return list(data.load_llmrouter(paths.data_dir(), threshold=0.5).prompts)


def _sample(n_pool: int):
    import numpy as np
    if F.num_prompts == 0:
        return np.arange(n_pool)
    return np.sort(np.random.default_rng(F.seed).choice(n_pool, size=min(F.num_prompts, n_pool), replace=False))


def _child(spec: str) -> None:
    """Extracts the sample with one (encoder, dtype); prints its stats and peak RSS."""
    from prefill_router.encoders.registry import load_encoder
    from prefill_router.features import extract
    name, dtype = spec.split(":")
    prompts = _pool_prompts()
    sample = [prompts[i] for i in _sample(len(prompts))]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    enc = load_encoder(name, dtype=dtype, head=False)
    load_s = time.perf_counter() - t0
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as store:
        fs = extract.extract_features(enc, sample, store_dir=store, batch_tokens=F.batch_tokens,
                                      max_length=F.max_length, dtype=dtype, progress=False)
    extract_s = time.perf_counter() - t0
    s = fs.stats
    print(_MARK + json.dumps({"extract_wall_s": extract_s, "tokens": s["total_tokens"], "compute_s": s["compute_s"],
                              "compile_s": s["compile_s"],
                              "tokens_per_s": s["tokens_per_s"], "padding_efficiency": s["padding_efficiency"],
                              "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                              "rss_before_gb": rss_before / 2**20, "load_peak_rss_gb": rss_loaded / 2**20,
                              "load_s": load_s}), flush=True)


def _lengths(name: str, prompts: list[str]):
    import numpy as np
    from prefill_router.encoders.registry import load_encoder
    enc = load_encoder(name, dtype="bfloat16", head=False)  # only its tokenizer is used
    ids, _ = enc.tokenizer.encode_batch([enc.tokenizer.render(p, {}) for p in prompts], max_length=None)
    return np.asarray([len(t) for t in ids])


def main(argv):
    del argv
    if F.child:
        return _child(F.child)
    import numpy as np
    prompts = _pool_prompts()
    sample = _sample(len(prompts))
    print(f"LLMRouter pool: {len(prompts)} prompts; sample of {len(sample)} (seed {F.seed}), max_length "
          f"{F.max_length}, batch_tokens {F.batch_tokens}, {os.cpu_count()} cores")
    total_min = {d: 0.0 for d in F.dtypes}
    whole_pool = F.num_prompts == 0  # the whole pool is measured, a sample extrapolated
    approx = "" if whole_pool else "~"
    for name in F.encoders:
        lengths = _lengths(name, prompts)
        pool_tokens = int(np.minimum(lengths, F.max_length).sum())
        caps = ", ".join(f">{c}: {np.mean(lengths > int(c)):.1%} of prompts, "
                         f"{1 - np.minimum(lengths, int(c)).sum() / lengths.sum():.1%} of tokens cut"
                         for c in F.caps)
        print(f"\n{name}: pool {lengths.sum()} tokens (mean {lengths.mean():.0f}, median {np.median(lengths):.0f}, "
              f"max {lengths.max()}), {pool_tokens} at cap {F.max_length}; {caps}")
        base = None
        for dtype in F.dtypes:
            proc = subprocess.run([sys.executable, __file__, f"--child={name}:{dtype}",
                                   *[a for a in sys.argv[1:] if not a.startswith("--child")]],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"  {dtype}: FAILED\n{proc.stderr[-2000:]}")
                continue
            r = json.loads([l for l in proc.stdout.splitlines() if l.startswith(_MARK)][-1][len(_MARK):])
            # The whole pool: its measured extraction wall time (tokenising, compiling, storing included).
            est_min = (r["extract_wall_s"] if whole_pool else
                       pool_tokens / r["tokens_per_s"] + r["compile_s"]) / 60
            total_min[dtype] += est_min
            base = base or r["tokens_per_s"]
            print(f"  {dtype:8s}: {r['tokens_per_s']:7.0f} tokens/s ({r['tokens']} tokens in {r['compute_s']:.1f}s, "
                  f"+{r['compile_s']:.1f}s compile, padding eff {r['padding_efficiency']:.3f}), peak RSS "
                  f"{r['peak_rss_gb']:.2f} GB ({r['load_peak_rss_gb']:.2f} GB by the end of the {r['load_s']:.0f}s "
                  f"load) -> full pool {approx}{est_min:.1f} min; ratio vs {F.dtypes[0]} "
                  f"{r['tokens_per_s'] / base:.2f}x")
    for dtype, minutes in total_min.items():
        print(f"TOTAL {dtype}: {', '.join(F.encoders)} {approx}{minutes:.1f} min for the full pool (target <= 60)")


if __name__ == "__main__":
    app.run(main)
