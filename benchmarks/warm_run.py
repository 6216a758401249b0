"""Warm-run profile: how much of a run whose expensive products are all cached is compilation, and what
JAX's persistent compilation cache (`paths.enable_compile_cache`) and the stage-product cache
(`stages.cache`: probe table, baselines' test predictions) save. One script; the runs are child processes,
because both caches act across processes.

    python benchmarks/warm_run.py --config=configs/default.py --workdir=/tmp/warm_default
    python benchmarks/warm_run.py --config=configs/default.py:runlocal --workdir=/tmp/warm_runlocal

Every run is ``experiments.main --config=CONFIG --workdir=WORKDIR`` (the same command, so the same workdir
and project cache: labels, weights, features). In order:
  0. prime: both caches on, the compile cache in a fresh temporary directory (fills it; also fills the
     project cache, its stage products and the workdir when they are cold, so its time is not reported);
  1. off:   both caches off (PREFILL_ROUTER_COMPILE_CACHE=off, PREFILL_ROUTER_STAGE_CACHE=0: what a warm run
     cost before them; labels, weights, features and sentence embeddings stay cached);
  2. on:    both caches on, the same directories (every program compiled in run 0 is loaded, every stage
     product read).
Runs 1 and 2 alternate `--repeats` times. Per run: process wall and CPU time (user + sys of the child, all
threads), stage wall and CPU times, and JAX's compile events per stage: tracing, lowering to MLIR, backend
compile (with the cache: mostly the cache lookup), number of backend compiles and persistent-cache hits.
CPU time is what to compare on a shared machine: wall time also counts waiting for other processes. The
ratios off / on are printed from the same script, and the last off and on runs' metrics.json are compared
leaf by leaf (`timings_s` aside): the caches must not change a number.
"""
from __future__ import annotations

import json
import logging
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

EVENTS = {"/jax/core/compile/jaxpr_trace_duration": "trace_s",
          "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
          "/jax/core/compile/backend_compile_duration": "compile_s"}
_MARK = "WARM_RUN_PROFILE "


def _child(cache: str, argv: list[str]) -> None:
    """Runs experiments.main in this process with compile events recorded per stage; prints them last."""
    import jax

    from experiments import main as main_lib
    from prefill_router import paths

    prof: dict = {}
    current = ["(outside stages)"]

    def bucket() -> dict:
        return prof.setdefault(current[0], {"trace_s": 0.0, "lower_s": 0.0, "compile_s": 0.0, "compiles": 0,
                                            "cache_hits": 0, "cpu_s": 0.0})

    def on_duration(event, duration_secs, **_):
        if event in EVENTS:
            bucket()[EVENTS[event]] += duration_secs
            bucket()["compiles"] += event == "/jax/core/compile/backend_compile_duration"

    def on_event(event, **_):
        if event == "/jax/compilation_cache/cache_hits":
            bucket()["cache_hits"] += 1

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    jax.monitoring.register_event_listener(on_event)

    cpu_mark = [time.process_time()]

    def switch(stage: str) -> None:  # CPU time (all threads of this process) goes to the stage that ends
        now = time.process_time()
        bucket()["cpu_s"] += now - cpu_mark[0]
        cpu_mark[0], current[0] = now, stage

    class StageTracker(logging.Handler):  # the pipeline logs "===== stage NAME =====" / "... done in"
        def emit(self, record):
            m = re.match(r"===== stage (\S+) (=====|done)", record.getMessage())
            if m:
                switch(m.group(1) if m.group(2) == "=====" else "(outside stages)")

    logging.getLogger("absl").addHandler(StageTracker())
    os.environ[paths.COMPILE_CACHE_ENV] = cache  # "off" or the benchmark's directory; also read by main
    paths.enable_compile_cache()
    sys.argv = [sys.argv[0], *argv]
    try:
        main_lib.run_cli()
    finally:
        switch("(outside stages)")
        print(_MARK + json.dumps(prof), flush=True)


def _run(cache: str, argv: list[str]) -> dict:
    """One child run; cache: the compile cache directory (both caches on) or "off" (both off)."""
    from prefill_router.stages import cache as stage_cache

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                         os.environ.get("PYTHONPATH", "")]))
    env[stage_cache.STAGE_CACHE_ENV] = "0" if cache == "off" else "1"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", cache, *argv], capture_output=True, text=True,
                          env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    prof = json.loads([l for l in proc.stdout.splitlines() if l.startswith(_MARK)][-1][len(_MARK):])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "profile": prof}


def _metrics(workdir: str) -> dict:
    with open(os.path.join(workdir, "metrics.json")) as f:
        return json.load(f)


def _leaves(obj, prefix=""):
    """(path, value) of every leaf of a JSON object."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, f"{prefix}/{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, f"{prefix}[{i}]")
    else:
        yield prefix, obj


def _compare(a: dict, b: dict) -> None:
    """Prints whether two metrics.json are equal leaf by leaf (exact), timings_s aside."""
    la, lb = (dict(_leaves({k: v for k, v in m.items() if k != "timings_s"})) for m in (a, b))
    diff = sorted(k for k in la.keys() | lb.keys() if la.get(k, "<absent>") != lb.get(k, "<absent>"))
    print(f"metrics.json off vs on: {len(la)} leaves, {len(diff)} differ" + "".join(
        f"\n  {k}: {la.get(k, '<absent>')!r} vs {lb.get(k, '<absent>')!r}" for k in diff[:20]))


def _show(name: str, r: dict) -> None:
    tot = {k: sum(p[k] for p in r["profile"].values()) for k in ("trace_s", "lower_s", "compile_s", "compiles",
                                                                   "cache_hits")}
    print(f"{name:6s} wall {r['wall_s']:6.1f}s cpu {r['cpu_s']:6.1f}s | trace {tot['trace_s']:5.1f}s lower "
          f"{tot['lower_s']:5.1f}s backend compile {tot['compile_s']:5.1f}s ({tot['compiles']} programs, "
          f"{tot['cache_hits']} cache hits)")
    for stage in [*r["timings"], "(outside stages)"]:
        p = r["profile"].get(stage, {})
        wall = r["timings"].get(stage, float("nan"))
        print(f"         {stage:16s} wall {wall:6.1f}s cpu {p.get('cpu_s', 0):6.1f}s: trace {p.get('trace_s', 0):5.1f} "
              f"lower {p.get('lower_s', 0):5.1f} compile {p.get('compile_s', 0):5.1f} ({p.get('compiles', 0)} "
              f"programs, {p.get('cache_hits', 0)} hits)")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        return _child(sys.argv[2], sys.argv[3:])
    args = dict(a.lstrip("-").split("=", 1) for a in sys.argv[1:])
    if "config" not in args or "workdir" not in args:
        raise SystemExit(__doc__)
    repeats = int(args.pop("repeats", 1))
    argv = [f"--config={args['config']}", f"--workdir={args['workdir']}"]
    with tempfile.TemporaryDirectory(prefix="jax_compile_") as cache:
        prime = _run(cache, argv)
        print(f"prime (fills caches): wall {prime['wall_s']:.1f}s cpu {prime['cpu_s']:.1f}s", flush=True)
        results, last = {"off": [], "on": []}, {}
        for _ in range(repeats):
            for mode in ("off", "on"):
                r = _run("off" if mode == "off" else cache, argv)
                last[mode] = _metrics(args["workdir"])
                r["timings"] = last[mode].get("timings_s", {})
                results[mode].append(r)
                _show(mode, r)
                sys.stdout.flush()
    _compare(last["off"], last["on"])
    for key, what in (("wall_s", "process wall incl. imports"), ("cpu_s", "process CPU, user + sys, all threads")):
        best = {m: min(r[key] for r in rs) for m, rs in results.items()}
        print(f"RATIO warm run, caches off / on ({what}): {best['off'] / best['on']:.2f}x "
              f"(best of {repeats}: {best['off']:.1f}s -> {best['on']:.1f}s)")


if __name__ == "__main__":
    main()
