"""The real csrc/cuda/nmf.cu, run in the CUDA-semantics emulator through the backend's own
launchers (``launch_nmf_*``: cuBLAS-side products done by the array module, grid shapes,
argument packing), under forward, reverse and random thread orders, against the numpy reference.

The per-row sums run in the Cython generic path's order without FMA contraction, so where the
launcher's dense products agree too (observed mode; full KL, whose column sums numpy adds row by
row) the result equals the compiled CPU backend bit for bit. Results must not depend on the
thread order or the launch shape. Scratch arrays come in filled with NaN, so a read of a dot or
ratio before lane 0 has written it shows up.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastrec.backends import reference
from fastrec.backends.cuda import _loader
from fastrec.backends.cuda.nmf import (
    launch_nmf_loss_full,
    launch_nmf_loss_observed,
    launch_nmf_update_full,
    launch_nmf_update_observed,
)
from tests.cuda.helpers import patch_cupy, run_under_asan
from tests.cuda.nmf_helpers import OBSERVED_MODES, make_nmf_problem, nmf_kernel_getter
from tests.tolerances import tolerance

ORDERS = ("forward", "reverse", "random")
REG = {"l1_reg": 0.01, "l2_reg": 0.02}


@pytest.fixture(scope="module")
def nmf_module(emulator):
    """``csrc/cuda/nmf.cu`` built in the emulator with the loader's options and names."""
    return emulator.EmulatedModule(_loader.kernel_path("nmf"), _loader.compile_options(),
                                   _loader.NAME_EXPRESSIONS["nmf"])


def _poisoned(csr, dtype):
    return np.full(max(csr[1].shape[0], 1), np.nan, dtype=dtype)


def run_full(module, problem, beta, order="forward", seed=0, **launch):
    csr, factors, other, _, _ = problem
    got = factors.copy()
    get_kernel = nmf_kernel_getter(module, factors.dtype, csr[0].dtype, order, seed)
    launch_nmf_update_full(np, get_kernel, *csr, got, other, beta, REG["l1_reg"],
                           REG["l2_reg"], scratch=_poisoned(csr, factors.dtype), **launch)
    return got


def run_observed(module, problem, beta, biased, order="forward", seed=0, **launch):
    csr, factors, other, bias, other_bias = problem
    got, got_bias = factors.copy(), bias.copy()
    get_kernel = nmf_kernel_getter(module, factors.dtype, csr[0].dtype, order, seed)
    launch_nmf_update_observed(np, get_kernel, *csr, got, other, got_bias, other_bias, 3.0, beta,
                               REG["l1_reg"], REG["l2_reg"], 0.05, biased,
                               scratch=_poisoned(csr, factors.dtype), **launch)
    return got, got_bias


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("dtype, index_dtype", [(np.float32, np.int32), (np.float64, np.int64)])
@pytest.mark.parametrize("beta", [2, 1])
def test_update_full_matches_reference(nmf_module, beta, dtype, index_dtype, order):
    problem = make_nmf_problem(seed=beta, dtype=dtype, index_dtype=index_dtype)
    csr, factors, other, _, _ = problem
    expected = factors.copy()
    reference.nmf_update_full(*csr, expected, other, beta, **REG)
    got = run_full(nmf_module, problem, beta, order=order, seed=5)
    np.testing.assert_allclose(got, expected, **tolerance(dtype))


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("dtype, index_dtype", [(np.float32, np.int64), (np.float64, np.int32)])
@pytest.mark.parametrize("mode", OBSERVED_MODES)
def test_update_observed_matches_reference(nmf_module, mode, dtype, index_dtype, order):
    beta, biased = OBSERVED_MODES[mode]
    problem = make_nmf_problem(seed=7, dtype=dtype, index_dtype=index_dtype)
    csr, factors, other, bias, other_bias = problem
    expected, expected_bias = factors.copy(), bias.copy()
    reference.nmf_update_observed(*csr, expected, other, expected_bias, other_bias, 3.0, beta,
                                  REG["l1_reg"], REG["l2_reg"], 0.05, biased)
    got, got_bias = run_observed(nmf_module, problem, beta, biased, order=order, seed=5)
    np.testing.assert_allclose(got, expected, **tolerance(dtype))
    np.testing.assert_allclose(got_bias, expected_bias, **tolerance(dtype))
    empty = np.diff(csr[0]) == 0
    assert empty.any()
    np.testing.assert_array_equal(got[empty], 0)
    if biased:
        np.testing.assert_array_equal(got_bias[empty], 0)
    else:
        np.testing.assert_array_equal(got_bias, bias)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("beta", [2, 1])
def test_losses_match_reference(nmf_module, beta, dtype, order):
    csr, factors, other, bias, other_bias = make_nmf_problem(seed=3, dtype=dtype)
    get_kernel = nmf_kernel_getter(nmf_module, dtype, csr[0].dtype, order, seed=9)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    full = launch_nmf_loss_full(np, get_kernel, *csr, factors, other, beta)
    np.testing.assert_allclose(full, reference.nmf_loss_full(*csr, factors, other, beta),
                               rtol=rtol)
    for biased in ((False, True) if beta == 2 else (False,)):
        observed = launch_nmf_loss_observed(np, get_kernel, *csr, factors, other, bias,
                                            other_bias, 3.0, beta, biased)
        expected = reference.nmf_loss_observed(*csr, factors, other, bias, other_bias, 3.0,
                                               beta, biased)
        np.testing.assert_allclose(observed, expected, rtol=rtol)


@pytest.mark.parametrize("k", [1, 16, 33, 70, 256])
def test_ranks_around_the_warp_width(nmf_module, k):
    """One, part of, exactly and more than a warp of factors per row (lanes own f, f + 32),
    and a large rank (8 factors per lane; the Frobenius Gram matrix and denominators W (H H^T)
    are the launcher's GEMMs, cuBLAS on a device, at every rank)."""
    problem = make_nmf_problem(seed=k, k=k, n_rows=12, n_cols=10, density=0.5)
    csr, factors, other, bias, other_bias = problem
    for beta in (2, 1):
        expected = factors.copy()
        reference.nmf_update_full(*csr, expected, other, beta, **REG)
        got = run_full(nmf_module, problem, beta, order="random", seed=k)
        np.testing.assert_allclose(got, expected, **tolerance(np.float64))
    expected, expected_bias = factors.copy(), bias.copy()
    reference.nmf_update_observed(*csr, expected, other, expected_bias, other_bias, 3.0, 2,
                                  REG["l1_reg"], REG["l2_reg"], 0.05, True)
    got, got_bias = run_observed(nmf_module, problem, 2, True, order="random", seed=k)
    np.testing.assert_allclose(got, expected, **tolerance(np.float64))
    np.testing.assert_allclose(got_bias, expected_bias, **tolerance(np.float64))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [20, 70])
def test_bitwise_equal_to_cython_generic_path(nmf_module, k, dtype):
    """Ranks outside the CPU's register-resident set take its generic path, whose sums run in
    the same order as the warp's: observed mode and full KL agree bit for bit (the CPU is built
    with -ffp-contract=off, the kernels with --fmad=false)."""
    from tests.conftest import backend_or_skip

    cython = backend_or_skip("cython", "nmf_update_observed")
    problem = make_nmf_problem(seed=k, k=k, dtype=dtype)
    csr, factors, other, bias, other_bias = problem
    for mode, (beta, biased) in OBSERVED_MODES.items():
        expected, expected_bias = factors.copy(), bias.copy()
        cython.nmf_update_observed(*csr, expected, other, expected_bias, other_bias, 3.0, beta,
                                   REG["l1_reg"], REG["l2_reg"], 0.05, biased, 2)
        got, got_bias = run_observed(nmf_module, problem, beta, biased, order="random", seed=k)
        np.testing.assert_array_equal(got, expected, err_msg=mode)
        np.testing.assert_array_equal(got_bias, expected_bias, err_msg=mode)
    expected = factors.copy()
    cython.nmf_update_full(*csr, expected, other, 1, REG["l1_reg"], REG["l2_reg"], 2)
    np.testing.assert_array_equal(run_full(nmf_module, problem, 1, order="random", seed=k),
                                  expected)


def test_deterministic_across_thread_orders_and_launch_shapes(nmf_module):
    """Bit for bit the same whatever the thread order, warps per block or number of warps
    (fewer warps than rows: each warp strides over several rows)."""
    problem = make_nmf_problem(seed=11, dtype=np.float32, k=40)
    shapes = ((1, None), (2, 3), (8, None), (4, 1))
    for beta in (2, 1):
        runs = [run_full(nmf_module, problem, beta, order=order, seed=3, warps_per_cta=per_cta,
                         n_warps=n_warps)
                for order in ORDERS for per_cta, n_warps in shapes]
        for run in runs[1:]:
            np.testing.assert_array_equal(run, runs[0])
    for beta, biased in OBSERVED_MODES.values():
        runs = [run_observed(nmf_module, problem, beta, biased, order=order, seed=3,
                             warps_per_cta=per_cta, n_warps=n_warps)
                for order in ORDERS for per_cta, n_warps in shapes]
        for factors, bias in runs[1:]:
            np.testing.assert_array_equal(factors, runs[0][0])
            np.testing.assert_array_equal(bias, runs[0][1])
    csr, factors, other, bias, other_bias = problem
    losses = {launch_nmf_loss_observed(
        np, nmf_kernel_getter(nmf_module, np.float32, np.int32, order, 4), *csr, factors,
        other, bias, other_bias, 3.0, 2, True, warps_per_cta=per_cta, n_warps=n_warps)
        for order in ORDERS for per_cta, n_warps in shapes}
    assert len(losses) == 1


def test_no_entries(nmf_module):
    """nnz = 0: full Frobenius leaves 0 * ... = zeros, observed zeroes every row and bias."""
    csr, factors, other, bias, other_bias = make_nmf_problem(density=0.0)
    problem = (csr, factors, other, bias, other_bias)
    assert csr[1].size == 0
    expected = factors.copy()
    reference.nmf_update_full(*csr, expected, other, 2, **REG)
    np.testing.assert_allclose(run_full(nmf_module, problem, 2), expected,
                               **tolerance(np.float64))
    got, got_bias = run_observed(nmf_module, problem, 2, True)
    np.testing.assert_array_equal(got, 0)
    np.testing.assert_array_equal(got_bias, 0)
    get_kernel = nmf_kernel_getter(nmf_module, np.float64, np.int32)
    assert launch_nmf_loss_observed(np, get_kernel, *csr, factors, other, bias, other_bias, 0.0,
                                    1, False) == 0.0


# -- the public contract functions and the NMF model, with CuPy replaced by host arrays --------
@pytest.fixture
def fake_cupy(nmf_module, topn_module, monkeypatch):
    """The CUDA backend with CuPy replaced by host arrays and NVRTC by the emulator."""
    modules = {"nmf": nmf_module, "topn": topn_module}
    patch_cupy(monkeypatch, lambda source, expression: modules[source].get_function(
        expression, order="random"))


def test_public_functions_copy_host_arrays_back(fake_cupy):
    from fastrec.backends import cuda

    csr, factors, other, bias, other_bias = make_nmf_problem(seed=2)
    for beta in (2, 1):
        got, expected = factors.copy(), factors.copy()
        cuda.nmf_update_full(*csr, got, other, beta, 0.01, 0.02, 1)
        reference.nmf_update_full(*csr, expected, other, beta, 0.01, 0.02)
        assert type(got) is np.ndarray
        np.testing.assert_allclose(got, expected, **tolerance(np.float64))
        np.testing.assert_allclose(cuda.nmf_loss_full(*csr, got, other, beta, 1),
                                   reference.nmf_loss_full(*csr, got, other, beta), rtol=1e-12)
    for beta, biased in OBSERVED_MODES.values():
        got, got_bias = factors.copy(), bias.copy()
        expected, expected_bias = factors.copy(), bias.copy()
        cuda.nmf_update_observed(*csr, got, other, got_bias, other_bias, 3.0, beta, 0.01, 0.02,
                                 0.05, biased, 1)
        reference.nmf_update_observed(*csr, expected, other, expected_bias, other_bias, 3.0,
                                      beta, 0.01, 0.02, 0.05, biased)
        np.testing.assert_allclose(got, expected, **tolerance(np.float64))
        np.testing.assert_allclose(got_bias, expected_bias, **tolerance(np.float64))
        np.testing.assert_allclose(
            cuda.nmf_loss_observed(*csr, got, other, got_bias, other_bias, 3.0, beta, biased, 1),
            reference.nmf_loss_observed(*csr, got, other, got_bias, other_bias, 3.0, beta,
                                        biased), rtol=1e-12)


@pytest.mark.parametrize("change, message", [
    (lambda a: {**a, "data": a["data"].astype(np.float32)}, "data must have dtype"),
    (lambda a: {**a, "indices": a["indices"].astype(np.int64)}, "indices must have dtype int32"),
    (lambda a: {**a, "other": a["other"][:, :3].copy()}, "other must have shape"),
    (lambda a: {**a, "factors": np.asfortranarray(a["factors"])}, "C-contiguous"),
    (lambda a: {**a, "indptr": a["indptr"][:-1]}, "indptr must have shape"),
])
def test_contract_errors_need_no_device(change, message):
    from fastrec.backends._contract import ContractError
    from fastrec.backends.cuda import nmf_update_full

    csr, factors, other, _, _ = make_nmf_problem()
    arrays = change(dict(zip(("indptr", "indices", "data", "factors", "other"),
                             (*csr, factors, other), strict=True)))
    with pytest.raises(ContractError, match=message):
        nmf_update_full(*arrays.values(), 2, 0.0, 0.0, 1)


# -- sanitizers ----------------------------------------------------------------------------------
def test_nmf_is_clean_under_address_and_undefined_behaviour_sanitizers(emulator):
    """Every NMF kernel, both dtypes and index types, exactly-sized arrays (no slack for an
    overrun to hide in), under ASan and UBSan."""
    result = run_under_asan(emulator, "asan_nmf.py", kernels=("nmf",), timeout=240)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "AddressSanitizer" not in result.stderr
    assert "asan nmf run finished" in result.stdout
