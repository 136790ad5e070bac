"""Top-n per row by a full stable sort: the oracle for the compiled top-n kernels."""

import numpy as np


def topn_scores(scores, n, exclude_indptr, exclude_indices, exclude_rows):
    """Best ``n`` column indices per row of ``scores`` T[b, m], best first (ties: lower index
    first), skipping NaN scores and row r's excluded columns
    ``exclude_indices[exclude_indptr[u]:exclude_indptr[u + 1]]``, ``u = exclude_rows[r]``
    (``exclude_rows`` empty: none). Returns ``(ids int64[b, n], scores T[b, n])`` padded with
    id -1 and score -inf. ``scores`` is not modified."""
    b, m = scores.shape
    ids = np.full((b, n), -1, np.int64)
    best = np.full((b, n), -np.inf, scores.dtype)
    for r in range(b):
        row = scores[r].copy()
        if len(exclude_rows):
            u = exclude_rows[r]
            excluded = exclude_indices[exclude_indptr[u]:exclude_indptr[u + 1]]
            row[excluded[(excluded >= 0) & (excluded < m)]] = np.nan
        eligible = np.flatnonzero(~np.isnan(row))
        order = eligible[np.lexsort((eligible, -row[eligible]))][:n]
        ids[r, :order.shape[0]] = order
        best[r, :order.shape[0]] = row[order]
    return ids, best


def topn_factors(query, item_factors, item_bias, n, exclude_indptr, exclude_indices,
                 exclude_rows):
    """:func:`topn_scores` of ``query @ item_factors.T (+ item_bias)``; query T[b, k],
    item_factors T[m, k], item_bias T[m] or None."""
    scores = query @ item_factors.T
    if item_bias is not None:
        scores = scores + item_bias
    return topn_scores(scores, n, exclude_indptr, exclude_indices, exclude_rows)
