"""probes.linalg: scipy's OpenBLAS pool (jaxlib's CPU LAPACK) is set for a block and restored, even on error."""
import numpy as np
import pytest

from prefill_router.probes import linalg


def test_lapack_threads_sets_and_restores():
    fns = linalg._scipy_openblas()
    if fns is None:
        pytest.skip("scipy does not link its own OpenBLAS here")
    get, set_ = fns
    before = get()
    set_(2)
    try:
        with linalg.lapack_threads(1):
            assert get() == 1
            w, _ = linalg.eigh(np.diag([3.0, 1.0, 2.0]).astype(np.float32))
            np.testing.assert_allclose(np.asarray(w), [1.0, 2.0, 3.0])
        assert get() == 2
        with pytest.raises(RuntimeError):
            with linalg.lapack_threads(1):
                raise RuntimeError
        assert get() == 2
    finally:
        set_(before)
