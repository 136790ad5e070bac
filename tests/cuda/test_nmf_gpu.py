"""The CUDA NMF kernels and the NMF model on a real device (marked ``gpu``; skipped with the
reason where there is none), plus the model's clear error without one."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from fastrec.backends import reference
from tests.cuda.nmf_helpers import OBSERVED_MODES, make_nmf_problem
from tests.tolerances import tolerance

CUDA_KERNELS = ("nmf_update_full", "nmf_update_observed", "nmf_loss_full", "nmf_loss_observed")
REG = (0.01, 0.02)
MODEL_CASES = pytest.mark.parametrize("mode, beta_loss, biased", [
    ("full", "frobenius", False),
    ("full", "kullback-leibler", False),
    ("observed", "frobenius", True),
    ("observed", "kullback-leibler", False),
])


def _problem(dtype=np.float64, index_dtype=np.int32, k=24, seed=0):
    return make_nmf_problem(seed=seed, n_rows=300, n_cols=200, density=0.05, k=k, dtype=dtype,
                            index_dtype=index_dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("beta", [2, 1])
def test_update_full_matches_reference(cuda_backend, beta, dtype, index_dtype):
    csr, factors, other, _, _ = _problem(dtype, index_dtype)
    got, expected = factors.copy(), factors.copy()
    cuda_backend.nmf_update_full(*csr, got, other, beta, *REG, 1)
    reference.nmf_update_full(*csr, expected, other, beta, *REG)
    np.testing.assert_allclose(got, expected, **tolerance(dtype, "device"))
    rtol = 1e-5 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(cuda_backend.nmf_loss_full(*csr, got, other, beta, 1),
                               reference.nmf_loss_full(*csr, got, other, beta), rtol=rtol)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", OBSERVED_MODES)
def test_update_observed_matches_reference(cuda_backend, mode, dtype):
    beta, biased = OBSERVED_MODES[mode]
    csr, factors, other, bias, other_bias = _problem(dtype, np.int64)
    got, got_bias = factors.copy(), bias.copy()
    expected, expected_bias = factors.copy(), bias.copy()
    cuda_backend.nmf_update_observed(*csr, got, other, got_bias, other_bias, 3.0, beta, *REG,
                                     0.05, biased, 1)
    reference.nmf_update_observed(*csr, expected, other, expected_bias, other_bias, 3.0, beta,
                                  *REG, 0.05, biased)
    np.testing.assert_allclose(got, expected, **tolerance(dtype, "device"))
    np.testing.assert_allclose(got_bias, expected_bias, **tolerance(dtype, "device"))
    rtol = 1e-5 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(
        cuda_backend.nmf_loss_observed(*csr, got, other, got_bias, other_bias, 3.0, beta,
                                       biased, 1),
        reference.nmf_loss_observed(*csr, got, other, got_bias, other_bias, 3.0, beta, biased),
        rtol=rtol)


@pytest.mark.gpu
@pytest.mark.parametrize("k", [20, 70])
def test_observed_bitwise_equal_to_cython_generic_path(cuda_backend, k):
    """No FMA contraction and the CPU's summation order: float64 observed updates reproduce the
    Cython generic path (ranks outside its register-resident set) bit for bit."""
    from tests.conftest import backend_or_skip

    cython = backend_or_skip("cython", "nmf_update_observed")
    csr, factors, other, bias, other_bias = _problem(k=k, seed=k)
    for beta, biased in OBSERVED_MODES.values():
        got, got_bias = factors.copy(), bias.copy()
        expected, expected_bias = factors.copy(), bias.copy()
        cuda_backend.nmf_update_observed(*csr, got, other, got_bias, other_bias, 3.0, beta,
                                         *REG, 0.05, biased, 1)
        cython.nmf_update_observed(*csr, expected, other, expected_bias, other_bias, 3.0, beta,
                                   *REG, 0.05, biased, 2)
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(got_bias, expected_bias)


@pytest.mark.gpu
def test_cupy_arrays_are_updated_in_place_and_deterministic(cuda_backend):
    import cupy

    csr, factors, other, bias, other_bias = make_nmf_problem(
        n_rows=3000, n_cols=2000, density=0.01, k=64, dtype=np.float32)
    device_csr = [cupy.asarray(a) for a in csr]
    runs = []
    for _ in range(2):
        w, h = cupy.asarray(factors), cupy.asarray(other)
        bu, bi = cupy.asarray(bias), cupy.asarray(other_bias)
        pointers = [a.data.ptr for a in (w, h, bu)]
        for beta in (2, 1):
            cuda_backend.nmf_update_full(*device_csr, w, h, beta, *REG, 1)
        cuda_backend.nmf_update_observed(*device_csr, w, h, bu, bi, 3.0, 2, *REG, 0.05, True, 1)
        loss = cuda_backend.nmf_loss_observed(*device_csr, w, h, bu, bi, 3.0, 2, True, 1)
        assert [a.data.ptr for a in (w, h, bu)] == pointers
        runs.append((w.get(), bu.get(), loss))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert runs[0][2] == runs[1][2]
    assert not np.array_equal(runs[0][0], factors)


@pytest.mark.gpu
def test_no_entries(cuda_backend):
    csr, factors, other, bias, other_bias = make_nmf_problem(density=0.0)
    got, got_bias = factors.copy(), bias.copy()
    cuda_backend.nmf_update_observed(*csr, got, other, got_bias, other_bias, 3.0, 2, *REG, 0.05,
                                     True, 1)
    np.testing.assert_array_equal(got, 0)
    np.testing.assert_array_equal(got_bias, 0)
    assert cuda_backend.nmf_loss_observed(*csr, got, other, got_bias, other_bias, 3.0, 2, True,
                                          1) == 0.0


@pytest.mark.gpu
@MODEL_CASES
def test_nmf_model_on_cuda_matches_cython(cuda_backend, mode, beta_loss, biased):
    from fastrec import NMF
    from tests.conftest import backend_or_skip

    backend_or_skip("cython", "nmf_update_full")
    x = sp.random(200, 120, density=0.1, random_state=1, format="csr",
                  data_rvs=lambda n: np.random.default_rng(2).uniform(0.5, 5.0, n))
    params = dict(n_components=8, mode=mode, beta_loss=beta_loss, biased=biased, max_iter=30,
                  tol=0.0, init="random", random_state=0, dtype="float64", alpha_W=0.01)
    on_cuda = NMF(backend="cuda", **params).fit(x).to_numpy()
    on_cpu = NMF(backend="cython", **params).fit(x)
    assert on_cuda.backend_ == "cuda"
    np.testing.assert_allclose(on_cuda.user_factors_, on_cpu.user_factors_, rtol=1e-7,
                               atol=1e-10)
    np.testing.assert_allclose(on_cuda.components_, on_cpu.components_, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(on_cuda.reconstruction_err_, on_cpu.reconstruction_err_,
                               rtol=1e-9)
