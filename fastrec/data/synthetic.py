"""Deterministic synthetic explicit ratings: power-law popularity and a planted low-rank signal.

``rating = mu + b_u + b_i + p_u . q_i + noise`` with ``noise ~ N(0, noise_std)``, so a model that
recovers the signal has a test RMSE close to ``noise_std`` (the noise floor).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastrec.data.interactions import Interactions


@dataclass(frozen=True)
class SyntheticRatings:
    interactions: Interactions
    noise_std: float
    user_factors: np.ndarray  # float64[n_users, rank]
    item_factors: np.ndarray  # float64[n_items, rank]

    @property
    def noise_floor(self) -> float:
        """The RMSE of the true model on fresh ratings."""
        return self.noise_std


def _power_law(n: int, exponent: float, rng) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return rng.permutation(weights / weights.sum())


def synthetic_ratings(n_users: int = 10_000, n_items: int = 2_000, n_ratings: int = 500_000,
                      rank: int = 8, noise_std: float = 0.5, item_exponent: float = 0.8,
                      user_exponent: float = 0.5, global_mean: float = 3.5,
                      seed: int = 0, dtype=np.float32) -> SyntheticRatings:
    """Draw ``n_ratings`` distinct (user, item) pairs (popular items and active users follow a
    power law with the given exponents) and rate them from a planted rank-``rank`` model."""
    if n_ratings > n_users * n_items // 2:
        raise ValueError("n_ratings must be at most half of n_users * n_items")
    rng = np.random.default_rng(seed)
    user_p = _power_law(n_users, user_exponent, rng)
    item_p = _power_law(n_items, item_exponent, rng)
    pairs = np.empty(0, dtype=np.int64)
    while pairs.shape[0] < n_ratings:
        draw = int((n_ratings - pairs.shape[0]) * 1.3) + 16
        u = rng.choice(n_users, draw, p=user_p)
        i = rng.choice(n_items, draw, p=item_p)
        new = u.astype(np.int64) * n_items + i
        _, first = np.unique(np.concatenate([pairs, new]), return_index=True)
        pairs = np.concatenate([pairs, new])[np.sort(first)]
    pairs = pairs[:n_ratings]
    users, items = pairs // n_items, pairs % n_items
    scale = 1.0 / np.sqrt(rank)
    user_factors = rng.normal(0.0, scale, (n_users, rank))
    item_factors = rng.normal(0.0, 1.0, (n_items, rank))
    user_bias = rng.normal(0.0, 0.3, n_users)
    item_bias = rng.normal(0.0, 0.5, n_items)
    signal = np.einsum("nk,nk->n", user_factors[users], item_factors[items])
    ratings = global_mean + user_bias[users] + item_bias[items] + signal
    ratings += rng.normal(0.0, noise_std, n_ratings)
    interactions = Interactions.from_indices(users, items, ratings, (n_users, n_items), dtype)
    return SyntheticRatings(interactions, noise_std, user_factors, item_factors)
