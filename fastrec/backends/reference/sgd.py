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
    for n in schedule_order(schedule, block_ptr):
        u, i = users[n], items[n]
        p, q = user_factors[u].copy(), item_factors[i].copy()
        prediction = mu + user_bias[u] + item_bias[i] + np.dot(p, q)
        err = dtype(ratings[n] - prediction)
        sse += float(err) ** 2
        if biased:
            bias_step(user_bias, item_bias, u, i, err, lr_bias, reg_bias)
        user_factors[u] = p + lr * (err * q - reg * p)
        item_factors[i] = q + lr * (err * p - reg * q)
    return sse


def schedule_order(schedule, block_ptr):
    """Positions of the ratings in the order an epoch visits them: strata, then blocks, then
    each block's ratings as stored (slots of -1 hold no block)."""
    for block in schedule.ravel():
        if block >= 0:
            yield from range(block_ptr[block], block_ptr[block + 1])


def bias_step(user_bias, item_bias, u, i, err, lr_bias, reg_bias) -> None:
    """The biases of rating (u, i) after its error ``err``: b += lr_bias (err - reg_bias b)."""
    user_bias[u] += lr_bias * (err - reg_bias * user_bias[u])
    item_bias[i] += lr_bias * (err - reg_bias * item_bias[i])
