"""eigh / Cholesky solves that stay safe under nested `jax.vmap` on CPU.

Why: on CPU, jaxlib runs a *batched* LAPACK call (what vmap makes of eigh, cholesky, triangular solves)
by spreading the batch over XLA's intra-op thread pool and blocking the calling pool thread until
the pieces finish (``ParallelBatchMap`` in ``jaxlib/cpu/_lapack.so``). A probe program holds many
independent batched calls (Fisher, d_eff and every CV fold), and XLA runs independent ops
concurrently on that same pool: once every worker is blocked inside such a call, no worker is left
to run the pieces and the program waits forever at 0% CPU. We hit this on real feature sizes (the
default run's probe stage hung; gdb showed all pool threads parked, two in ParallelBatchMap's
BlockingCounter::Wait). ``--xla_cpu_multi_thread_eigen=false`` does not prevent it (tested).

Fix: on CPU the functions below carry a `custom_vmap` rule that loops over the batch with
`lax.map`, so each LAPACK call sees one matrix and never waits on the pool. On GPU/TPU the rule
keeps the ordinary batched call. Results are identical (the same routine on the same matrices).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def _unbatched_on_cpu(fn: Callable) -> Callable:
    """fn(*arrays) whose vmap rule is a sequential `lax.map` on CPU (batched call elsewhere)."""
    wrapped = jax.custom_batching.custom_vmap(fn)

    @wrapped.def_vmap
    def _rule(axis_size, in_batched, *args):
        args = tuple(a if b else jnp.broadcast_to(a, (axis_size,) + a.shape) for a, b in zip(args, in_batched))
        if jax.default_backend() == "cpu":
            out = jax.lax.map(lambda xs: wrapped(*xs), args)
        else:
            out = jax.vmap(fn)(*args)
        return out, jax.tree.map(lambda _: True, out)

    return wrapped


eigh = _unbatched_on_cpu(lambda a: tuple(jnp.linalg.eigh(a)))
"""(eigenvalues [D] ascending, eigenvectors [D, D]) of a symmetric [D, D] matrix."""

cholesky = _unbatched_on_cpu(jnp.linalg.cholesky)
"""Lower Cholesky factor of a symmetric positive-definite [D, D] matrix (NaN if not SPD)."""

cho_solve = _unbatched_on_cpu(lambda chol, b: jax.scipy.linalg.cho_solve((chol, True), b))
"""x = A^{-1} b from the lower Cholesky factor chol of A [D, D] and b [D]."""
