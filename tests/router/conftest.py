"""Shared fixtures of the router tests."""
import jax
import numpy as np
import pytest

from prefill_router.router import ensemble, model


@pytest.fixture(scope="module")
def fast_compile():
    """Cut XLA compile time (most of a router test module's runtime on a shared CPU); restored afterwards.

    Opt in per module: ``pytestmark = pytest.mark.usefixtures("fast_compile")``.
    """
    old = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", old)


def random_ensemble(cfg: model.TrunkConfig, seeds: tuple, val_losses, targets) -> ensemble.Ensemble:
    """An untrained ensemble: one randomly initialised trunk per seed (PRNGKey(0) split len(seeds) ways)."""
    init = jax.jit(jax.vmap(lambda k: model.init_params(cfg, k)[1]))
    params = jax.tree.map(np.asarray, init(jax.random.split(jax.random.PRNGKey(0), len(seeds))))
    return ensemble.Ensemble(cfg, params, seeds, np.asarray(val_losses), targets)
