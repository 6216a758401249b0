"""Shared fixtures of the router tests."""
import jax
import pytest


@pytest.fixture(scope="module")
def fast_compile():
    """Cut XLA compile time (most of a router test module's runtime on a shared CPU); restored afterwards.

    Opt in per module: ``pytestmark = pytest.mark.usefixtures("fast_compile")``.
    """
    old = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", old)
