"""Negative sampling on the counter-based RNG, vectorised on the host: NCF's evaluation
negatives (the same draws as the kernels' training negatives) and GRU4Rec's alias-table draws.

The scalar transcriptions in ``fastrec.backends.reference`` are the oracle these are tested
against; production code uses these.
"""

from __future__ import annotations

import numpy as np

from fastrec._algorithms.rng import rng_at, rng_below, rng_key

# Rejections before the last draw is kept (NCF_NEGATIVE_TRIES in csrc/include/fastrec/ncf.h).
NCF_NEGATIVE_TRIES = 64


def draw_negatives(pos_users, seen_indptr, seen_indices, n_items, n_negatives, seed, epoch,
                   positives=None) -> np.ndarray:
    """The negatives of the given positives: int64[len(positives), n_negatives].

    pos_users : I[n_pos] the user of each positive; ``seen_indptr`` int64[n_users + 1] and
    ``seen_indices`` int64[nnz] (sorted within each row) the items each user has seen.
    Negative ``j`` of positive ``p`` is uniform over the items, drawn at index
    ``(p * n_negatives + j) * NCF_NEGATIVE_TRIES + attempt`` of stream ``rng_key(seed, epoch)``;
    a seen item is rejected, and after NCF_NEGATIVE_TRIES rejections the last draw is kept.
    ``positives`` are positive indices (default all). All pending draws of one attempt are made
    at once, and a seen item is found by binary search on ``user * n_items + item`` keys.
    """
    p = np.arange(pos_users.shape[0]) if positives is None else np.asarray(positives)
    users = pos_users[p].astype(np.int64)
    key = rng_key(seed, epoch)
    slot = p[:, None].astype(np.uint64) * np.uint64(n_negatives) + np.arange(
        n_negatives, dtype=np.uint64)[None, :]
    chosen = np.zeros(slot.shape, np.int64)
    pending = np.ones(slot.shape, bool)
    user_of = np.broadcast_to(users[:, None], slot.shape)
    seen_keys = (np.repeat(np.arange(seen_indptr.shape[0] - 1), np.diff(seen_indptr)) * n_items
                 + seen_indices)
    for attempt in range(NCF_NEGATIVE_TRIES):
        idx = np.nonzero(pending)
        draws = rng_below(rng_at(key, slot[idx] * np.uint64(NCF_NEGATIVE_TRIES)
                                 + np.uint64(attempt)), n_items).astype(np.int64)
        chosen[idx] = draws
        keys = user_of[idx] * n_items + draws
        pos = np.minimum(np.searchsorted(seen_keys, keys), max(seen_keys.shape[0] - 1, 0))
        rejected = seen_keys[pos] == keys if seen_keys.shape[0] else np.zeros(keys.shape, bool)
        pending[idx] = rejected
        if not pending.any():
            break
    return chosen


def sample_negatives(prob, alias, n, seed, stream, first_counter) -> np.ndarray:
    """``n`` items drawn from the alias table (prob float64[n_items], alias I[n_items]) at
    indices ``first_counter ...`` of stream ``rng_key(seed, stream)``, as ``rng_alias_draw`` in
    gru.h: ``rng_below`` picks the bucket from the high 32 bits, the low 32 bits are the coin.
    Returns int64[n]."""
    bits = rng_at(rng_key(seed, stream), first_counter + np.arange(n, dtype=np.uint64))
    bucket = rng_below(bits, prob.shape[0]).astype(np.int64)
    coin = (bits & np.uint64(0xFFFFFFFF)).astype(np.float64) * (1.0 / 4294967296.0)
    return np.where(coin < prob[bucket], bucket, alias[bucket]).astype(np.int64)
