"""svdpp_epoch and SVDpp on a real CUDA device (marked ``gpu``; skipped with the reason where
there is none): bitwise equal to the Cython kernel (both without FMA contraction; float64 so
that flush-to-zero cannot matter), and the model keeps its arrays on the device."""

from __future__ import annotations

import numpy as np
import pytest

from fastrec.backends import get_backend
from tests.conftest import require_backend
from tests.cuda.helpers import gpu_unavailable_reason
from tests.svdpp.problems import make_svdpp_problem, run_epoch

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda_backend():
    reason = gpu_unavailable_reason()
    if reason:
        pytest.skip(reason)
    return get_backend("cuda", require=("svdpp_epoch",))


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_epoch_bitwise_equal_to_cython(cuda_backend, index_dtype):
    cython = require_backend("cython", "svdpp_epoch").svdpp_epoch
    data, state, scalars = make_svdpp_problem(n_users=300, n_items=200, nnz=6000, k=33,
                                              n_blocks=8, index_dtype=index_dtype,
                                              implicit="more")
    sse_cpu, expected = run_epoch(cython, data, state, scalars)
    sse, got = run_epoch(cuda_backend.svdpp_epoch, data, state, scalars)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    assert sse == pytest.approx(sse_cpu, rel=1e-13)


def test_model_fits_on_the_device(cuda_backend):
    import cupy

    from fastrec import SVDpp
    from fastrec.data import synthetic_ratings

    data = synthetic_ratings(n_users=200, n_items=100, n_ratings=5000, seed=0).interactions
    gpu = SVDpp(n_epochs=3, dtype="float64", backend="cuda", random_state=0).fit(data)
    cpu = SVDpp(n_epochs=3, dtype="float64", backend="cython", random_state=0).fit(data)
    assert isinstance(gpu.implicit_factors_, cupy.ndarray)
    np.testing.assert_array_equal(gpu.implicit_factors_.get(), cpu.implicit_factors_)
