"""Evaluation metrics: rating error (RMSE, MAE) and top-K ranking quality.

Ranking metrics take

- ``recommended``: int[n_users, K] item indices, best first, one row per user; ``-1`` marks an
  empty slot (fewer than K items to recommend). Items may not repeat within a row.
- ``relevant``: the relevant items of each user as a scipy.sparse matrix [n_users, n_items]
  (every stored entry is relevant, whatever its value) or an :class:`Interactions` (e.g. a test
  split); row ``u`` of both inputs is the same user.

Relevance is binary. Averages run over the users with at least one relevant item; per-user
arrays (``per_user=True``) are float64[n_users] with NaN for the other users, so
``np.nanmean(per_user_values)`` is the average.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from fastrec.data.interactions import Interactions


# -- rating error ----------------------------------------------------------------------------------
def rmse(y_true, y_pred) -> float:
    """Root mean squared error of two float[n] arrays (computed in float64)."""
    y_true, y_pred = _check_ratings(y_true, y_pred)
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2)))


def mae(y_true, y_pred) -> float:
    """Mean absolute error of two float[n] arrays (computed in float64)."""
    y_true, y_pred = _check_ratings(y_true, y_pred)
    return float(np.mean(np.abs(y_true - y_pred)))


def _check_ratings(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {values.shape}")
        n_bad = int(np.sum(~np.isfinite(values)))
        if n_bad:
            raise ValueError(f"{name} has {n_bad} NaN or infinite values")
        arrays.append(values)
    if arrays[0].shape != arrays[1].shape:
        raise ValueError(f"y_true and y_pred have different lengths: {arrays[0].shape[0]} and "
                         f"{arrays[1].shape[0]}")
    if arrays[0].shape[0] == 0:
        raise ValueError("y_true and y_pred are empty")
    return arrays[0], arrays[1]


# -- ranking ---------------------------------------------------------------------------------------
def ranking_metrics(recommended, relevant, k: int,
                    per_user: bool = False) -> dict[str, float] | dict[str, np.ndarray]:
    """Precision, recall, NDCG and hit rate at ``k`` in one pass.

    Returns
    -------
    ``{"precision": ..., "recall": ..., "ndcg": ..., "hit_rate": ...}``: floats (averages over
    users with relevant items), or float64[n_users] arrays when ``per_user`` is True.
    """
    hits, n_relevant = _hits(recommended, relevant, k)
    n_hits = hits.sum(axis=1)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal_dcg = np.concatenate([[0.0], np.cumsum(discounts)])[np.minimum(n_relevant, k)]
    evaluated = n_relevant > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = {
            "precision": n_hits / k,
            "recall": n_hits / n_relevant,
            "ndcg": hits @ discounts / ideal_dcg,
            "hit_rate": (n_hits > 0).astype(np.float64),
        }
    if per_user:
        return {name: np.where(evaluated, values, np.nan) for name, values in scores.items()}
    return {name: float(values[evaluated].mean()) for name, values in scores.items()}


def precision_at_k(recommended, relevant, k: int, per_user: bool = False) -> float | np.ndarray:
    """Fraction of the top ``k`` slots holding a relevant item (empty slots count as misses)."""
    return ranking_metrics(recommended, relevant, k, per_user)["precision"]


def recall_at_k(recommended, relevant, k: int, per_user: bool = False) -> float | np.ndarray:
    """Fraction of a user's relevant items found in the top ``k``."""
    return ranking_metrics(recommended, relevant, k, per_user)["recall"]


def ndcg_at_k(recommended, relevant, k: int, per_user: bool = False) -> float | np.ndarray:
    """``DCG / ideal DCG`` with ``DCG = sum over hits at 0-based rank r of 1 / log2(r + 2)`` and
    the ideal DCG that of ``min(k, n_relevant)`` hits in the first slots."""
    return ranking_metrics(recommended, relevant, k, per_user)["ndcg"]


def hit_rate_at_k(recommended, relevant, k: int, per_user: bool = False) -> float | np.ndarray:
    """1 if any of the top ``k`` is relevant, else 0 (HR@k)."""
    return ranking_metrics(recommended, relevant, k, per_user)["hit_rate"]


def _hits(recommended, relevant, k: int) -> tuple[np.ndarray, np.ndarray]:
    """bool[n_users, k] (slot holds a relevant item) and int64[n_users] (number relevant)."""
    if isinstance(relevant, Interactions):
        relevant = relevant.to_csr()
    elif not sp.issparse(relevant):
        raise TypeError("relevant must be a scipy.sparse matrix or Interactions, got "
                        f"{type(relevant).__name__}")
    relevant = sp.csr_matrix(relevant)
    if not relevant.has_canonical_format:
        # Sorted, duplicate-free rows make the (user, item) keys below sorted and unique.
        relevant = relevant.copy()
        relevant.sum_duplicates()
    n_users, n_items = relevant.shape
    recommended = np.asarray(recommended)
    if recommended.ndim != 2 or recommended.dtype.kind not in "iu":
        raise ValueError("recommended must be a 2-D integer array [n_users, K], got "
                         f"{recommended.dtype} with shape {recommended.shape}")
    if recommended.shape[0] != n_users:
        raise ValueError(f"recommended has {recommended.shape[0]} rows but relevant has "
                         f"{n_users} users")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) \
            or not 1 <= k <= recommended.shape[1]:
        raise ValueError(f"k must be an integer in [1, {recommended.shape[1]}] (the number of "
                         f"recommended columns), got {k!r}")
    top = recommended[:, :k].astype(np.int64)
    if np.any((top < -1) | (top >= n_items)):
        raise ValueError(f"recommended items must be in [0, {n_items}) or -1 for an empty slot")
    ranked = np.sort(top, axis=1)
    repeated = (ranked[:, 1:] == ranked[:, :-1]) & (ranked[:, 1:] >= 0)
    if repeated.any():
        row = int(np.argmax(repeated.any(axis=1)))
        raise ValueError(f"recommended row {row} repeats an item in its top {k}")
    n_relevant = np.diff(relevant.indptr).astype(np.int64)
    if not n_relevant.any():
        raise ValueError("no user has a relevant item")
    keys = np.repeat(np.arange(n_users, dtype=np.int64), n_relevant) * n_items + relevant.indices
    queries = np.arange(n_users, dtype=np.int64)[:, None] * n_items + top
    position = np.minimum(np.searchsorted(keys, queries), keys.shape[0] - 1)
    hits = (keys[position] == queries) & (top >= 0)
    return hits, n_relevant


__all__ = ["hit_rate_at_k", "mae", "ndcg_at_k", "precision_at_k", "ranking_metrics",
           "recall_at_k", "rmse"]
