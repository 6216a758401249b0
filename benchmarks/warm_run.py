"""Warm-run profile: how much of a run whose expensive products are all cached is compilation, and what
JAX's persistent compilation cache (`paths.enable_compile_cache`) saves. One script; the runs are child
processes, because the cache acts across processes.

    python benchmarks/warm_run.py --config=configs/default.py --workdir=/tmp/warm_default
    python benchmarks/warm_run.py --config=configs/default.py:runlocal --workdir=/tmp/warm_runlocal

Every run is ``experiments.main --config=CONFIG --workdir=WORKDIR`` (the same command, so the same workdir
and project cache: labels, weights, features). In order:
  0. prime: compile cache on, into a fresh temporary cache directory (fills it; also fills the project
     cache and the workdir when they are cold, so its time is not reported as warm);
  1. off:   compile cache off (what a warm run cost before the cache);
  2. on:    compile cache on, the same directory (every program it compiled in run 0 is loaded).
Runs 1 and 2 alternate `--repeats` times. Per run: process wall time, stage wall times, and JAX's compile
events per stage: tracing, lowering to MLIR, backend compile (with the cache: mostly the cache lookup),
number of backend compiles and persistent-cache hits. The ratio off / on is printed from the same script.
"""
from __future__ import annotations

import json
import logging
import os
import re
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
                                            "cache_hits": 0})

    def on_duration(event, duration_secs, **_):
        if event in EVENTS:
            bucket()[EVENTS[event]] += duration_secs
            bucket()["compiles"] += event == "/jax/core/compile/backend_compile_duration"

    def on_event(event, **_):
        if event == "/jax/compilation_cache/cache_hits":
            bucket()["cache_hits"] += 1

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    jax.monitoring.register_event_listener(on_event)

    class StageTracker(logging.Handler):  # the pipeline logs "===== stage NAME =====" / "... done in"
        def emit(self, record):
            m = re.match(r"===== stage (\S+) (=====|done)", record.getMessage())
            if m:
                current[0] = m.group(1) if m.group(2) == "=====" else "(outside stages)"

    logging.getLogger("absl").addHandler(StageTracker())
    os.environ[paths.COMPILE_CACHE_ENV] = cache  # "off" or the benchmark's directory; also read by main
    paths.enable_compile_cache()
    sys.argv = [sys.argv[0], *argv]
    try:
        main_lib.run_cli()
    finally:
        print(_MARK + json.dumps(prof), flush=True)


def _run(cache: str, argv: list[str]) -> dict:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", cache, *argv], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                              [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               os.environ.get("PYTHONPATH", "")])))
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    prof = json.loads([l for l in proc.stdout.splitlines() if l.startswith(_MARK)][-1][len(_MARK):])
    return {"wall_s": wall, "profile": prof}


def _stage_timings(workdir: str) -> dict:
    with open(os.path.join(workdir, "metrics.json")) as f:
        return json.load(f).get("timings_s", {})


def _show(name: str, r: dict) -> None:
    tot = {k: sum(p[k] for p in r["profile"].values()) for k in ("trace_s", "lower_s", "compile_s", "compiles",
                                                                   "cache_hits")}
    print(f"{name:6s} wall {r['wall_s']:6.1f}s | trace {tot['trace_s']:5.1f}s lower {tot['lower_s']:5.1f}s "
          f"backend compile {tot['compile_s']:5.1f}s ({tot['compiles']} programs, {tot['cache_hits']} cache hits)")
    for stage, wall in r["timings"].items():
        p = r["profile"].get(stage, {})
        print(f"         {stage:10s} {wall:6.1f}s: trace {p.get('trace_s', 0):5.1f} lower {p.get('lower_s', 0):5.1f} "
              f"compile {p.get('compile_s', 0):5.1f} ({p.get('compiles', 0)} programs, {p.get('cache_hits', 0)} hits)")


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
        print(f"prime (fills caches): {prime['wall_s']:.1f}s")
        results = {"off": [], "on": []}
        for _ in range(repeats):
            for mode in ("off", "on"):
                r = _run("off" if mode == "off" else cache, argv)
                r["timings"] = _stage_timings(args["workdir"])
                results[mode].append(r)
                _show(mode, r)
    best = {m: min(r["wall_s"] for r in rs) for m, rs in results.items()}
    print(f"RATIO warm run, compile cache off / on: {best['off'] / best['on']:.2f}x "
          f"(best of {repeats}: {best['off']:.1f}s -> {best['on']:.1f}s; process wall incl. imports)")


if __name__ == "__main__":
    main()
