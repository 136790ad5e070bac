"""The SGD schedule's conflict-freedom is part of the contract and checked, and the block layout
stays right at the grid sides a GPU wants."""

from __future__ import annotations

import numpy as np
import pytest

from fastrec._algorithms.sgd_schedule import BlockedRatings
from fastrec.backends._contract import ContractError, check_sgd_epoch


def _problem(n_users=40, n_items=30, nnz=400, g=4, seed=0):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, nnz).astype(np.int32)
    items = rng.integers(0, n_items, nnz).astype(np.int32)
    ratings = rng.uniform(1, 5, nnz).astype(np.float32)
    blocked = BlockedRatings.build(users, items, ratings, n_users, n_items, g, rng)
    factors = (np.zeros((n_users, 3), np.float32), np.zeros((n_items, 3), np.float32),
               np.zeros(n_users, np.float32), np.zeros(n_items, np.float32))
    data = (blocked.users, blocked.items, blocked.ratings, blocked.block_ptr)
    return data, blocked.epoch_schedule(rng), factors, g


def _repeat(schedule, g, line):
    """A copy whose stratum 0 puts its second block on the first block's row (or column)
    block, keeping the other coordinate."""
    bad = schedule.copy()
    first, second = bad[0, 0], bad[0, 1]
    bad[0, 1] = (first // g * g + second % g) if line == "row" else (second // g * g + first % g)
    return bad


@pytest.mark.parametrize("line", ["row", "column"])
def test_contract_rejects_a_stratum_that_repeats_a_block_line(line):
    data, schedule, factors, g = _problem()
    check_sgd_epoch(*data, schedule, *factors)
    with pytest.raises(ContractError, match=f"stratum 0 .* uses {line} block .* more than once"):
        check_sgd_epoch(*data, _repeat(schedule, g, line), *factors)


def test_padding_entries_may_repeat():
    data, schedule, factors, g = _problem()
    padded = np.concatenate([schedule, np.full((g, 2), -1, np.int64)], axis=1)
    check_sgd_epoch(*data, padded, *factors)


def test_cuda_launcher_rejects_a_repeated_row_block_before_any_launch():
    """The dataflow driver records one predecessor per row block and stratum, so it must never
    see a repeat; the check runs on host schedules before CuPy is needed."""
    from fastrec.backends.cuda.sgd import sgd_epoch

    data, schedule, factors, g = _problem()
    with pytest.raises(ContractError, match="row block"):
        sgd_epoch(*data, _repeat(schedule, g, "row"), *factors, 3.0, 0.01, 0.01, 0.0, 0.0,
                  True)


def test_layout_at_a_gpu_grid_side_with_millions_of_users():
    """G = 1024 with 9M users: G^2 * n_users >= 2^43, where a (block, user) sort key shifted by
    20 bits overflows int64. Every block must hold exactly its row and column block's ratings
    (or the layout must refuse with a clear error)."""
    n_users, n_items, nnz, g = 9_000_000, 4096, 20_000, 1024
    rng = np.random.default_rng(0)
    users = rng.integers(0, n_users, nnz).astype(np.int32)
    items = rng.integers(0, n_items, nnz).astype(np.int32)
    ratings = np.arange(nnz, dtype=np.float64)  # identifies each rating
    try:
        blocked = BlockedRatings.build(users, items, ratings, n_users, n_items, g, rng)
    except (ValueError, OverflowError) as exc:
        assert "n_blocks" in str(exc) or "users" in str(exc), exc
        return
    block = np.repeat(np.arange(g * g), np.diff(blocked.block_ptr))
    assert np.array_equal(blocked.users.astype(np.int64) * g // n_users, block // g)
    assert np.array_equal(blocked.items.astype(np.int64) * g // n_items, block % g)
    original = blocked.ratings.astype(np.int64)
    assert np.array_equal(np.sort(original), np.arange(nnz))
    assert np.array_equal(blocked.users, blocked.user_rows[users[original]])
    assert np.array_equal(blocked.items, blocked.item_rows[items[original]])
