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

Shared CPU: jaxlib's CPU LAPACK kernels are scipy's (``scipy.linalg.cython_lapack``), i.e. scipy's
OpenBLAS, whose own pthread pool (one thread per core) splits every BLAS-3 step of an eigh/Cholesky and
busy-waits for its workers. Called from XLA's pool threads, which already keep the cores busy, that is
oversubscription; beside another busy process each split step waits for a descheduled worker, and the
probe stage slowed 6x beside one NumPy matmul loop (other stages ~2x). `lapack_threads(1)` runs a block
with that pool at one thread (the LAPACK call runs on the calling XLA thread; XLA still uses every
core across calls) and restores the previous count afterwards.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
from absl import logging


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


@functools.lru_cache(maxsize=1)
def _scipy_openblas():
    """(get_num_threads, set_num_threads) of the OpenBLAS that scipy's LAPACK (hence jaxlib's) uses, or None
    when scipy links another LAPACK or the platform has no /proc/self/maps."""
    import scipy.linalg.cython_lapack  # noqa: F401  (loads scipy's BLAS/LAPACK library)
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.rsplit("/", 1)[-1]}
    except OSError:
        return None
    for path in sorted(paths):
        lib = ctypes.CDLL(path)
        if hasattr(lib, "scipy_openblas_set_num_threads") and hasattr(lib, "scipy_openblas_get_num_threads"):
            get, set_ = lib.scipy_openblas_get_num_threads, lib.scipy_openblas_set_num_threads
            get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
            return get, set_
    return None


@contextlib.contextmanager
def lapack_threads(n: int = 1) -> Iterator[None]:
    """Run the block with scipy's OpenBLAS pool (jaxlib's CPU LAPACK) at ``n`` threads; restores it on exit.

    A no-op (logged once) where scipy does not link its OpenBLAS (then that library's own setting applies).
    """
    fns = _scipy_openblas()
    if fns is None:
        _log_no_openblas()
        yield
        return
    get, set_ = fns
    before = get()
    set_(n)
    try:
        yield
    finally:
        set_(before)


@functools.lru_cache(maxsize=1)
def _log_no_openblas():
    logging.info("scipy's OpenBLAS not found; LAPACK thread count left as configured")
