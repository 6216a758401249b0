"""paths: data/cache locations and the persistent compilation cache (its off switches and a real hit)."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from prefill_router import paths

PROBE = textwrap.dedent('''
    import json, sys
    import jax, jax.numpy as jnp
    from prefill_router import paths
    events = []
    jax.monitoring.register_event_listener(lambda e, **_: events.append(e))
    where = paths.enable_compile_cache(sys.argv[1])
    jax.jit(lambda x: jnp.sin(x) @ x.T + 1)(jnp.ones((8, 8))).block_until_ready()
    print(json.dumps({"dir": where and str(where),
                      "hits": events.count("/jax/compilation_cache/cache_hits"),
                      "misses": events.count("/jax/compilation_cache/cache_misses")}))
''')


def _probe(tmp_path, env_value=None):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop(paths.COMPILE_CACHE_ENV, None)
    if env_value is not None:
        env[paths.COMPILE_CACHE_ENV] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "root")], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_compile_cache_is_hit_by_the_next_process(tmp_path):
    first = _probe(tmp_path)
    assert first["dir"] == str((tmp_path / "root" / "jax_compile").resolve())
    assert first["misses"] >= 1 and first["hits"] == 0 and any((tmp_path / "root" / "jax_compile").iterdir())
    second = _probe(tmp_path)
    assert second["hits"] >= 1 and second["misses"] == 0


@pytest.mark.parametrize("value", ["0", "off", "False"])
def test_compile_cache_off_switch(tmp_path, value):
    got = _probe(tmp_path, value)
    assert got["dir"] is None and got["hits"] == got["misses"] == 0
    assert not (tmp_path / "root" / "jax_compile").exists()


def test_compile_cache_elsewhere_and_disabled_by_argument(tmp_path, monkeypatch):
    got = _probe(tmp_path, str(tmp_path / "elsewhere"))
    assert got["dir"] == str((tmp_path / "elsewhere").resolve()) and got["misses"] >= 1
    import jax
    before = jax.config.jax_enable_compilation_cache
    monkeypatch.setenv(paths.COMPILE_CACHE_ENV, "1")
    try:
        assert paths.enable_compile_cache(tmp_path, enabled=False) is None
        assert jax.config.jax_enable_compilation_cache is False
    finally:
        jax.config.update("jax_enable_compilation_cache", before)
