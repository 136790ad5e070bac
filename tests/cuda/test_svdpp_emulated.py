"""The real csrc/cuda/svdpp.cu, run in the CUDA-semantics emulator through the backend's own
launcher (``launch_svdpp_epoch``): it must match the numpy reference to rounding, the compiled
CPU backends bit for bit where they do not contract FMAs (Cython; Numba in float64), and must
not depend on the thread order or the launch shape."""

from __future__ import annotations

import numpy as np
import pytest

from fastrec.backends.cuda.svdpp import launch_svdpp_epoch
from fastrec.backends.reference import svdpp_epoch as reference_epoch
from tests.svdpp.problems import make_svdpp_problem, run_epoch

TOLERANCE = {np.float32: {"rtol": 2e-4, "atol": 2e-5}, np.float64: {"rtol": 1e-10, "atol": 1e-12}}


@pytest.fixture(scope="module")
def svdpp_module(emulator):
    """``csrc/cuda/svdpp.cu`` built in the emulator with the loader's options and names."""
    from fastrec.backends.cuda import _loader

    return emulator.EmulatedModule(_loader.kernel_path("svdpp"), _loader.compile_options(),
                                   _loader.NAME_EXPRESSIONS["svdpp"])


def run_emulated(module, data, state, scalars, biased=True, order="forward", seed=0,
                 warps_per_cta=8):
    """One epoch in the emulator on copies of ``state``: ``(sse, state after)``."""
    from fastrec.backends.cuda import _loader

    dtype, index_dtype = state["user_factors"].dtype, data["users"].dtype

    def get_kernel(name):
        return module.get_function(_loader.name_expression(name, dtype, index_dtype),
                                   order=order, seed=seed)

    got = {name: a.copy() for name, a in state.items()}
    slot_sse = np.zeros(data["schedule"].size)
    launch_svdpp_epoch(np, get_kernel, *data.values(), *got.values(), slot_sse, *scalars, biased,
                       warps_per_cta=warps_per_cta)
    return float(slot_sse.sum()), got


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_epoch_matches_reference(svdpp_module, dtype, index_dtype):
    for k, implicit, biased in ((5, "rated", True), (37, "random", False)):
        data, state, scalars = make_svdpp_problem(k=k, dtype=dtype, index_dtype=index_dtype,
                                                  implicit=implicit, nnz=200, seed=k)
        sse, got = run_emulated(svdpp_module, data, state, scalars, biased, order="random",
                                seed=k)
        sse_ref, expected = run_epoch(reference_epoch, data, state, scalars, biased)
        np.testing.assert_allclose(sse, sse_ref, rtol=1e-4 if dtype == np.float32 else 1e-10)
        for name in expected:
            np.testing.assert_allclose(got[name], expected[name], **TOLERANCE[dtype],
                                       err_msg=name)


@pytest.mark.parametrize("backend, dtype", [
    ("cython", np.float32),  # setup.py builds with -ffp-contract=off, as CUDA's --fmad=false
    ("cython", np.float64),
    ("numba", np.float64),
])
@pytest.mark.parametrize("k", [1, 33])
def test_bitwise_equal_to_compiled_cpu_backends(svdpp_module, backend, dtype, k):
    from tests.conftest import backend_or_skip

    cpu_epoch = backend_or_skip(backend, "svdpp_epoch").svdpp_epoch
    data, state, scalars = make_svdpp_problem(k=k, dtype=dtype, nnz=200, seed=k,
                                              implicit="more")
    sse_cpu, expected = run_epoch(cpu_epoch, data, state, scalars)
    sse, got = run_emulated(svdpp_module, data, state, scalars, order="random", seed=k)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    np.testing.assert_allclose(sse, sse_cpu, rtol=1e-14)  # slot sums added in another order


def test_deterministic_across_thread_orders_and_launch_shapes(svdpp_module):
    data, state, scalars = make_svdpp_problem(dtype=np.float32, n_blocks=5, nnz=250, k=9)
    runs = [run_emulated(svdpp_module, data, state, scalars, order=order, seed=3,
                         warps_per_cta=per_cta)
            for order, per_cta in (("forward", 8), ("reverse", 1), ("random", 2),
                                   ("random", 8))]
    for sse, got in runs[1:]:
        assert sse == runs[0][0]
        for name in got:
            np.testing.assert_array_equal(got[name], runs[0][1][name], err_msg=name)


def test_empty_rows_skipped_slots_and_users_without_implicit_items(svdpp_module):
    data, state, scalars = make_svdpp_problem(n_users=40, n_items=9, nnz=60, n_blocks=6,
                                              implicit="random")
    schedule = data["schedule"].copy()
    schedule[::2, 1] = -1
    data["schedule"] = np.ascontiguousarray(schedule[:4])
    assert (np.diff(data["block_ptr"]) == 0).any() and (np.diff(data["user_ptr"]) == 0).any()
    sse, got = run_emulated(svdpp_module, data, state, scalars)
    sse_ref, expected = run_epoch(reference_epoch, data, state, scalars)
    assert sse == pytest.approx(sse_ref, rel=1e-10)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], **TOLERANCE[np.float64],
                                   err_msg=name)
