"""Evaluation protocols shared by every model: the NCF protocol (leave the latest interaction of
each user out, rank it among sampled negatives, HR@K and NDCG@K) and full ranking over all items
(with the metrics of :mod:`fastrec.metrics`).

A model takes part through two methods every fastrec model has, in index space:
``_predict_indices(users, items) -> scores[n]`` and ``_score_users(users) -> scores[n, n_items]``
(higher is better; CuPy results of a model on the GPU are copied to the host here).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from fastrec import metrics
from fastrec._algorithms.sampling import draw_negatives
from fastrec._array import to_host
from fastrec.data import splits
from fastrec.data.interactions import Interactions
from fastrec.models._base import _top_n


def leave_last_out(data: Interactions, single: str = "raise") -> tuple[Interactions, Interactions]:
    """Split off each user's latest interaction (by timestamp when the data has them, else the
    last one in stored order), as :func:`fastrec.data.splits.leave_last_out` with ``n=1``, but
    refusing by default to silently skip users who cannot be evaluated.

    single : what to do with users who have one interaction: ``"raise"`` (ValueError naming how
        many), or ``"train"`` (keep it in the training part; the user gets no test item).
    Returns ``(train, test)`` with the same id maps; ``test`` has at most one pair per user.
    """
    if single not in ("raise", "train"):
        raise ValueError(f"single must be 'raise' or 'train', got {single!r}")
    counts = np.bincount(data.users, minlength=data.n_users)
    lonely = int(np.sum(counts == 1))
    if lonely and single == "raise":
        raise ValueError(f"{lonely} users have a single interaction, which leave-one-out would "
                         f"move to the test set (leaving them nothing to train on); filter them "
                         f"out or pass single='train'")
    return splits.leave_last_out(data, n=1, by="timestamp")


def _seen(*parts: Interactions) -> sp.csr_matrix:
    users = np.concatenate([p.users for p in parts]).astype(np.int64)
    items = np.concatenate([p.items for p in parts]).astype(np.int64)
    m = sp.csr_matrix((np.ones(users.shape[0], np.int8), (users, items)), shape=parts[0].shape)
    m.sum_duplicates()
    m.sort_indices()
    return m


@dataclass(frozen=True)
class SampledRanking:
    """The NCF evaluation set: each test pair with the negatives it is ranked against."""

    users: np.ndarray  # int64[n]
    items: np.ndarray  # int64[n]
    negatives: np.ndarray  # int64[n, n_negatives]

    @classmethod
    def build(cls, train: Interactions, test: Interactions, n_negatives: int = 99,
              seed: int = 0) -> SampledRanking:
        """Negatives are uniform items the user has interacted with neither in train nor test,
        drawn with the counter-based RNG (so they are the same on every machine)."""
        if n_negatives < 1:
            raise ValueError(f"n_negatives must be >= 1, got {n_negatives}")
        if test.nnz == 0:
            raise ValueError("the test set is empty")
        seen = _seen(train, test)
        users = test.users.astype(np.int64)
        negatives = draw_negatives(users, seen.indptr.astype(np.int64),
                                   seen.indices.astype(np.int64), train.n_items, n_negatives,
                                   seed, 0)
        return cls(users, test.items.astype(np.int64), negatives)


def rank_metrics(ranks: np.ndarray, k: int) -> dict[str, float]:
    """HR@k and NDCG@k (one relevant item) from 0-based ranks."""
    hit = ranks < k
    ndcg = np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)
    return {f"hr@{k}": float(np.mean(hit)), f"ndcg@{k}": float(np.mean(ndcg))}


def sampled_ranks(model, ranking: SampledRanking) -> np.ndarray:
    """0-based rank of each test item among its sampled negatives, int64[n] in the order of
    ``ranking``. Ties count against the test item (a model scoring everything equally ranks
    it last, not first)."""
    n, m = ranking.negatives.shape
    pos = np.asarray(to_host(model._predict_indices(ranking.users, ranking.items)), np.float64)
    neg = np.asarray(to_host(model._predict_indices(np.repeat(ranking.users, m),
                                                    ranking.negatives.ravel())),
                     np.float64).reshape(n, m)
    return np.sum(neg >= pos[:, None], axis=1)


def evaluate_sampled(model, ranking: SampledRanking, k: int = 10) -> dict[str, float]:
    """The NCF protocol: HR@k and NDCG@k of each test item ranked among its sampled negatives
    (:func:`sampled_ranks`)."""
    return rank_metrics(sampled_ranks(model, ranking), k)


def evaluate_full(model, train: Interactions, test: Interactions, k: int = 10,
                  chunk: int = 256) -> dict[str, float]:
    """Full ranking: the top ``k`` of every item the user has not interacted with in training,
    scored against the test items with :func:`fastrec.metrics.ranking_metrics` (users without
    test items are not counted). Scores ``chunk`` users at a time."""
    if test.nnz == 0:
        raise ValueError("the test set is empty")
    seen = _seen(train)
    users = np.unique(test.users).astype(np.int64)
    recommended = np.full((train.n_users, k), -1, np.int64)
    for start in range(0, users.shape[0], chunk):
        u = users[start:start + chunk]
        scores = np.asarray(to_host(model._score_users(u)), np.float64)
        rows = seen[u]
        scores[np.repeat(np.arange(u.shape[0]), np.diff(rows.indptr)), rows.indices] = -np.inf
        top = _top_n(scores, min(k, scores.shape[1]))
        top = np.where(np.isneginf(np.take_along_axis(scores, top, axis=1)), -1, top)
        recommended[u, :top.shape[1]] = top
    result = metrics.ranking_metrics(recommended, test, k)
    return {f"hr@{k}": result["hit_rate"], f"ndcg@{k}": result["ndcg"],
            f"recall@{k}": result["recall"], f"precision@{k}": result["precision"]}
