"""Multi-host extraction for real: 2 CPU processes (jax.distributed on localhost) == 1 process."""
import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from prefill_router.features import distributed, extract
from prefill_router.features import store as store_lib

WORKER = textwrap.dedent('''
    import importlib.util, json, os, sys
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax
    jax.config.update("jax_num_cpu_devices", 1)
    jax.config.update("jax_default_matmul_precision", "highest")
    from prefill_router.features import distributed
    assert distributed.maybe_initialize()  # from PREFILL_ROUTER_* environment variables
    from prefill_router.features import extract

    args = json.loads(sys.argv[1])
    spec = importlib.util.spec_from_file_location("features_conftest", args["conftest"])
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    fs = extract.extract_features(helpers.tiny_encoder(), args["prompts"], store_dir=args["store"], **args["kw"])
    print(json.dumps({"process": jax.process_index(), "count": jax.process_count(), "key": fs.key,
                      "computed": fs.stats["prompts_computed"]}))
''')

PROMPTS = ["p%d " % i + "w" * (i * 5 % 30) for i in range(10)]
KW = dict(batch_size=4, max_length=64, chunk_size=3, length_grid=[64], progress=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_equal_one_process(enc, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    store = tmp_path / "multi"
    args = json.dumps({"prompts": PROMPTS, "store": str(store), "kw": KW,
                       "conftest": str(pathlib.Path(__file__).with_name("conftest.py"))})  # tiny_encoder()
    port = _free_port()
    procs = []
    for pid in range(2):
        env = dict(os.environ, PREFILL_ROUTER_COORDINATOR=f"127.0.0.1:{port}", PREFILL_ROUTER_NUM_PROCESSES="2",
                   PREFILL_ROUTER_PROCESS_ID=str(pid))
        env.pop("JAX_NUM_PROCESSES", None)
        procs.append(subprocess.Popen([sys.executable, str(script), args],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("multi-process extraction timed out")
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert [r["count"] for r in results] == [2, 2]
    assert results[0]["key"] == results[1]["key"]
    # host p computed the prompts whose hash it owns, each exactly once
    single = extract.extract_features(enc, PROMPTS, store_dir=tmp_path / "single", **KW)
    owners = [distributed.owner_of(store_lib.prompt_hash(enc.tokenizer.render(p, {})), 2) for p in PROMPTS]
    assert [r["computed"] for r in results] == [owners.count(0), owners.count(1)]
    assert single.key == results[0]["key"]
    multi = extract.FeatureSet.open(store / single.store_dir.name, single.key)
    for pooling in ("last", "mean"):
        np.testing.assert_allclose(multi.get(pooling), single.get(pooling), atol=1e-5)


def test_maybe_initialize_settings(monkeypatch):
    for var in ("PREFILL_ROUTER_COORDINATOR", "PREFILL_ROUTER_NUM_PROCESSES", "PREFILL_ROUTER_PROCESS_ID",
                "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_NTASKS"):
        monkeypatch.delenv(var, raising=False)
    assert distributed.maybe_initialize() is False  # nothing configured: single process
    assert distributed.maybe_initialize(num_processes=1) is False
    monkeypatch.setenv("PREFILL_ROUTER_COORDINATOR", "127.0.0.1:1234")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
    assert distributed._resolve(None, None, None) == ("127.0.0.1:1234", 2, None)
    with pytest.raises(ValueError, match="PREFILL_ROUTER_PROCESS_ID"):
        distributed.maybe_initialize()
    assert distributed._resolve("h:1", 4, 3) == ("h:1", 4, 3)


def test_prompt_assignment():
    assert distributed.owner_of("0000000a" + "f" * 56, 3) == 10 % 3
    assert distributed.owner_of("ffffffff", 1) == 0
    owners = [distributed.owner_of(store_lib.prompt_hash(str(i)), 2) for i in range(200)]
    assert 70 < sum(owners) < 130  # balanced in expectation
