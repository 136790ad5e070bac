"""Numba SVD++ epoch: the three phases of ``csrc/include/fastrec/svdpp.h`` with the Cython
kernel's loops and summation orders (16-lane dot, no FMA contraction), so both agree bit for bit.

Scalars that C computes in ``T`` from integers or constants (the user norms, the phase-3
denominators, the shrink factor) are computed here with numpy in ``T`` and passed in: a Numba
expression mixing a float32 with an integer literal would be evaluated in float64.
"""

import numpy as np
from numba import njit, prange

from fastrec.backends.numba.scalar import SGD_DOT_LANES, sgd_bias_step, sgd_error, sgd_step
from fastrec.backends.numba.threads import thread_limit

_ROW_CHUNK = 64  # svdpp_cpu.h's SVDPP_ROW_CHUNK


@njit(inline="always", cache=True)
def svdpp_lane_dot(p, z, q, acc):
    """(p + z) . q in sgd_lane_dot's order; ``acc`` is T[SGD_DOT_LANES] scratch."""
    k = p.shape[0]
    for lane in range(SGD_DOT_LANES):
        acc[lane] = 0
    j = 0
    while j + SGD_DOT_LANES <= k:
        for lane in range(SGD_DOT_LANES):
            acc[lane] += (p[j + lane] + z[j + lane]) * q[j + lane]
        j += SGD_DOT_LANES
    lane = 0
    while j < k:
        acc[lane] += (p[j] + z[j]) * q[j]
        j += 1
        lane += 1
    for width in (8, 4, 2):
        for lane in range(width):
            acc[lane] += acc[lane + width]
    return acc[0] + acc[1]


@njit(cache=True, nogil=True)
def _svdpp_block(users, items, ratings, begin, end, P, Q, bu, bi, Z, G, norms, mu, lr, lr_b,
                 reg_b, shrink, zero, biased):
    acc = np.empty(SGD_DOT_LANES, P.dtype)
    k = P.shape[1]
    sse = 0.0
    for n in range(begin, end):
        u = users[n]
        i = items[n]
        p, q, z, g = P[u], Q[i], Z[u], G[u]
        err = sgd_error(ratings[n], mu, bu[u], bi[i], svdpp_lane_dot(p, z, q, acc))
        sse += np.float64(err) * np.float64(err)
        if biased:
            bu[u] = sgd_bias_step(bu[u], err, lr_b, reg_b)
            bi[i] = sgd_bias_step(bi[i], err, lr_b, reg_b)
        step = sgd_step(err, lr)
        z_step = step if norms[u] != zero else zero  # svdpp_implicit_sum_step
        for f in range(k):
            pz = p[f] + z[f]
            g[f] += err * q[f]
            p[f] = shrink * p[f] + step * q[f]
            z[f] = z[f] + z_step * q[f]
            q[f] = shrink * q[f] + step * pz
    return sse


@njit(cache=True, parallel=True, nogil=True)
def _svdpp_epoch(users, items, ratings, block_ptr, schedule, user_ptr, user_items, item_ptr,
                 item_users, P, Q, Y, bu, bi, norms, denominators, Z, G, mu, lr, lr_b, reg_b,
                 shrink, zero, biased, slot_sse):
    n_users, k = P.shape
    n_items = Q.shape[0]
    for c in prange((n_users + _ROW_CHUNK - 1) // _ROW_CHUNK):
        for u in range(c * _ROW_CHUNK, min((c + 1) * _ROW_CHUNK, n_users)):
            for f in range(k):
                Z[u, f] = zero
                G[u, f] = zero
            for n in range(user_ptr[u], user_ptr[u + 1]):
                j = user_items[n]
                for f in range(k):
                    Z[u, f] += Y[j, f]
            for f in range(k):
                Z[u, f] *= norms[u]
    n_strata, width = schedule.shape
    for s in range(n_strata):
        for b in prange(width):
            block = schedule[s, b]
            if block >= 0 and block_ptr[block + 1] > block_ptr[block]:
                slot_sse[s * width + b] = _svdpp_block(
                    users, items, ratings, block_ptr[block], block_ptr[block + 1], P, Q, bu, bi,
                    Z, G, norms, mu, lr, lr_b, reg_b, shrink, zero, biased)
    for c in prange((n_items + _ROW_CHUNK - 1) // _ROW_CHUNK):
        for j in range(c * _ROW_CHUNK, min((c + 1) * _ROW_CHUNK, n_items)):
            for f in range(k):
                grad = zero
                for n in range(item_ptr[j], item_ptr[j + 1]):
                    u = item_users[n]
                    grad += norms[u] * G[u, f]
                Y[j, f] = (Y[j, f] + lr * grad) / denominators[j]


def svdpp_epoch(users, items, ratings, block_ptr, schedule, user_ptr, user_items, item_ptr,
                item_users, user_factors, item_factors, implicit_factors, user_bias, item_bias,
                global_mean, lr, lr_bias, reg, reg_bias, reg_implicit, biased,
                n_threads=1) -> float:
    """See ``fastrec.backends._contract.SVDPP_EPOCH_DOC``."""
    cast = user_factors.dtype.type  # scalars in T, so float32 math stays float32 as in C
    counts = np.diff(user_ptr).astype(cast)
    with np.errstate(divide="ignore"):
        norms = np.where(counts > 0, cast(1) / np.sqrt(counts), cast(0)).astype(cast)
    # svdpp_implicit_denominator: 1 + (lr * reg_implicit) * n_j, in T.
    denominators = cast(1) + (cast(lr) * cast(reg_implicit)) * np.diff(item_ptr).astype(cast)
    slot_sse = np.zeros(schedule.size, dtype=np.float64)
    sums = np.empty_like(user_factors)
    grads = np.empty_like(user_factors)
    with thread_limit(n_threads):
        _svdpp_epoch(users, items, ratings, block_ptr, np.ascontiguousarray(schedule), user_ptr,
                     user_items, item_ptr, item_users, user_factors, item_factors,
                     implicit_factors, user_bias, item_bias, norms, denominators, sums, grads,
                     cast(global_mean), cast(lr), cast(lr_bias), cast(reg_bias),
                     cast(1) - cast(lr) * cast(reg), cast(0), bool(biased), slot_sse)
    return float(np.sum(slot_sse))
