"""Reference SGD epoch: one rating at a time, in schedule order, exactly as the textbook states.

It deliberately ignores parallelism: strata, then blocks, then ratings, strictly in sequence.
"""

from __future__ import annotations

import numpy as np


def sgd_epoch(users, items, ratings, block_ptr, schedule, user_factors, item_factors,
              user_bias, item_bias, global_mean, lr, lr_bias, reg, reg_bias, biased,
              n_threads=1) -> float:
    """See ``fastrec.backends._contract.SGD_EPOCH_DOC``."""
    dtype = user_factors.dtype.type
    mu, lr, lr_bias = dtype(global_mean), dtype(lr), dtype(lr_bias)
    reg, reg_bias = dtype(reg), dtype(reg_bias)
    sse = 0.0
    for block in schedule.ravel():
        if block < 0:
            continue
        for n in range(block_ptr[block], block_ptr[block + 1]):
            u, i = users[n], items[n]
            p, q = user_factors[u].copy(), item_factors[i].copy()
            prediction = mu + user_bias[u] + item_bias[i] + np.dot(p, q)
            err = dtype(ratings[n] - prediction)
            sse += float(err) ** 2
            if biased:
                user_bias[u] += lr_bias * (err - reg_bias * user_bias[u])
                item_bias[i] += lr_bias * (err - reg_bias * item_bias[i])
            user_factors[u] = p + lr * (err * q - reg * p)
            item_factors[i] = q + lr * (err * p - reg * q)
    return sse
