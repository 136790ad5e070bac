"""The real csrc/cuda/optim.cu run in the CUDA-semantics emulator through the shared launchers
(``launch_dense_step``, ``launch_sparse_step``) against the numpy reference under forward,
reverse and random thread orders. Duplicate rows are summed in fixed pieces of OPTIM_PIECE
positions, each in position order, so rows repeated at most that often equal the Cython
kernels' bit for bit, and hot rows give the two-pass sum's bits whatever the thread order."""

from __future__ import annotations

import numpy as np
import pytest

from fastrec.backends._contract import OPT_ADAGRAD, OPT_ADAM, OPT_SGD, ContractError
from fastrec.backends.cuda import optim
from fastrec.backends.reference import optim as ref
from tests.cuda.ncf_helpers import emulated_getter, emulated_modules, patch_cupy
from tests.tolerances import tolerance

ORDERS = ("forward", "reverse", "random")
ADAM = (0.01, 0.9, 0.999, 1e-8)


@pytest.fixture(scope="module")
def modules(emulator):
    return emulated_modules(emulator)


def dense_problem(dtype, n=1000, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=n).astype(dtype), rng.normal(size=n).astype(dtype),
            rng.uniform(0.01, 0.1, n).astype(dtype), rng.uniform(0, 0.1, n).astype(dtype))


def sparse_problem(dtype, index_dtype, n_rows=30, d=5, n=60, seed=0):
    """A table with states and a batch of rows with many duplicates (and untouched rows)."""
    rng = np.random.default_rng(seed)
    table = rng.normal(size=(n_rows, d)).astype(dtype)
    rows = rng.integers(0, n_rows // 2, n).astype(index_dtype)
    row_grads = rng.normal(size=(n, d)).astype(dtype)
    s1 = rng.uniform(0.01, 0.1, (n_rows, d)).astype(dtype)
    s2 = rng.uniform(0.01, 0.1, (n_rows, d)).astype(dtype)
    return table, rows, row_grads, s1, s2


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", [OPT_ADAM, OPT_ADAGRAD, OPT_SGD])
def test_dense_step_matches_reference(modules, order, dtype, kind):
    params, grads, m, v = dense_problem(dtype, seed=kind)
    got = [params.copy(), m.copy(), v.copy()]
    optim.launch_dense_step(emulated_getter(modules, dtype, None, order, 3), kind, got[0], grads,
                            got[1], got[2], *ADAM, 7)
    expected = [params.copy(), m.copy(), v.copy()]
    if kind == OPT_ADAM:
        ref.adam_step(expected[0], grads, expected[1], expected[2], 7, *ADAM)
    elif kind == OPT_ADAGRAD:
        expected[1] += grads * grads
        expected[0] -= dtype(0.01) * grads / (np.sqrt(expected[1]) + dtype(1e-8))
    else:
        expected[0] -= dtype(0.01) * grads
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, **tolerance(dtype))


def sparse_steps(adam, get_kernel, other, table, rows, row_grads, s1, s2, step):
    """(got, expected): [table, s1, s2] after the emulated lazy Adam (or Adagrad) step and after
    ``other``'s (a backend module or the reference), each on copies."""
    got = [table.copy(), s1.copy(), s2.copy()]
    expected = [table.copy(), s1.copy(), s2.copy()]
    if adam:
        optim.launch_sparse_step(np, get_kernel, OPT_ADAM, got[0], rows, row_grads, got[1],
                                 got[2], *ADAM, step)
        other.sparse_adam_step(expected[0], rows, row_grads, expected[1], expected[2], step,
                               *ADAM)
    else:
        optim.launch_sparse_step(np, get_kernel, OPT_ADAGRAD, got[0], rows, row_grads,
                                 got[1], got[1], 0.05, 0.0, 0.0, 1e-10, 1)
        other.sparse_adagrad_step(expected[0], rows, row_grads, expected[1], 0.05, 1e-10)
    return got, expected


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("dtype, index_dtype", [(np.float32, np.int32), (np.float64, np.int64)])
@pytest.mark.parametrize("d", [1, 5, 33, 70])
@pytest.mark.parametrize("adam", [True, False], ids=["adam", "adagrad"])
def test_sparse_steps_match_reference(modules, order, dtype, index_dtype, d, adam):
    table, rows, row_grads, s1, s2 = sparse_problem(dtype, index_dtype, d=d, seed=d)
    grads_before = row_grads.copy()
    get_kernel = emulated_getter(modules, dtype, index_dtype, order, d)
    got, expected = sparse_steps(adam, get_kernel, ref, table, rows, row_grads, s1, s2, 4)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, **tolerance(dtype))
    untouched = np.setdiff1d(np.arange(table.shape[0]), rows)
    np.testing.assert_array_equal(got[0][untouched], table[untouched])
    np.testing.assert_array_equal(got[1][untouched], s1[untouched])
    np.testing.assert_array_equal(row_grads, grads_before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("adam", [True, False], ids=["adam", "adagrad"])
def test_sparse_steps_bitwise_equal_to_cython(modules, dtype, adam):
    """Rows repeated at most OPTIM_PIECE times are one piece each, summed in position order like
    the Cython kernel, with the same update formula and no FMA contraction on either side: the
    emulated kernel reproduces the Cython kernel bit for bit."""
    from tests.conftest import backend_or_skip

    cython = backend_or_skip("cython", "sparse_adam_step")
    table, rows, row_grads, s1, s2 = sparse_problem(dtype, np.int32, d=37, n=90, seed=11)
    assert 1 < np.bincount(rows).max() <= optim.OPTIM_PIECE
    get_kernel = emulated_getter(modules, dtype, np.int32, "random", 1)
    got, expected = sparse_steps(adam, get_kernel, cython, table, rows, row_grads, s1, s2, 3)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g, e)


def two_pass_sum(grads: np.ndarray, piece: int) -> np.ndarray:
    """optim.cu's order: each piece of ``piece`` rows summed in order, then the piece sums."""
    parts = []
    for start in range(0, grads.shape[0], piece):
        part = grads[start].copy()
        for g in grads[start + 1:start + piece]:
            part += g
        parts.append(part)
    total = parts[0]
    for part in parts[1:]:
        total += part
    return total


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hot_rows_sum_in_fixed_pieces(modules, dtype):
    """Rows repeated 70 times (three pieces: 32, 32, 6), 40 times and 5 times in one batch:
    each equals one Cython step with its two-pass gradient sum, bit for bit."""
    from tests.conftest import backend_or_skip

    cython = backend_or_skip("cython", "sparse_adam_step")
    rng = np.random.default_rng(2)
    rows = rng.permutation(np.repeat(np.array([3, 2, 1], np.int32), [70, 40, 5]))
    table, _, row_grads, s1, s2 = sparse_problem(dtype, np.int32, d=40, n=rows.size, seed=2)
    got = [table.copy(), s1.copy(), s2.copy()]
    optim.launch_sparse_step(np, emulated_getter(modules, dtype, np.int32, "reverse"),
                             OPT_ADAM, got[0], rows, row_grads, got[1], got[2], *ADAM, 2)
    expected = [table.copy(), s1.copy(), s2.copy()]
    distinct = np.array([3, 2, 1], np.int32)
    summed = np.stack([two_pass_sum(row_grads[rows == r], optim.OPTIM_PIECE) for r in distinct])
    cython.sparse_adam_step(expected[0], distinct, summed, expected[1], expected[2], 2, *ADAM)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g, e)


def test_sparse_step_is_bitwise_independent_of_thread_order(modules):
    table, rows, row_grads, s1, s2 = sparse_problem(np.float32, np.int64, d=45, n=80, seed=4)
    runs = []
    for order, seed in (("forward", 0), ("reverse", 0), ("random", 1), ("random", 2)):
        got = [table.copy(), s1.copy(), s2.copy()]
        optim.launch_sparse_step(np, emulated_getter(modules, np.float32, np.int64, order, seed),
                                 OPT_ADAM, got[0], rows, row_grads, got[1], got[2], *ADAM,
                                 5)
        runs.append(got)
    for run in runs[1:]:
        for a, b in zip(run, runs[0], strict=True):
            np.testing.assert_array_equal(a, b)


def test_public_functions_copy_host_arrays_back(modules, monkeypatch):
    from fastrec.backends import cuda

    patch_cupy(monkeypatch, modules)
    params, grads, m, v = dense_problem(np.float32, n=300)
    got = [params.copy(), m.copy(), v.copy()]
    cuda.adam_step(got[0], grads, got[1], got[2], 3, *ADAM)
    expected = [params.copy(), m.copy(), v.copy()]
    ref.adam_step(expected[0], grads, expected[1], expected[2], 3, *ADAM)
    for g, e in zip(got, expected, strict=True):
        assert type(g) is np.ndarray
        np.testing.assert_allclose(g, e, **tolerance(np.float32))

    table, rows, row_grads, s1, s2 = sparse_problem(np.float64, np.int64, d=9)
    got = [table.copy(), s1.copy(), s2.copy()]
    cuda.sparse_adam_step(got[0], rows, row_grads, got[1], got[2], 2, *ADAM)
    expected = [table.copy(), s1.copy(), s2.copy()]
    ref.sparse_adam_step(expected[0], rows, row_grads, expected[1], expected[2], 2, *ADAM)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, **tolerance(np.float64))

    got = [table.copy(), s1.copy()]
    cuda.sparse_adagrad_step(got[0], rows, row_grads, got[1], 0.05, 1e-10)
    expected = [table.copy(), s1.copy()]
    ref.sparse_adagrad_step(expected[0], rows, row_grads, expected[1], 0.05, 1e-10)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, **tolerance(np.float64))

    empty = np.empty(0, np.int32)
    before = table.copy()
    cuda.sparse_adam_step(table, empty, np.empty((0, 9)), s1, s2, 1, *ADAM)
    np.testing.assert_array_equal(table, before)


@pytest.mark.parametrize("call, message", [
    (lambda c, p: c.adam_step(p, p[:-1].copy(), p, p, 1, 0.1), "grads must have shape"),
    (lambda c, p: c.adam_step(p, p, p, p, 0, 0.1), "step must be >= 1"),
    (lambda c, p: c.sparse_adam_step(p.reshape(10, 2), np.array([10]), np.zeros((1, 2)),
                                     p.reshape(10, 2), p.reshape(10, 2), 1, 0.1),
     "row index out of range"),
    (lambda c, p: c.sparse_adagrad_step(p.reshape(10, 2), np.array([1.0]), np.zeros((1, 2)),
                                        p.reshape(10, 2), 0.1), "rows must be int32 or int64"),
    (lambda c, p: c.sparse_adagrad_step(p.reshape(10, 2), np.array([1]), np.zeros((1, 3)),
                                        p.reshape(10, 2), 0.1), "row_grads must have shape"),
])
def test_contract_errors_need_no_device(call, message):
    from fastrec.backends import cuda

    with pytest.raises(ContractError, match=message):
        call(cuda, np.zeros(20))


def test_optim_is_clean_under_address_and_undefined_behaviour_sanitizers(emulator):
    from tests.cuda.ncf_helpers import run_asan_script

    result = run_asan_script(emulator, "optim")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "AddressSanitizer" not in result.stderr
    assert "asan run finished" in result.stdout
