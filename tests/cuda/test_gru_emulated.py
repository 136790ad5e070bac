"""The real csrc/cuda/gru.cu in the CUDA-semantics emulator, driven by the backend's own
launchers with numpy as the array module (numpy's matmul stands in for cuBLAS): every kernel
under forward, reverse and random thread orders against the numpy reference, float32 and
float64, int32 and int64 indices. The kernels use no atomics and fixed reduction shapes, so the
thread order must not change a single bit."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from fastrec.backends._contract import LOSS_CODES, OPT_ADAGRAD, OPT_ADAM
from fastrec.backends.cuda import optim
from fastrec.backends.cuda.gru import run_stack_backward, run_stack_forward
from fastrec.backends.reference import gru as ref
from tests.cuda.gru_problems import (
    EPOCH_CASES,
    emulated_output_loss,
    epoch_problem,
    epoch_spec,
    gru_kernels,
    gru_modules,
    gru_problem,
    loss_problem,
    run_epoch,
)
from tests.cuda.helpers import patch_cupy, register_emulated_cuda, run_under_asan
from tests.tolerances import tolerance

ORDERS = ("forward", "reverse", "random")


@pytest.fixture(scope="module")
def module(emulator, topn_module):
    return {**gru_modules(emulator), "topn": topn_module}  # topn: recommend_next


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("T,L", [(1, 1), (3, 2)])
def test_forward_and_backward_match_reference(module, T, L, dtype, order):
    args, d_top = gru_problem(T, L, dtype)
    get_kernel = gru_kernels(module, dtype, order=order, seed=T + L)
    expected = ref.gru_forward(*args)
    got = run_stack_forward(np, get_kernel, *args)
    for e, g in zip(expected, got, strict=True):
        assert g.dtype == dtype
        assert_allclose(g, e, **tolerance(dtype))
    expected_grads = ref.gru_backward(*args, *expected, d_top)
    got_grads = run_stack_backward(np, get_kernel, *args, *expected, d_top)
    for name, e, g in zip(("dX", "dh0", "dWx0", "dWx_rest", "dWh", "db"), expected_grads,
                          got_grads, strict=True):
        assert g.shape == e.shape and g.dtype == dtype
        assert_allclose(g, e, **tolerance(dtype), err_msg=name)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("dtype, index_dtype", [(np.float64, np.int32), (np.float32, np.int64)])
@pytest.mark.parametrize("loss", tuple(LOSS_CODES.values()))
def test_output_loss_matches_reference(module, loss, dtype, index_dtype, order):
    hidden, table, samples = loss_problem(dtype, index_dtype)
    get_kernel = gru_kernels(module, dtype, index_dtype, order=order, seed=loss)
    expected = ref.gru4rec_output_loss(hidden, table, samples, loss, 0.5, 0.25)
    got = emulated_output_loss(get_kernel, hidden, table, samples, loss, 0.5, 0.25)
    assert_allclose(got[0], expected[0], rtol=tolerance(dtype)["rtol"])
    assert_allclose(got[1], expected[1], **tolerance(dtype))
    assert_allclose(got[2], expected[2], **tolerance(dtype))


def test_output_loss_many_samples_per_thread(module):
    """More samples than the loss kernel's threads: per-thread strided partial sums."""
    hidden, table, samples = loss_problem(N=3, K=300, n_items=40)
    get_kernel = gru_kernels(module, np.float64, order="random", seed=5)
    for loss in LOSS_CODES.values():
        expected = ref.gru4rec_output_loss(hidden, table, samples, loss, 0.5, 1.0)
        got = emulated_output_loss(get_kernel, hidden, table, samples, loss, 0.5, 1.0)
        for e, g in zip(expected, got, strict=True):
            assert_allclose(g, e, **tolerance(np.float64))


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("method, momentum", [(OPT_ADAM, 0.0), (OPT_ADAGRAD, 0.0),
                                              (OPT_ADAGRAD, 0.5)])
@pytest.mark.parametrize("dtype, index_dtype", [(np.float64, np.int64), (np.float32, np.int32)])
def test_sparse_rows_step_sums_duplicates_once(module, dtype, index_dtype, method, momentum,
                                               order):
    """GRU4Rec's optimizers (momentum included) through optim.cu's sparse step."""
    rng = np.random.default_rng(7)
    table = rng.normal(size=(6, 37)).astype(dtype)  # width > a warp
    s1 = rng.uniform(0, 1, table.shape).astype(dtype)
    # Adam: second moments (>= 0); Adagrad with momentum: a velocity; plain Adagrad: unused.
    s2 = rng.normal(size=table.shape).astype(dtype) * (method == OPT_ADAM or momentum > 0)
    if method == OPT_ADAM:
        s2 = np.abs(s2)
    rows = np.array([4, 1, 4, 0, 4, 1, 5], index_dtype)
    grads = rng.normal(size=(rows.size, 37)).astype(dtype)
    lr, beta1, beta2, eps, step = 0.1, 0.9, 0.99, 1e-6, 3
    expected = [a.copy() for a in (table, s1, s2)]
    ref._step_rows(*expected, rows, grads, method, lr, momentum, beta1, beta2, eps, step)
    got = [a.copy() for a in (table, s1, s2)]
    get_kernel = gru_kernels(module, dtype, index_dtype, order=order, seed=3)
    optim.launch_sparse_step(np, get_kernel, method, got[0], rows, grads.copy(), got[1], got[2],
                             lr, beta1, beta2, eps, step, momentum)
    for e, g in zip(expected, got, strict=True):
        assert_allclose(g, e, **tolerance(dtype))
    assert np.array_equal(got[0][[2, 3]], table[[2, 3]])  # rows not sampled are untouched


def _assert_epoch_close(got, expected, rtol, atol):
    assert got[1] == expected[1] > 0
    assert_allclose(got[0], expected[0], rtol=rtol)
    names = ("hidden", "emb", "emb_s1", "emb_s2", "gru", "gru_s1", "gru_s2", "out", "out_s1",
             "out_s2")
    for name, g, e in zip(names, got[2], expected[2], strict=True):
        assert_allclose(g, e, rtol=rtol, atol=atol, err_msg=name)


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("case", EPOCH_CASES)
def test_train_epoch_matches_reference(module, case, index_dtype):
    """Sample for sample: the same negatives and dropout masks (counter-based RNG), the same
    update order; thread orders give the same bits."""
    problem = epoch_problem(case[0], case[1], index_dtype)
    spec = epoch_spec(case)
    expected = run_epoch(problem, spec)
    results = [run_epoch(problem, spec, gru_kernels(module, np.float64, index_dtype, order, 9))
               for order in ORDERS]
    _assert_epoch_close(results[0], expected, 1e-9, 1e-11)
    for other in results[1:]:
        assert other[0] == results[0][0]
        for g, e in zip(other[2], results[0][2], strict=True):
            assert np.array_equal(g, e)


def test_train_epoch_float32(module):
    case = EPOCH_CASES[2]
    problem = epoch_problem(case[0], case[1], dtype=np.float32)
    spec = epoch_spec(case)
    expected = run_epoch(problem, spec)
    got = run_epoch(problem, spec, gru_kernels(module, np.float32, order="random", seed=1))
    _assert_epoch_close(got, expected, 2e-4, 2e-5)


def test_gru_is_clean_under_address_and_undefined_behaviour_sanitizers(emulator):
    result = run_under_asan(emulator, "asan_run.py", "gru", kernels=("gru", "optim"))
    assert result.returncode == 0, result.stderr[-4000:]
    assert "AddressSanitizer" not in result.stderr
    assert "asan run finished" in result.stdout


# -- the public contract functions and the estimator, with CuPy replaced by host arrays --------
@pytest.fixture
def emulated_cupy(module, monkeypatch):
    """``import cupy`` gives host arrays and NVRTC kernels come from the emulator (random thread
    order); the registry sees an available CUDA backend with the real contract functions."""
    import fastrec.backends.cuda as cuda_backend

    patch_cupy(monkeypatch, lambda source, expression: module[source].get_function(
        expression, order="random", seed=1))
    register_emulated_cuda(monkeypatch)
    return cuda_backend


def test_public_functions_copy_host_arrays(emulated_cupy):
    args, d_top = gru_problem(2, 2)
    expected = ref.gru_forward(*args)
    got = emulated_cupy.gru_forward(*args)
    for e, g in zip(expected, got, strict=True):
        assert type(g) is np.ndarray
        assert_allclose(g, e, rtol=1e-10, atol=1e-12)
    got_grads = emulated_cupy.gru_backward(*args, *expected, d_top)
    for e, g in zip(ref.gru_backward(*args, *expected, d_top), got_grads, strict=True):
        assert type(g) is np.ndarray
        assert_allclose(g, e, rtol=1e-10, atol=1e-12)
    hidden, table, samples = loss_problem()
    expected = ref.gru4rec_output_loss(hidden, table, samples, 1, 0.5, 0.25)
    got = emulated_cupy.gru4rec_output_loss(hidden, table, samples, 1, 0.5, 0.25)
    for e, g in zip(expected, got, strict=True):
        assert_allclose(g, e, rtol=1e-10, atol=1e-12)
    case = EPOCH_CASES[2]
    problem = epoch_problem(case[0], case[1])
    schedule, prob, alias = problem[:3]
    expected = run_epoch(problem, epoch_spec(case))
    from tests.cuda.gru_problems import copy_state

    arrays = copy_state(problem)
    total, n_events = emulated_cupy.gru4rec_train_epoch(
        schedule.inputs, schedule.targets, schedule.reset, *arrays, prob, alias,
        epoch_spec(case), 1)
    assert all(type(a) is np.ndarray for a in arrays)
    _assert_epoch_close((total, n_events, arrays), expected, 1e-9, 1e-11)
