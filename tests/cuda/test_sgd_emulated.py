"""The real csrc/cuda/sgd.cu, run in the CUDA-semantics emulator through the backend's own
launcher (``launch_sgd_epoch``: scratch arrays, grid shapes, argument packing). The kernels keep
the sequential update order and the CPU kernels' summation order, so they match a compiled CPU
backend bit for bit when it does not contract FMAs (Numba in float64; Cython built with
-ffp-contract=off) and the numpy reference (BLAS dot) to rounding; results must not depend on the
thread order, the launch configuration or the driver (dataflow or strata)."""

from __future__ import annotations

import numpy as np
import pytest

from fastrec.backends.cuda.sgd import launch_sgd_epoch
from fastrec.backends.reference import sgd_epoch as reference_epoch
from tests.cuda.helpers import (
    EMULATOR_DIR,
    kernel_getter,
    make_sgd_problem,
    patch_cupy,
    run_under_asan,
)
from tests.tolerances import tolerance

ORDERS = ("forward", "reverse", "random")
DRIVERS = ("dataflow", "strata")


def run_emulated(module, data, factors, scalars, biased, order="forward", driver="dataflow",
                 warps_per_cta=8, n_warps=None, seed=0, get_kernel=None):
    """One epoch in the emulator; returns (sse, factors after)."""
    got = [f.copy() for f in factors]
    get_kernel = get_kernel or kernel_getter(module, data, factors, order, seed)
    ticket_sse = np.zeros(data["schedule"].size)
    launch_sgd_epoch(np, get_kernel, *data.values(), *got, ticket_sse, *scalars, biased,
                     order=driver, warps_per_cta=warps_per_cta, n_warps=n_warps)
    return float(ticket_sse.sum()), got


def run_reference(data, factors, scalars, biased):
    expected = [f.copy() for f in factors]
    sse = reference_epoch(*data.values(), *expected, *scalars, biased)
    return sse, expected


def assert_matches(got, expected, dtype):
    sse, arrays = got
    sse_ref, arrays_ref = expected
    tol = tolerance(dtype)
    np.testing.assert_allclose(sse, sse_ref, rtol=max(tol["rtol"], 1e-12))
    for name, g, e in zip(("user_factors", "item_factors", "user_bias", "item_bias"), arrays,
                          arrays_ref, strict=True):
        np.testing.assert_allclose(g, e, **tol, err_msg=name)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("driver", DRIVERS)
def test_epoch_matches_reference(sgd_module, driver, dtype, index_dtype, order):
    data, factors, scalars = make_sgd_problem(dtype=dtype, index_dtype=index_dtype)
    got = run_emulated(sgd_module, data, factors, scalars, True, order=order, driver=driver,
                       seed=11)
    assert_matches(got, run_reference(data, factors, scalars, True), dtype)


@pytest.mark.parametrize("backend, dtype", [
    ("numba", np.float64),  # Numba's float32 path rounds differently from C's (lead's mirror)
    ("cython", np.float64),  # setup.py builds with -ffp-contract=off, as CUDA's --fmad=false
    ("cython", np.float32),
])
@pytest.mark.parametrize("k", [1, 16, 33, 70])
def test_bitwise_equal_to_compiled_cpu_backends(sgd_module, dtype, k, backend):
    from tests.conftest import backend_or_skip

    cpu_epoch = backend_or_skip(backend, "sgd_epoch").sgd_epoch
    data, factors, scalars = make_sgd_problem(dtype=dtype, k=k, nnz=200, seed=k)
    expected = [f.copy() for f in factors]
    sse_cpu = cpu_epoch(*data.values(), *expected, *scalars, True, 2)
    sse, got = run_emulated(sgd_module, data, factors, scalars, True, order="random", seed=k)
    for name, g, e in zip(("user_factors", "item_factors", "user_bias", "item_bias"), got,
                          expected, strict=True):
        np.testing.assert_array_equal(g, e, err_msg=name)
    np.testing.assert_allclose(sse, sse_cpu, rtol=1e-14)  # per-block sums added in another order


@pytest.mark.parametrize("k", [1, 5, 32, 33, 70])
def test_ranks_around_the_warp_width(sgd_module, k):
    data, factors, scalars = make_sgd_problem(k=k, nnz=120, seed=k)
    got = run_emulated(sgd_module, data, factors, scalars, True, order="random", seed=k)
    assert_matches(got, run_reference(data, factors, scalars, True), np.float64)


@pytest.mark.parametrize("driver", DRIVERS)
def test_unbiased_leaves_biases_untouched(sgd_module, driver):
    data, factors, scalars = make_sgd_problem(nnz=150)
    sse, got = run_emulated(sgd_module, data, factors, scalars, False, driver=driver)
    np.testing.assert_array_equal(got[2], factors[2])
    np.testing.assert_array_equal(got[3], factors[3])
    assert_matches((sse, got), run_reference(data, factors, scalars, False), np.float64)


def test_deterministic_across_drivers_thread_orders_and_launch_shapes(sgd_module):
    data, factors, scalars = make_sgd_problem(dtype=np.float32, n_blocks=5, nnz=250)
    runs = [run_emulated(sgd_module, data, factors, scalars, True, order=order, driver=driver,
                         warps_per_cta=per_cta, n_warps=n_warps, seed=3)
            for driver in DRIVERS for order in ORDERS
            for per_cta, n_warps in ((1, None), (2, 3), (8, None), (4, 1))]
    sse0, arrays0 = runs[0]
    for sse, arrays in runs[1:]:
        assert sse == sse0
        for a, b in zip(arrays, arrays0, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("driver", DRIVERS)
def test_skipped_slots_empty_blocks_and_partial_schedules(sgd_module, driver):
    data, factors, scalars = make_sgd_problem(n_users=40, n_items=9, nnz=60, n_blocks=6)
    schedule = data["schedule"].copy()
    schedule[::2, 1] = -1  # -1 slots are skipped, so some rows miss strata
    data = {**data, "schedule": np.ascontiguousarray(schedule[:4])}  # and only four strata
    assert (np.diff(data["block_ptr"]) == 0).any()
    got = run_emulated(sgd_module, data, factors, scalars, True, order="random", driver=driver,
                       seed=5)
    assert_matches(got, run_reference(data, factors, scalars, True), np.float64)


def test_predecessor_search_beyond_32_strata(sgd_module):
    """Blocks repeat 40 strata apart with empty strata between, so the dataflow kernel's search
    for a block's predecessor crosses its 32-strata chunks."""
    data, factors, scalars = make_sgd_problem(nnz=100)
    schedule = np.full((80, data["schedule"].shape[1]), -1, dtype=np.int64)
    schedule[[0, 40, 79]] = data["schedule"][0]
    schedule[[5, 45], ::2] = data["schedule"][1, ::2]
    data = {**data, "schedule": schedule}
    got = run_emulated(sgd_module, data, factors, scalars, True, order="random", seed=2)
    assert_matches(got, run_reference(data, factors, scalars, True), np.float64)


@pytest.mark.parametrize("dropped", ["both", "user block", "item block"])
def test_each_dataflow_wait_is_needed_and_caught(sgd_module, dropped):
    """Blank the predecessor table of the user blocks, of the item blocks or both (so those
    waits are skipped): warps then overlap blocks that share rows, and the emulator's
    interleaving shows it. The check has teeth for each wait separately."""
    data, factors, scalars = make_sgd_problem(n_blocks=6, nnz=300, n_users=18, n_items=12)
    expected = run_reference(data, factors, scalars, True)
    blank = {"both": (4, 5), "user block": (4,), "item block": (5,)}[dropped]
    mismatches = 0
    for order in ORDERS:
        for seed in (1, 2):
            real = kernel_getter(sgd_module, data, factors, order, seed)

            def get_kernel(name, real=real):
                if name != "sgd_dataflow_positions":
                    return real(name)

                def positions(grid, block, args):
                    real(name)(grid, block, args)
                    for position in blank:  # row_ticket is argument 4, col_ticket 5
                        args[position][...] = -1

                return positions

            _, got = run_emulated(sgd_module, data, factors, scalars, True,
                                  get_kernel=get_kernel)
            mismatches += not all(np.allclose(g, e, rtol=1e-9)
                                  for g, e in zip(got, expected[1], strict=True))
    assert mismatches > 0


def test_no_ratings_is_a_no_op(sgd_module):
    data, factors, scalars = make_sgd_problem(nnz=0)
    sse, got = run_emulated(sgd_module, data, factors, scalars, True)
    assert sse == 0.0
    for g, f in zip(got, factors, strict=True):
        np.testing.assert_array_equal(g, f)


def test_sgd_is_clean_under_address_and_undefined_behaviour_sanitizers(emulator):
    result = run_under_asan(emulator, "asan_run.py", "sgd", kernels=("sgd",), timeout=240)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "AddressSanitizer" not in result.stderr
    assert "asan run finished" in result.stdout


@pytest.mark.parametrize("what, report", [("out_of_bounds", "heap-buffer-overflow"),
                                          ("signed_overflow", "signed integer overflow")])
def test_sanitizers_catch_kernel_bugs(emulator, what, report):
    from tests.cuda.emulator.asan_run import SELFTEST_NAMES

    emulator.build(EMULATOR_DIR / "selftest_kernels.cu", (), SELFTEST_NAMES, asan=True)
    result = run_under_asan(emulator, "asan_run.py", what, timeout=240)
    assert result.returncode != 0
    assert report in result.stderr, result.stderr[-4000:]


@pytest.mark.parametrize("driver", DRIVERS)
def test_public_sgd_epoch_copies_host_arrays_back(sgd_module, monkeypatch, driver):
    """``sgd_epoch`` itself (device copies, kernel names, copy-back into numpy arguments) with
    CuPy replaced by host arrays and NVRTC by the emulator."""

    from fastrec.backends.cuda import sgd_epoch

    patch_cupy(monkeypatch, lambda source, expression: sgd_module.get_function(expression))
    data, factors, scalars = make_sgd_problem(nnz=150)
    got = [f.copy() for f in factors]
    sse = sgd_epoch(*data.values(), *got, *scalars, True, 1, order=driver)
    assert all(type(g) is np.ndarray for g in got)
    assert_matches((sse, got), run_reference(data, factors, scalars, True), np.float64)
