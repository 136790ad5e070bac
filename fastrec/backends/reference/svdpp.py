"""Reference SVD++ epoch: sparse-matrix products for the implicit part, one rating at a time for
the SGD part, in schedule order (the rule is stated in ``csrc/include/fastrec/svdpp.h``)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from fastrec.backends.reference.sgd import bias_step, schedule_order


def svdpp_epoch(users, items, ratings, block_ptr, schedule, user_ptr, user_items, item_ptr,
                item_users, user_factors, item_factors, implicit_factors, user_bias, item_bias,
                global_mean, lr, lr_bias, reg, reg_bias, reg_implicit, biased,
                n_threads=1) -> float:
    """See ``fastrec.backends._contract.SVDPP_EPOCH_DOC``. Ignores ``item_ptr``/``item_users``
    (the transpose of the user CSR is taken instead)."""
    dtype = user_factors.dtype.type
    n_users, n_items = user_factors.shape[0], item_factors.shape[0]
    mu, lr, lr_bias = dtype(global_mean), dtype(lr), dtype(lr_bias)
    reg, reg_bias, reg_implicit = dtype(reg), dtype(reg_bias), dtype(reg_implicit)
    implicit = sp.csr_matrix((np.ones(user_items.shape[0]), user_items, user_ptr),
                             shape=(n_users, n_items))
    counts = np.diff(user_ptr)
    norm = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(counts, 1)), 0.0)
    # Phase 1: z_u = |N(u)|^-1/2 sum_{j in N(u)} y_j, from y at the start of the epoch.
    sums = (norm[:, None] * (implicit @ implicit_factors.astype(np.float64))).astype(dtype)
    grads = np.zeros_like(user_factors)
    sse = 0.0
    # Phase 2: SGD in schedule order; g_u collects e q_i.
    for n in schedule_order(schedule, block_ptr):
        u, i = users[n], items[n]
        p, q, z = user_factors[u].copy(), item_factors[i].copy(), sums[u].copy()
        err = dtype(ratings[n] - (mu + user_bias[u] + item_bias[i] + np.dot(p + z, q)))
        sse += float(err) ** 2
        if biased:
            bias_step(user_bias, item_bias, u, i, err, lr_bias, reg_bias)
        grads[u] += err * q
        user_factors[u] = p + lr * (err * q - reg * p)
        item_factors[i] = q + lr * (err * (p + z) - reg * q)
        if counts[u]:  # u's own y steps move its cached sum (Koren's update, summed)
            sums[u] = z + lr * err * q
    # Phase 3: y_j = (y_j + lr sum_u norm_u g_u) / (1 + lr reg_implicit n_j).
    gradient = implicit.T @ (norm[:, None] * grads.astype(np.float64))
    raters = np.asarray(implicit.sum(axis=0)).ravel()
    implicit_factors[...] = ((implicit_factors + float(lr) * gradient)
                             / (1.0 + float(lr) * float(reg_implicit) * raters)[:, None])
    return sse
