"""Numba SGD epoch: the blocks of each stratum in parallel (prange), same schedule as Cython."""

import numpy as np
from numba import njit, prange

from fastrec.backends.numba.scalar import (
    SGD_DOT_LANES,
    sgd_bias_step,
    sgd_error,
    sgd_factor_step,
    sgd_lane_dot,
    sgd_shrink,
    sgd_step,
)
from fastrec.backends.numba.threads import thread_limit


@njit(cache=True, nogil=True)
def _sgd_block(users, items, ratings, begin, end, P, Q, bu, bi, mu, lr, lr_b, reg, reg_b, biased,
               acc):
    sse = 0.0
    k = P.shape[1]
    shrink = sgd_shrink(lr, reg)
    for n in range(begin, end):
        u = users[n]
        i = items[n]
        p = P[u]
        q = Q[i]
        err = sgd_error(ratings[n], mu, bu[u], bi[i], sgd_lane_dot(p, q, acc))
        sse += float(err) * float(err)
        if biased:
            bu[u] = sgd_bias_step(bu[u], err, lr_b, reg_b)
            bi[i] = sgd_bias_step(bi[i], err, lr_b, reg_b)
        step = sgd_step(err, lr)
        for f in range(k):
            p[f], q[f] = sgd_factor_step(p[f], q[f], step, shrink)
    return sse


@njit(cache=True, parallel=True, nogil=True)
def _sgd_epoch(users, items, ratings, block_ptr, schedule, P, Q, bu, bi, mu, lr, lr_b, reg, reg_b,
               biased, ticket_sse):
    n_strata, width = schedule.shape
    for s in range(n_strata):
        for b in prange(width):
            block = schedule[s, b]
            if block >= 0 and block_ptr[block + 1] > block_ptr[block]:
                acc = np.empty(SGD_DOT_LANES, P.dtype)
                ticket_sse[s * width + b] = _sgd_block(users, items, ratings, block_ptr[block],
                                              block_ptr[block + 1], P, Q, bu, bi, mu, lr, lr_b,
                                              reg, reg_b, biased, acc)


def sgd_epoch(users, items, ratings, block_ptr, schedule, user_factors, item_factors, user_bias,
              item_bias, global_mean, lr, lr_bias, reg, reg_bias, biased, n_threads=1) -> float:
    """See ``fastrec.backends._contract.SGD_EPOCH_DOC``."""
    cast = user_factors.dtype.type  # scalars in T, so float32 math stays float32 as in C
    ticket_sse = np.zeros(schedule.size, dtype=np.float64)
    with thread_limit(n_threads):
        _sgd_epoch(users, items, ratings, block_ptr, schedule, user_factors, item_factors,
                   user_bias, item_bias, cast(global_mean), cast(lr), cast(lr_bias), cast(reg),
                   cast(reg_bias), bool(biased), ticket_sse)
    return float(np.sum(ticket_sse))
