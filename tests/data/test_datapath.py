"""The compiled data path against its array-sort definitions: the SGD block layout (any thread
count, the issue-18 overflow case), dense id ranks and the user-major pattern."""

import numpy as np
import pytest

from fastrec._algorithms import sgd_schedule
from fastrec._algorithms.sgd_schedule import BlockedRatings

_datapath = pytest.importorskip("fastrec.backends.cython._datapath")


def ratings(n_users, n_items, nnz, index=np.int32, dtype=np.float32, seed=0):
    """Random pairs with repeats (and, at this size, repeated tie-break keys within a run)."""
    rng = np.random.default_rng(seed)
    users = (rng.zipf(1.5, nnz) % n_users).astype(index)  # a few heavy users: long runs
    items = rng.integers(0, n_items, nnz).astype(index)
    return users, items, rng.uniform(1, 5, nnz).astype(dtype)


def sorted_layout(users, items, values, n_users, n_items, g, seed):
    rng = np.random.default_rng(seed)
    user_rows = sgd_schedule._random_rows(n_users, rng)
    item_rows = sgd_schedule._random_rows(n_items, rng)
    keys = rng.integers(0, 1 << 20, users.shape[0], dtype=np.uint32)
    return sgd_schedule._sorted_layout(np, users, items, values, user_rows, item_rows, g, keys)


@pytest.mark.parametrize("index", [np.int32, np.int64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("g", [1, 3, 16])
def test_layout_matches_sorted_definition_at_any_thread_count(index, dtype, g):
    n_users, n_items = 300, 120
    users, items, values = ratings(n_users, n_items, 30_000, index, dtype)
    expected = sorted_layout(users, items, values, n_users, n_items, g, seed=5)
    for threads in (1, 2, 3):
        got = BlockedRatings.build(users, items, values, n_users, n_items, g,
                                   np.random.default_rng(5), n_threads=threads)
        for a, b in zip((got.users, got.items, got.ratings, got.block_ptr), expected,
                        strict=True):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("threads", [1, 3])
def test_layout_drawing_keys_run_by_run_is_the_one_draw_layout(threads):
    """Runs of 1000 ratings per thread: the keys come in many draws, of odd sizes at the end,
    and give the layout of one draw, leaving the generator where one draw leaves it."""
    n_users, n_items, g = 300, 120, 4
    users, items, values = ratings(n_users, n_items, 30_001)
    expected = sorted_layout(users, items, values, n_users, n_items, g, seed=7)
    rng = np.random.default_rng(7)
    user_rows = sgd_schedule._random_rows(n_users, rng)
    item_rows = sgd_schedule._random_rows(n_items, rng)
    sizes = []

    def draw(n):
        sizes.append(n)
        return sgd_schedule.tie_keys(rng, n)

    got = _datapath.layout(users, items, values, user_rows, item_rows, g, draw, threads,
                           piece=1000)
    assert len(sizes) == -(-31 // threads) and sum(sizes) == 30_001
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    reference = np.random.default_rng(7)
    sgd_schedule._random_rows(n_users, reference)
    sgd_schedule._random_rows(n_items, reference)
    sgd_schedule.tie_keys(reference, 30_001)
    assert rng.random() == reference.random()


def test_layout_has_ties_to_break():
    """The comparison above is only meaningful if equal keys occur inside a (block, user) run."""
    users, items, _ = ratings(300, 120, 30_000)
    rng = np.random.default_rng(5)
    user_rows = sgd_schedule._random_rows(300, rng)
    sgd_schedule._random_rows(120, rng)
    keys = rng.integers(0, 1 << 20, users.shape[0], dtype=np.uint32)
    run_key = user_rows[users].astype(np.int64) << 20 | keys
    assert np.unique(run_key).size < run_key.size


def test_layout_without_compiled_path_is_the_same(monkeypatch):
    users, items, values = ratings(50, 40, 2_000)
    compiled = BlockedRatings.build(users, items, values, 50, 40, 4, np.random.default_rng(1))
    monkeypatch.setattr(sgd_schedule, "_compiled_layout", lambda: None)
    plain = BlockedRatings.build(users, items, values, 50, 40, 4, np.random.default_rng(1))
    for name in ("users", "items", "ratings", "block_ptr", "user_rows", "item_rows"):
        np.testing.assert_array_equal(getattr(compiled, name), getattr(plain, name))


def test_layout_blocks_are_right_at_1024_blocks_and_9m_users():
    """Issue 18: the old packed key ((block * n_users + user) << 20) wraps past 2^63 here."""
    n_users, n_items, g, nnz = 9_000_000, 2048, 1024, 200_000
    rng = np.random.default_rng(0)
    users = rng.integers(0, n_users, nnz).astype(np.int32)
    items = rng.integers(0, n_items, nnz).astype(np.int32)
    values = np.arange(nnz, dtype=np.float32)
    blocked = BlockedRatings.build(users, items, values, n_users, n_items, g, rng, n_threads=2)
    sizes = np.diff(blocked.block_ptr)
    block = np.repeat(np.arange(g * g), sizes)
    np.testing.assert_array_equal(blocked.users.astype(np.int64) * g // n_users, block // g)
    np.testing.assert_array_equal(blocked.items.astype(np.int64) * g // n_items, block % g)
    # Every rating is there once, with its own user and item.
    source = blocked.ratings.astype(np.int64)
    np.testing.assert_array_equal(np.sort(source), np.arange(nnz))
    np.testing.assert_array_equal(blocked.users, blocked.user_rows[users[source]])
    np.testing.assert_array_equal(blocked.items, blocked.item_rows[items[source]])


@pytest.mark.parametrize("index", [np.int32, np.int64])
@pytest.mark.parametrize("spacing", [1, 3])
def test_rank_ids_is_unique_with_inverse(index, spacing):
    raw = (np.random.default_rng(0).integers(0, 500, 20_000) * spacing).astype(index)
    ids, inverse = np.unique(raw, return_inverse=True)
    assert (ids.size == raw.max() + 1) == (spacing == 1)  # both paths: identity and ranks
    for threads in (1, 2):
        got_index, got_ids = _datapath.rank_ids(raw, int(raw.max()), threads)
        np.testing.assert_array_equal(got_ids, ids)
        np.testing.assert_array_equal(got_index, inverse)


@pytest.mark.parametrize("with_order", [False, True])
def test_pattern_is_csr_with_sorted_rows(with_order):
    import scipy.sparse as sp

    users, items, _ = ratings(200, 90, 5_000, np.int32)
    indptr, indices, order, repeated = _datapath.pattern(users, items, 200, with_order, 2)
    m = sp.csr_matrix((np.ones(users.shape[0]), (users, items)), shape=(200, 90))
    m.sum_duplicates()
    np.testing.assert_array_equal(np.diff(indptr), np.bincount(users, minlength=200))
    rows = np.repeat(np.arange(200), np.diff(indptr))
    expected = np.lexsort((np.arange(users.shape[0]), items, users))
    np.testing.assert_array_equal(indices, items[expected])
    np.testing.assert_array_equal(rows, users[expected])
    if with_order:
        np.testing.assert_array_equal(order, expected)
    assert repeated == int(np.sum(np.diff(m.indptr) < np.diff(indptr)))
    assert repeated > 0
