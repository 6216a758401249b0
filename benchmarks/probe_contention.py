"""Benchmark: the probe stage alone vs beside a fixed CPU load (one NumPy matmul loop), interleaved, in one script.

    python benchmarks/probe_contention.py                        # default-run shape, 3 rounds
    python benchmarks/probe_contention.py --rounds 5 --layers 16

Workload: ``run_probes`` (Fisher J, J_diag, d_eff, CV-AUC grid) on synthetic residual-stream-like features
shaped like the default run's probe stage: 2 poolings x ``--layers`` x N training rows x D, K targets,
Fisher PCA 64, CV-AUC PCA grid (50, 100), 5 folds. Compiled once before timing.
Load: a child process multiplying two 1000x1000 float64 matrices in a loop (NumPy's BLAS, its default
threads), started before and killed after each "beside load" run. Each round times "alone" then "beside
load" (the order alternates by round); the machine may be shared, so "alone" is not quiet: compare the
conditions round by round. Printed: wall and CPU seconds per run, the slow-down (beside / alone) per round
and its median, and the BLAS thread counts of this process (threadpoolctl, test dependency).
``--compare_unfixed`` also times the probes with scipy's OpenBLAS pool left at its default threads
(``linalg.lapack_threads`` replaced by a no-op), the state before the fix.
"""
from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time

import numpy as np

LOAD = "import numpy as np\na = np.random.rand(1000, 1000)\nwhile True:\n    a @ a\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--layers", type=int, default=31)
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--d", type=int, default=576)
    ap.add_argument("--targets", type=int, default=3)
    ap.add_argument("--compare_unfixed", action="store_true")
    args = ap.parse_args()

    from probe_speed import synthetic
    from threadpoolctl import threadpool_info

    from prefill_router.probes import ProbeConfig, linalg, run_probes

    feats, Y, M, _ = synthetic(args.layers, args.n, args.d, args.targets)
    features = {("enc", p): x for p, x in feats.items()}
    config = ProbeConfig(pca_dim=64, cv_pca_dims=(50, 100), cv_folds=5)

    fixed = linalg.lapack_threads

    def probe(variant: str = "fixed"):
        linalg.lapack_threads = fixed if variant == "fixed" else (lambda n=1: contextlib.nullcontext())
        t0, c0 = time.perf_counter(), time.process_time()
        run_probes(features, Y, M, config)
        linalg.lapack_threads = fixed
        return time.perf_counter() - t0, time.process_time() - c0

    print(f"shape: 2 poolings x {args.layers} layers x N={args.n} x D={args.d}, K={args.targets}")
    t_first, _ = probe()
    print(f"first call (incl. compile): {t_first:.1f} s; BLAS pools: "
          + ", ".join(f"{i['filepath'].rsplit('/', 1)[-1]} {i['num_threads']} threads" for i in threadpool_info()
                      if i["user_api"] == "blas"))
    variants = ("fixed", "unfixed") if args.compare_unfixed else ("fixed",)
    times = {(v, c): [] for v in variants for c in ("alone", "beside load")}
    for r in range(args.rounds):
        conds = ("alone", "beside load") if r % 2 == 0 else ("beside load", "alone")
        for v in variants:
            for cond in conds:
                load = subprocess.Popen([sys.executable, "-c", LOAD]) if cond == "beside load" else None
                try:
                    if load is not None:
                        time.sleep(1.0)  # let the load start its BLAS threads
                    times[v, cond].append(probe(v))
                finally:
                    if load is not None:
                        load.kill()
                        load.wait()
            a, b = times[v, "alone"][-1], times[v, "beside load"][-1]
            print(f"round {r + 1} {v:>7}: alone {a[0]:6.1f} s (cpu {a[1]:6.1f}) | beside load {b[0]:6.1f} s "
                  f"(cpu {b[1]:6.1f}) | slow-down {b[0] / a[0]:.2f}x", flush=True)
    for v in variants:
        alone = np.asarray([a[0] for a in times[v, "alone"]])
        beside = np.asarray([b[0] for b in times[v, "beside load"]])
        print(f"{v:>7}: alone median {np.median(alone):.1f} s, beside load median {np.median(beside):.1f} s; "
              f"slow-down median {np.median(beside / alone):.2f}x (rounds {np.round(beside / alone, 2).tolist()})")


if __name__ == "__main__":
    main()
