"""sgd_epoch of every backend against the numpy reference, sample for sample."""

import numpy as np
import pytest

from fastrec._algorithms.sgd_schedule import BlockedRatings
from fastrec.backends._contract import ContractError, check_sgd_epoch
from fastrec.backends.reference import sgd_epoch as reference_epoch
from tests.conftest import COMPILED_BACKENDS, require_backend

# float32 kernels sum the dot product in a different order than numpy: per-epoch agreement is to
# rounding; float64 must agree to ~1e-12.
TOLERANCE = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}


def make_problem(n_users=37, n_items=23, nnz=400, k=5, g=4, dtype=np.float32, index=np.int32,
                 seed=0):
    rng = np.random.default_rng(seed)
    pairs = rng.choice(n_users * n_items, size=nnz, replace=False)
    users, items = (pairs // n_items).astype(index), (pairs % n_items).astype(index)
    ratings = rng.uniform(1, 5, nnz).astype(dtype)
    blocked = BlockedRatings.build(users, items, ratings, n_users, n_items, g, rng)
    state = dict(
        user_factors=rng.normal(0, 0.1, (n_users, k)).astype(dtype),
        item_factors=rng.normal(0, 0.1, (n_items, k)).astype(dtype),
        user_bias=rng.normal(0, 0.1, n_users).astype(dtype),
        item_bias=rng.normal(0, 0.1, n_items).astype(dtype),
    )
    return blocked, state, rng


def run(kernel, blocked, state, schedule, biased=True, n_threads=2, **hyper):
    params = dict(global_mean=3.0, lr=0.05, lr_bias=0.03, reg=0.02, reg_bias=0.01)
    params.update(hyper)
    out = {k: v.copy() for k, v in state.items()}
    sse = kernel(blocked.users, blocked.items, blocked.ratings, blocked.block_ptr, schedule,
                 out["user_factors"], out["item_factors"], out["user_bias"], out["item_bias"],
                 params["global_mean"], params["lr"], params["lr_bias"], params["reg"],
                 params["reg_bias"], biased, n_threads)
    return sse, out


@pytest.mark.parametrize("backend", COMPILED_BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index", [np.int32, np.int64])
@pytest.mark.parametrize("k", [1, 5, 16, 37])
def test_epoch_matches_reference(backend, dtype, index, k):
    kernel = require_backend(backend, "sgd_epoch").sgd_epoch
    blocked, state, rng = make_problem(dtype=dtype, index=index, k=k)
    for biased in (True, False):
        schedule = blocked.epoch_schedule(rng)
        sse_ref, ref = run(reference_epoch, blocked, state, schedule, biased)
        sse, got = run(kernel, blocked, state, schedule, biased)
        np.testing.assert_allclose(sse, sse_ref, rtol=1e-4 if dtype == np.float32 else 1e-10)
        for name in ref:
            np.testing.assert_allclose(got[name], ref[name], **TOLERANCE[dtype], err_msg=name)
            assert got[name].dtype == dtype
        if not biased:
            np.testing.assert_array_equal(got["user_bias"], state["user_bias"])


@pytest.mark.parametrize("backend", COMPILED_BACKENDS)
def test_several_epochs_stay_with_reference(backend):
    kernel = require_backend(backend, "sgd_epoch").sgd_epoch
    blocked, state, rng = make_problem(dtype=np.float64)
    ref, got = state, state
    for _ in range(5):
        schedule = blocked.epoch_schedule(rng)
        _, ref = run(reference_epoch, blocked, ref, schedule)
        _, got = run(kernel, blocked, got, schedule)
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("backend", COMPILED_BACKENDS)
def test_bitwise_identical_at_any_thread_count(backend):
    kernel = require_backend(backend, "sgd_epoch").sgd_epoch
    blocked, state, rng = make_problem(n_users=300, n_items=200, nnz=6000, k=16, g=8)
    schedule = blocked.epoch_schedule(rng)
    sse1, one = run(kernel, blocked, state, schedule, n_threads=1)
    sse2, two = run(kernel, blocked, state, schedule, n_threads=2)
    sse4, four = run(kernel, blocked, state, schedule, n_threads=4)
    assert sse1 == sse2 == sse4
    for name in one:
        assert np.array_equal(one[name], two[name]) and np.array_equal(one[name], four[name])


@pytest.mark.parametrize("backend", ("numpy", *COMPILED_BACKENDS))
def test_edge_cases(backend):
    kernel = require_backend(backend, "sgd_epoch").sgd_epoch
    # one rating; users and items without ratings must stay untouched
    users, items = np.array([2], np.int32), np.array([1], np.int32)
    ratings = np.array([4.0], np.float32)
    block_ptr = np.array([0, 1], np.int64)
    schedule = np.array([[0]], np.int64)
    rng = np.random.default_rng(1)
    P, Q = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(3, 3)).astype(np.float32)
    bu, bi = np.zeros(4, np.float32), np.zeros(3, np.float32)
    P0, Q0 = P.copy(), Q.copy()
    sse = kernel(users, items, ratings, block_ptr, schedule, P, Q, bu, bi, 3.0, 0.1, 0.1, 0.0,
                 0.0, True, 1)
    err = 4.0 - 3.0 - P0[2] @ Q0[1]
    assert sse == pytest.approx(err**2, rel=1e-5)
    np.testing.assert_allclose(P[2], P0[2] + 0.1 * err * Q0[1], rtol=1e-5)
    np.testing.assert_allclose(Q[1], Q0[1] + 0.1 * err * P0[2], rtol=1e-5)
    for row in (0, 1, 3):
        np.testing.assert_array_equal(P[row], P0[row])
    np.testing.assert_array_equal(Q[[0, 2]], Q0[[0, 2]])
    assert bu[2] == pytest.approx(0.1 * err, rel=1e-5) and bu[[0, 1, 3]].sum() == 0
    # empty data and padded schedules are no-ops
    empty = np.empty(0, np.int32)
    assert kernel(empty, empty, np.empty(0, np.float32), np.zeros(2, np.int64),
                  np.array([[-1, 0]], np.int64), P, Q, bu, bi, 3.0, 0.1, 0.1, 0.0, 0.0, True,
                  2) == 0.0


def test_contract_check_rejects_bad_arguments():
    blocked, state, rng = make_problem()
    schedule = blocked.epoch_schedule(rng)
    args = [blocked.users, blocked.items, blocked.ratings, blocked.block_ptr, schedule,
            *state.values()]
    check_sgd_epoch(*args)
    bad = list(args)
    bad[0] = blocked.users.copy()
    bad[0][3] = 10**6
    with pytest.raises(ContractError, match="user index out of range"):
        check_sgd_epoch(*bad)
    bad = list(args)
    bad[5] = state["user_factors"].astype(np.float64)
    with pytest.raises(ContractError, match="dtype"):
        check_sgd_epoch(*bad)
    bad = list(args)
    bad[1] = blocked.items.astype(np.int64)
    with pytest.raises(ContractError, match="items"):
        check_sgd_epoch(*bad)
    bad = list(args)
    bad[4] = schedule + 1000
    with pytest.raises(ContractError, match="schedule"):
        check_sgd_epoch(*bad)


def test_schedule_strata_are_conflict_free():
    blocked, _, rng = make_problem(g=6)
    g = blocked.n_blocks
    schedule = blocked.epoch_schedule(rng)
    assert sorted(schedule.ravel().tolist()) == list(range(g * g))
    for stratum in schedule:
        assert len(set(stratum // g)) == g and len(set(stratum % g)) == g
    for b in range(g * g):  # every rating sits in its block's row/column block
        lo, hi = blocked.block_ptr[b], blocked.block_ptr[b + 1]
        assert hi >= lo
    assert blocked.block_ptr[-1] == blocked.users.shape[0]


@pytest.mark.parametrize("backend", COMPILED_BACKENDS)
def test_repeated_blocks_count_every_visit(backend):
    """A schedule may visit a block in several strata: each visit's errors count in the SSE."""
    kernel = require_backend(backend, "sgd_epoch").sgd_epoch
    blocked, state, rng = make_problem(dtype=np.float64)
    schedule = np.ascontiguousarray(np.repeat(blocked.epoch_schedule(rng)[:1], 4, axis=0))
    sse_ref, ref = run(reference_epoch, blocked, state, schedule)
    sse, got = run(kernel, blocked, state, schedule)
    assert sse == pytest.approx(sse_ref, rel=1e-10)
    np.testing.assert_allclose(got["user_factors"], ref["user_factors"], rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [5, 32, 100])
def test_numba_equals_cython_bit_for_bit(dtype, k):
    """Both compiled CPU backends run the header's operations in the same order (16-lane dot,
    no FMA contraction), so they agree exactly, not just to rounding."""
    cython = require_backend("cython", "sgd_epoch").sgd_epoch
    numba = require_backend("numba", "sgd_epoch").sgd_epoch
    blocked, state, rng = make_problem(n_users=300, n_items=200, nnz=6000, k=k, g=8, dtype=dtype)
    schedule = blocked.epoch_schedule(rng)
    sse_c, by_cython = run(cython, blocked, state, schedule, n_threads=2)
    sse_n, by_numba = run(numba, blocked, state, schedule, n_threads=2)
    assert sse_c == sse_n
    for name in by_cython:
        np.testing.assert_array_equal(by_numba[name], by_cython[name], err_msg=name)


def test_blocks_cover_contiguous_row_ranges_and_orders_round_trip():
    """Each block's users (items) are one contiguous range of working rows, and converting
    tables to working order and back is the identity."""
    blocked, state, _ = make_problem(n_users=101, n_items=53, nnz=1500, g=4)
    g = blocked.n_blocks
    for b in range(g * g):
        lo, hi = blocked.block_ptr[b], blocked.block_ptr[b + 1]
        if hi > lo:
            assert np.all(blocked.users[lo:hi] * g // 101 == b // g)
            assert np.all(blocked.items[lo:hi] * g // 53 == b % g)
    assert sorted(blocked.user_rows) == list(range(101))
    back = blocked.to_id_order(blocked.to_working_order(state), state["user_factors"].shape[1])
    for name, table in state.items():
        np.testing.assert_array_equal(back[name], table)
    working = blocked.to_working_order(state)
    np.testing.assert_array_equal(working["user_factors"][blocked.user_rows[7]],
                                  state["user_factors"][7])


@pytest.mark.parametrize("k, dtype, width", [(100, np.float32, 112), (96, np.float32, 96),
                                             (50, np.float32, 50), (5, np.float32, 5),
                                             (100, np.float64, 104), (60, np.float64, 64)])
def test_factor_tables_are_padded_to_whole_aligned_vectors(k, dtype, width):
    """Working tables get whole 64-byte rows (when that costs at most k/8 columns) on a 64-byte
    boundary, with zero padding; padded and unpadded epochs give the same model."""
    from fastrec.backends._cpu_layout import sgd_row_width

    assert sgd_row_width(k, dtype) == width
    blocked, state, rng = make_problem(n_users=60, n_items=40, nnz=900, k=k, g=4, dtype=dtype)
    working = blocked.to_working_order(state, width)
    table = working["user_factors"]
    assert table.shape[1] == width and table.ctypes.data % 64 == 0
    assert not table[:, k:].any()
    kernel = require_backend("cython", "sgd_epoch").sgd_epoch
    schedule = blocked.epoch_schedule(rng)
    narrow = {name: np.ascontiguousarray(t[:, :k]) if t.ndim == 2 else t.copy()
              for name, t in working.items()}
    sse_narrow, unpadded = run(kernel, blocked, narrow, schedule)
    sse_padded, padded = run(kernel, blocked, working, schedule)
    assert sse_padded == sse_narrow
    assert not padded["user_factors"][:, k:].any() and not padded["item_factors"][:, k:].any()
    for name in state:
        got = padded[name][:, :k] if padded[name].ndim == 2 else padded[name]
        np.testing.assert_array_equal(got, unpadded[name], err_msg=name)
