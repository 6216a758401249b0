"""The whole pipeline as 2 JAX processes on localhost CPU == the same pipeline as 1 process.

Three subprocesses run ``python -m experiments.main --config=configs/default.py:runlocal`` at once: one
alone, and processes 0 and 1 of a jax.distributed run (PREFILL_ROUTER_* variables, read by
prefill_router/features/distributed.py). Each run gets its own cache dir (labels, feature store); the two
processes of the 2-process run share theirs, as hosts share the feature store. Each process has its own
workdir, so it shows what process 1 wrote: it stops after the features stage and writes no report.
Process 0's metrics.json must equal the 1-process run's leaf by leaf, except the stage timings and the
workdir in the plot paths; non-integer numbers up to float32 rounding (rtol 1e-4, atol 1e-6): each host
extracts the prompts whose hash it owns, so prompts meet other batch mates and bucket shapes than in the
1-process run, which moves features by ~1e-7 relative (seen: 15-104 of 3,556 metrics differing, at most
~1.6e-5 relative, on small differences of probabilities). Integers, strings and structure compare exactly.
"""
import json
import math
import os
import pathlib
import socket
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
TIMEOUT_S = 600
_MULTIPROCESS_VARS = ("PREFILL_ROUTER_COORDINATOR", "PREFILL_ROUTER_NUM_PROCESSES", "PREFILL_ROUTER_PROCESS_ID",
                      "PREFILL_ROUTER_MULTIHOST", "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID",
                      "SLURM_NTASKS")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(workdir: pathlib.Path, cache: pathlib.Path, log: pathlib.Path, **multiprocess) -> subprocess.Popen:
    """Starts one pipeline process; stdout + stderr go to `log`. `multiprocess`: PREFILL_ROUTER_* variables."""
    env = {k: v for k, v in os.environ.items() if k not in _MULTIPROCESS_VARS}
    env.update(JAX_PLATFORMS="cpu", **multiprocess)
    with open(log, "w") as f:
        return subprocess.Popen([sys.executable, "-m", "experiments.main", "--config=configs/default.py:runlocal",
                                 f"--workdir={workdir}", f"--config.cache_dir={cache}"],
                                cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT)


def _leaves(tree, path: str = "") -> dict[str, str]:
    """JSON tree -> {"/key/0/...": leaf as JSON text} (so NaN equals NaN)."""
    if not isinstance(tree, (dict, list)):
        return {path: json.dumps(tree)}
    out = {}
    for key, value in (tree.items() if isinstance(tree, dict) else enumerate(tree)):
        out.update(_leaves(value, f"{path}/{key}"))
    return out


def _same(a: str | None, b: str | None) -> bool:
    """Equal JSON leaves; two non-integer numbers within rtol 1e-4 / atol 1e-6 of each other also count."""
    if a == b:
        return True
    if a is None or b is None:
        return False
    x, y = json.loads(a), json.loads(b)
    return (all(isinstance(v, float) for v in (x, y))
            and math.isclose(x, y, rel_tol=1e-4, abs_tol=1e-6))


def _comparable(workdir: pathlib.Path) -> dict[str, str]:
    """The leaves of metrics.json without the stage timings, plot paths relative to the workdir."""
    metrics = json.loads((workdir / "metrics.json").read_text())
    del metrics["timings_s"]
    metrics["plots"] = [str(pathlib.Path(p).relative_to(workdir)) for p in metrics["plots"]]
    return _leaves(metrics)


@pytest.mark.slow
def test_two_process_pipeline_equals_one_process(tmp_path):
    port = _free_port()
    runs = {"single": _start(tmp_path / "single", tmp_path / "cache_single", tmp_path / "single.log")}
    for pid in range(2):
        runs[f"process{pid}"] = _start(tmp_path / f"process{pid}", tmp_path / "cache_multi",
                                       tmp_path / f"process{pid}.log",
                                       PREFILL_ROUTER_COORDINATOR=f"127.0.0.1:{port}",
                                       PREFILL_ROUTER_NUM_PROCESSES="2", PREFILL_ROUTER_PROCESS_ID=str(pid))
    failed = []
    for name, proc in runs.items():
        try:
            proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            for p in runs.values():
                p.kill()
                p.wait()
            failed.append(f"{name}: timed out after {TIMEOUT_S} s")
            break
        if proc.returncode != 0:
            failed.append(f"{name}: exit status {proc.returncode}")
    if failed:
        tails = "\n".join(f"----- {name} (last 3000 characters) -----\n"
                          + (tmp_path / f"{name}.log").read_text(errors="replace")[-3000:] for name in runs)
        pytest.fail("; ".join(failed) + "\n" + tails)

    assert (tmp_path / "process0" / "report.md").is_file()
    assert not (tmp_path / "process1" / "metrics.json").exists()
    assert not (tmp_path / "process1" / "report.md").exists()
    assert "process 1 of 2" in (tmp_path / "process1.log").read_text()
    single, multi = _comparable(tmp_path / "single"), _comparable(tmp_path / "process0")
    differ = [k for k in sorted(single.keys() | multi.keys()) if not _same(single.get(k), multi.get(k))]
    assert not differ, (f"{len(differ)} of {len(single)} metrics differ (1 process vs 2 processes): "
                        + "; ".join(f"{k}: {single.get(k)} vs {multi.get(k)}" for k in differ[:10]))
