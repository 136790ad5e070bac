from pathlib import Path

import numpy as np
import pytest

from fastrec.data import Interactions, leave_last_out, load_movielens, random_split

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
ML_LATEST_SMALL = SHARED_DATA / "ml-latest-small"


def random_interactions(seed=0, n_users=30, n_items=20, nnz=400, timestamps=True):
    """Random distinct pairs (repeats are an error by default) with many equal timestamps, so
    tie-breaking is exercised."""
    rng = np.random.default_rng(seed)
    pairs = rng.choice(n_users * n_items, nnz, replace=False)
    users, items = pairs // n_items, pairs % n_items
    values = rng.random(nnz)
    times = rng.integers(0, 10, nnz) if timestamps else None
    return Interactions.from_ids(users * 10 + 3, items, values, timestamps=times)


def rows(data: Interactions) -> set:
    times = data.timestamps if data.timestamps is not None else np.zeros(data.nnz)
    return set(zip(data.users.tolist(), data.items.tolist(), data.values.tolist(),
                   times.tolist(), strict=True))


def assert_partition(data, train, test):
    assert train.nnz + test.nnz == data.nnz
    assert rows(train) | rows(test) == rows(data)
    for part in (train, test):
        assert part.user_ids is data.user_ids and part.item_ids is data.item_ids


def test_random_split_sizes_partition_and_determinism():
    data = random_interactions()
    train, test = random_split(data, test_size=0.25, random_state=7)
    assert test.nnz == 100
    assert_partition(data, train, test)
    train2, test2 = random_split(data, test_size=0.25, random_state=7)
    np.testing.assert_array_equal(test.values, test2.values)
    np.testing.assert_array_equal(train.values, train2.values)
    _, other = random_split(data, test_size=0.25, random_state=8)
    assert not np.array_equal(other.values, test.values)
    # Each half keeps the stored order of the observations.
    position = {v: i for i, v in enumerate(data.values.tolist())}
    assert np.all(np.diff([position[v] for v in test.values.tolist()]) > 0)


def test_random_split_accepts_a_generator():
    data = random_interactions()
    a = random_split(data, random_state=np.random.default_rng(3))[1]
    b = random_split(data, random_state=np.random.default_rng(3))[1]
    np.testing.assert_array_equal(a.values, b.values)


@pytest.mark.parametrize("test_size", [0.0, 1.0, -0.1, 1.5])
def test_random_split_rejects_bad_test_size(test_size):
    with pytest.raises(ValueError, match=r"test_size must be in \(0, 1\)"):
        random_split(random_interactions(), test_size=test_size)


def test_splits_reject_empty_and_degenerate_data():
    empty = Interactions.from_ids([], [], [])
    with pytest.raises(ValueError, match="empty"):
        random_split(empty)
    with pytest.raises(ValueError, match="empty"):
        leave_last_out(empty)
    one = Interactions.from_ids([1], [2], [3.0])
    with pytest.raises(ValueError, match="leaves the train or the test set empty"):
        random_split(one, test_size=0.2)


def slow_leave_last_out(data: Interactions, n: int, use_time: bool) -> np.ndarray:
    """Test mask from a per-user loop: sort each user's positions by (time, position)."""
    test = np.zeros(data.nnz, dtype=bool)
    for user in range(data.n_users):
        positions = [p for p in range(data.nnz) if data.users[p] == user]
        if len(positions) <= n:
            continue
        if use_time:
            positions.sort(key=lambda p: (data.timestamps[p], p))
        for p in positions[-n:]:
            test[p] = True
    return test


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("timestamps", [True, False])
def test_leave_last_out_matches_a_loop(n, timestamps):
    data = random_interactions(seed=n, timestamps=timestamps)
    train, test = leave_last_out(data, n=n)
    expected = slow_leave_last_out(data, n, use_time=timestamps)
    assert_partition(data, train, test)
    np.testing.assert_array_equal(test.values, data.values[expected])
    np.testing.assert_array_equal(train.values, data.values[~expected])


def test_leave_last_out_by_order_ignores_timestamps():
    data = random_interactions(seed=4)
    _, test = leave_last_out(data, n=2, by="order")
    np.testing.assert_array_equal(test.values,
                                  data.values[slow_leave_last_out(data, 2, use_time=False)])


def test_leave_last_out_hand_example():
    # User a: times 5, 9, 9 -> the later-stored 9 is last; user b: a single observation.
    data = Interactions.from_ids(["a", "b", "a", "a"], [1, 2, 3, 4], [10.0, 20.0, 30.0, 40.0],
                                 timestamps=[9, 1, 5, 9])
    train, test = leave_last_out(data)
    np.testing.assert_array_equal(test.values, [40.0])
    np.testing.assert_array_equal(train.values, [10.0, 20.0, 30.0])
    train, test = leave_last_out(data, n=2)
    np.testing.assert_array_equal(test.values, [10.0, 40.0])
    # With n=3 user a has n observations, so everything stays in train.
    train, test = leave_last_out(data, n=3)
    assert test.nnz == 0 and train.nnz == 4


@pytest.mark.parametrize("kwargs, match", [
    ({"n": 0}, "positive integer"), ({"n": 1.5}, "positive integer"),
    ({"n": True}, "positive integer"), ({"by": "time"}, "by must be"),
])
def test_leave_last_out_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        leave_last_out(random_interactions(), **kwargs)


@pytest.mark.skipif(not ML_LATEST_SMALL.exists(),
                    reason=f"shared MovieLens data not found at {ML_LATEST_SMALL}")
def test_splits_on_shared_ml_latest_small():
    data = load_movielens(ML_LATEST_SMALL)
    train, test = leave_last_out(data)
    # Every ml-latest-small user has at least 20 ratings, so each gives exactly one to test.
    assert test.nnz == data.n_users
    np.testing.assert_array_equal(np.sort(test.users), np.arange(data.n_users))
    latest = np.full(data.n_users, np.iinfo(np.int64).min)
    np.maximum.at(latest, train.users, train.timestamps)
    assert np.all(test.timestamps >= latest[test.users])
    train, test = random_split(data, random_state=0)
    assert test.nnz == round(0.2 * data.nnz)
