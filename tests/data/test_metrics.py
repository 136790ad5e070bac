import math

import numpy as np
import pytest
import scipy.sparse as sp

from fastrec.data import Interactions
from fastrec.metrics import (
    hit_rate_at_k,
    mae,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
    rmse,
)

METRICS = {"precision": precision_at_k, "recall": recall_at_k, "ndcg": ndcg_at_k,
           "hit_rate": hit_rate_at_k}


def test_rmse_mae_hand_example():
    y_true, y_pred = [1.0, 2.0, 4.0], [2.0, 2.0, 1.0]
    assert rmse(y_true, y_pred) == pytest.approx(math.sqrt(10 / 3))
    assert mae(y_true, y_pred) == pytest.approx(4 / 3)
    assert rmse(np.float32([1.5]), np.float32([1.5])) == 0.0


@pytest.mark.parametrize("metric", [rmse, mae])
def test_rating_metrics_reject_bad_input(metric):
    with pytest.raises(ValueError, match="different lengths: 2 and 3"):
        metric([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="y_pred has 1 NaN"):
        metric([1.0, 2.0], [1.0, np.nan])
    with pytest.raises(ValueError, match="y_true has 1 NaN or infinite"):
        metric([np.inf, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="empty"):
        metric([], [])
    with pytest.raises(ValueError, match="1-D"):
        metric([[1.0]], [[1.0]])


def relevant_matrix(rows_of_items, n_items):
    indptr = np.cumsum([0] + [len(r) for r in rows_of_items])
    indices = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows_of_items])
    return sp.csr_matrix((np.ones(len(indices)), indices, indptr),
                         shape=(len(rows_of_items), n_items))


# Users 0..3, items 0..9, K = 3.
#   user 0: relevant {1, 5};    recommended [1, 2, 5]   hits at ranks 0 and 2
#   user 1: relevant {3};       recommended [0, 3, -1]  hit at rank 1, one empty slot
#   user 2: relevant {};        recommended [4, 5, 6]   not evaluated
#   user 3: relevant {0,2,7,9}; recommended [8, 6, 4]   no hit
HAND_RECOMMENDED = np.array([[1, 2, 5], [0, 3, -1], [4, 5, 6], [8, 6, 4]])
HAND_RELEVANT = relevant_matrix([[1, 5], [3], [], [0, 2, 7, 9]], 10)
D = [1 / math.log2(r + 2) for r in range(3)]
HAND_PER_USER = {
    "precision": [2 / 3, 1 / 3, np.nan, 0.0],
    "recall": [1.0, 1.0, np.nan, 0.0],
    "ndcg": [(D[0] + D[2]) / (D[0] + D[1]), D[1] / D[0], np.nan, 0.0],
    "hit_rate": [1.0, 1.0, np.nan, 0.0],
}


def test_ranking_metrics_hand_example():
    per_user = ranking_metrics(HAND_RECOMMENDED, HAND_RELEVANT, 3, per_user=True)
    means = ranking_metrics(HAND_RECOMMENDED, HAND_RELEVANT, 3)
    assert set(per_user) == set(means) == set(METRICS)
    for name, expected in HAND_PER_USER.items():
        np.testing.assert_allclose(per_user[name], expected, rtol=1e-12, err_msg=name)
        assert means[name] == pytest.approx(np.nanmean(expected))
        assert METRICS[name](HAND_RECOMMENDED, HAND_RELEVANT, 3) == means[name]
        np.testing.assert_array_equal(
            METRICS[name](HAND_RECOMMENDED, HAND_RELEVANT, 3, per_user=True), per_user[name])


def test_ranking_metrics_at_smaller_k_uses_the_first_columns():
    got = ranking_metrics(HAND_RECOMMENDED, HAND_RELEVANT, 1, per_user=True)
    np.testing.assert_allclose(got["precision"], [1.0, 0.0, np.nan, 0.0])
    np.testing.assert_allclose(got["recall"], [0.5, 0.0, np.nan, 0.0])
    np.testing.assert_allclose(got["ndcg"], [1.0, 0.0, np.nan, 0.0])


def test_relevant_as_interactions_duplicates_and_explicit_zeros():
    test = Interactions.from_indices([0, 0, 1, 3, 3, 3, 3], [1, 5, 3, 0, 2, 7, 9],
                                     np.ones(7), (4, 10))
    expected = ranking_metrics(HAND_RECOMMENDED, HAND_RELEVANT, 3)
    assert ranking_metrics(HAND_RECOMMENDED, test, 3) == expected
    # Unsorted, duplicated entries with a stored zero: structure alone decides relevance.
    messy = sp.csr_matrix(([0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
                           [5, 1, 5, 3, 9, 7, 2, 0], [0, 3, 4, 4, 8]), shape=(4, 10))
    assert not messy.has_canonical_format
    assert ranking_metrics(HAND_RECOMMENDED, messy, 3) == expected
    assert ranking_metrics(HAND_RECOMMENDED, sp.csr_array(HAND_RELEVANT), 3) == expected


def slow_metrics(recommended, relevant_sets, k):
    """Textbook per-user loop; returns the averages over users with relevant items."""
    sums = dict.fromkeys(METRICS, 0.0)
    n_evaluated = 0
    for row, relevant in zip(recommended, relevant_sets, strict=True):
        if not relevant:
            continue
        n_evaluated += 1
        top = [int(item) for item in row[:k]]
        hits = [item in relevant for item in top]
        dcg = sum(1 / math.log2(rank + 2) for rank, hit in enumerate(hits) if hit)
        ideal = sum(1 / math.log2(rank + 2) for rank in range(min(k, len(relevant))))
        sums["precision"] += sum(hits) / k
        sums["recall"] += sum(hits) / len(relevant)
        sums["ndcg"] += dcg / ideal
        sums["hit_rate"] += float(any(hits))
    return {name: total / n_evaluated for name, total in sums.items()}


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [1, 5, 10])
def test_ranking_metrics_match_a_loop(seed, k):
    rng = np.random.default_rng(seed)
    n_users, n_items, width = 50, 30, 10
    relevant_sets = [set(rng.choice(n_items, rng.integers(0, 8), replace=False).tolist())
                     for _ in range(n_users)]
    recommended = np.stack([rng.permutation(n_items)[:width] for _ in range(n_users)])
    recommended[rng.random(recommended.shape) < 0.1] = -1
    relevant = relevant_matrix([sorted(s) for s in relevant_sets], n_items)
    got = ranking_metrics(recommended.astype(np.int32), relevant, k)
    expected = slow_metrics(recommended, relevant_sets, k)
    for name in METRICS:
        assert got[name] == pytest.approx(expected[name], rel=1e-12), name


@pytest.mark.parametrize("recommended, k, error, match", [
    (HAND_RECOMMENDED[:3], 3, ValueError, "3 rows but relevant has 4 users"),
    (HAND_RECOMMENDED.astype(float), 3, ValueError, "2-D integer array"),
    (HAND_RECOMMENDED[:, 0], 1, ValueError, "2-D integer array"),
    (HAND_RECOMMENDED, 0, ValueError, r"k must be an integer in \[1, 3\]"),
    (HAND_RECOMMENDED, 4, ValueError, r"k must be an integer in \[1, 3\]"),
    (HAND_RECOMMENDED, 2.0, ValueError, "k must be an integer"),
    (HAND_RECOMMENDED + 8, 3, ValueError, r"in \[0, 10\) or -1"),
    (HAND_RECOMMENDED - 2, 3, ValueError, r"in \[0, 10\) or -1"),
    (np.array([[1, 2, 1], [0, 3, -1], [4, 5, 6], [-1, 6, -1]]), 3, ValueError,
     "row 0 repeats an item"),
])
def test_ranking_metrics_reject_bad_input(recommended, k, error, match):
    with pytest.raises(error, match=match):
        ranking_metrics(recommended, HAND_RELEVANT, k)


def test_ranking_metrics_reject_bad_relevant():
    with pytest.raises(TypeError, match="scipy.sparse matrix or Interactions"):
        ranking_metrics(HAND_RECOMMENDED, HAND_RELEVANT.toarray(), 3)
    with pytest.raises(ValueError, match="no user has a relevant item"):
        ranking_metrics(HAND_RECOMMENDED, sp.csr_matrix((4, 10)), 3)
