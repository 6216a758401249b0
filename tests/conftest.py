"""Test-wide JAX setup and shared fixtures.

Two CPU devices exercise the sharded code paths; float32 matmuls at full precision make
parity tests against PyTorch meaningful.
"""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_num_cpu_devices", 2)
jax.config.update("jax_default_matmul_precision", "highest")

from prefill_router import paths  # noqa: E402


def _skip_or_fail(reason: str):
    """Skip on a user's machine; fail in CI, where `.ci/run` sets PREFILL_ROUTER_REQUIRE_ASSETS=1."""
    if os.environ.get("PREFILL_ROUTER_REQUIRE_ASSETS") == "1":
        pytest.fail(f"required asset missing in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data():
    """The shared data directory; skips (or fails in CI) when it is absent."""
    path = paths.data_dir()
    if not (path / "routing").is_dir():
        _skip_or_fail(f"shared data not found at {path}; set PREFILL_ROUTER_DATA")
    return path


@pytest.fixture(scope="session")
def require_asset():
    """Call with a reason to skip (or fail in CI) a test whose download/asset is unavailable."""
    return _skip_or_fail
