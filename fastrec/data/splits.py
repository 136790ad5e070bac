"""Train/test splits of an :class:`Interactions`.

Both halves are built with :meth:`Interactions.subset`, so they share the input's id maps: an index
means the same user or item in train, test and the full data, and each half keeps the input's
order of observations.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from fastrec.data.interactions import Interactions


def random_split(interactions: Interactions, test_size: float = 0.2,
                 random_state: int | np.random.Generator | None = None,
                 ) -> tuple[Interactions, Interactions]:
    """Put a uniformly random ``round(test_size * nnz)`` observations in test, the rest in train.

    The same ``random_state`` (an int seed) gives the same split. Users or items seen only in test
    are possible; the shared id maps keep their indices valid.

    Returns
    -------
    (train, test)
    """
    _check_not_empty(interactions)
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    n_test = int(round(test_size * interactions.nnz))
    if not 0 < n_test < interactions.nnz:
        raise ValueError(f"test_size={test_size} of {interactions.nnz} interactions leaves the "
                         "train or the test set empty")
    rng = np.random.default_rng(random_state)
    test = np.zeros(interactions.nnz, dtype=bool)
    test[rng.permutation(interactions.nnz)[:n_test]] = True
    return interactions.subset(~test), interactions.subset(test)


def leave_last_out(interactions: Interactions, n: int = 1,
                   by: Literal["timestamp", "order"] = "timestamp",
                   ) -> tuple[Interactions, Interactions]:
    """Put each user's latest ``n`` observations in test, the rest in train.

    ``by="timestamp"`` orders each user's observations by timestamp; equal timestamps, and data
    without timestamps, fall back to the stored order (a later position is later in time).
    ``by="order"`` uses the stored order alone. Users with ``n`` or fewer observations stay
    wholly in train, so every test user also has training data.

    Returns
    -------
    (train, test)
    """
    _check_not_empty(interactions)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if by not in ("timestamp", "order"):
        raise ValueError(f"by must be 'timestamp' or 'order', got {by!r}")
    users = interactions.users
    if by == "timestamp" and interactions.timestamps is not None:
        # lexsort is stable, so equal (user, timestamp) keys keep their stored order.
        order = np.lexsort((interactions.timestamps, users))
    else:
        order = np.argsort(users, kind="stable")
    counts = np.bincount(users, minlength=interactions.n_users)
    group_end = np.cumsum(counts)
    sorted_users = users[order]
    # 0 for a user's latest observation, 1 for the one before, ...
    from_end = group_end[sorted_users] - 1 - np.arange(interactions.nnz)
    test = np.zeros(interactions.nnz, dtype=bool)
    test[order] = (from_end < n) & (counts[sorted_users] > n)
    return interactions.subset(~test), interactions.subset(test)


def _check_not_empty(interactions: Interactions) -> None:
    if interactions.nnz == 0:
        raise ValueError("cannot split empty interactions")


__all__ = ["leave_last_out", "random_split"]
