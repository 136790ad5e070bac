"""Small random SVD++ problems shared by the kernel, CUDA-emulator and model tests."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from fastrec._algorithms.sgd_schedule import BlockedRatings


def implicit_csr(users, items, n_users, n_items, index_dtype):
    """(user_ptr, user_items, item_ptr, item_users) of the distinct pairs."""
    m = sp.csr_matrix((np.ones(users.shape[0]), (users, items)), shape=(n_users, n_items))
    m.sum_duplicates()
    t = m.T.tocsr()
    t.sort_indices()
    return (m.indptr.astype(np.int64), m.indices.astype(index_dtype),
            t.indptr.astype(np.int64), t.indices.astype(index_dtype))


def make_svdpp_problem(seed=0, n_users=37, n_items=23, nnz=400, k=5, n_blocks=4,
                       dtype=np.float64, index_dtype=np.int32, implicit="rated"):
    """``(data, state, scalars)``: ``data`` the kernel's index arrays in contract order (ratings
    blocked as MF's, schedule for one epoch), ``state`` the five arrays it updates, ``scalars``
    (global_mean, lr, lr_bias, reg, reg_bias, reg_implicit). N(u) is the rated items
    (``implicit="rated"``), those plus 50 random pairs (``"more"``), random pairs unrelated to the
    ratings that leave some users empty (``"random"``) or empty for everyone (``"none"``)."""
    rng = np.random.default_rng(seed)
    pairs = rng.choice(n_users * n_items, size=nnz, replace=False)
    users, items = (pairs // n_items).astype(index_dtype), (pairs % n_items).astype(index_dtype)
    ratings = rng.uniform(1, 5, nnz).astype(dtype)
    blocked = BlockedRatings.build(users, items, ratings, n_users, n_items, n_blocks, rng)
    pairs = {"rated": 0, "more": 50, "random": n_users, "none": 0}[implicit]
    extra = rng.choice(n_users * n_items, size=pairs, replace=False)
    rated = implicit in ("rated", "more")
    implicit = implicit_csr(np.concatenate([blocked.users[:nnz * rated], extra // n_items]),
                            np.concatenate([blocked.items[:nnz * rated], extra % n_items]),
                            n_users, n_items, index_dtype)
    data = {"users": blocked.users, "items": blocked.items, "ratings": blocked.ratings,
            "block_ptr": blocked.block_ptr, "schedule": blocked.epoch_schedule(rng),
            "user_ptr": implicit[0], "user_items": implicit[1], "item_ptr": implicit[2],
            "item_users": implicit[3]}
    state = {"user_factors": rng.normal(0, 0.1, (n_users, k)).astype(dtype),
             "item_factors": rng.normal(0, 0.1, (n_items, k)).astype(dtype),
             "implicit_factors": rng.normal(0, 0.1, (n_items, k)).astype(dtype),
             "user_bias": rng.normal(0, 0.1, n_users).astype(dtype),
             "item_bias": rng.normal(0, 0.1, n_items).astype(dtype)}
    scalars = (3.0, 0.05, 0.03, 0.02, 0.01, 0.1)
    return data, state, scalars


def run_epoch(kernel, data, state, scalars, biased=True, n_threads=2):
    """One epoch on copies of ``state``: ``(sse, state after)``."""
    out = {name: a.copy() for name, a in state.items()}
    sse = kernel(*data.values(), *out.values(), *scalars, biased, n_threads)
    return sse, out
