"""Numba SGD epoch: the Cython kernel's loop and barrier-free dataflow schedule, in Numba.

Rows are updated with explicit 16-lane vector IR (``simd``) in the header's order of operations,
the rows of the rating 8 ahead are prefetched, and blocks are handed out in schedule order to
workers that wait only for the previous block on the same user block and item block, so the
result is the sequential schedule's bit for bit at any thread count (and Cython's).
"""

import numpy as np
from numba import njit, prange

from fastrec.backends.numba.scalar import sgd_bias_step, sgd_error, sgd_shrink, sgd_step
from fastrec.backends.numba.simd import (
    atomic_fetch_add,
    atomic_load_acquire,
    atomic_store_release,
    prefetch_row,
    table_factor_step,
    table_lane_dot,
    yield_cpu,
)
from fastrec.backends.numba.threads import thread_limit

PREFETCH_DISTANCE = 8  # sgd_cpu.h's SGD_PREFETCH_DISTANCE
_SPINS_BEFORE_YIELD = 64


@njit(cache=True, nogil=True)
def _sgd_block(users, items, ratings, begin, end, P, Q, bu, bi, mu, lr, lr_b, reg, reg_b, biased):
    sse = 0.0
    shrink = sgd_shrink(lr, reg)
    for n in range(begin, end):
        if n + PREFETCH_DISTANCE < end:
            prefetch_row(P, users[n + PREFETCH_DISTANCE])
            prefetch_row(Q, items[n + PREFETCH_DISTANCE])
        u = users[n]
        i = items[n]
        err = sgd_error(ratings[n], mu, bu[u], bi[i], table_lane_dot(P, u, Q, i))
        sse += np.float64(err) * np.float64(err)  # float() keeps float32 in Numba
        if biased:
            bu[u] = sgd_bias_step(bu[u], err, lr_b, reg_b)
            bi[i] = sgd_bias_step(bi[i], err, lr_b, reg_b)
        table_factor_step(P, u, Q, i, sgd_step(err, lr), shrink)
    return sse


@njit(cache=True, nogil=True)
def _predecessors(tickets, grid):
    """For each ticket, the previous ticket on its user block and on its item block (or -1)."""
    n = tickets.shape[0]
    after = np.full((2, n), -1, np.int64)
    last_row = np.full(grid, -1, np.int64)
    last_col = np.full(grid, -1, np.int64)
    for t in range(n):
        b = tickets[t]
        if b < 0:
            continue
        after[0, t] = last_row[b // grid]
        after[1, t] = last_col[b % grid]
        last_row[b // grid] = t
        last_col[b % grid] = t
    return after


@njit(cache=True, nogil=True)
def _ready(done, after, t):
    for side in range(2):
        prev = after[side, t]
        if prev >= 0 and atomic_load_acquire(done, prev) == 0:
            return False
    return True


@njit(cache=True, parallel=True, nogil=True)
def _sgd_epoch(users, items, ratings, block_ptr, tickets, grid, P, Q, bu, bi, mu, lr, lr_b, reg,
               reg_b, biased, ticket_sse, n_workers):
    n_tickets = tickets.shape[0]
    after = _predecessors(tickets, grid)
    done = np.zeros(n_tickets, np.int64)
    next_ticket = np.zeros(1, np.int64)
    # One long-lived loop per worker. A worker only ever waits for smaller tickets, which are
    # held by running workers, so this finishes even if the workers happen to run one by one.
    for _ in prange(n_workers):
        while True:
            t = atomic_fetch_add(next_ticket, 0, 1)
            if t >= n_tickets:
                break
            b = tickets[t]
            if b >= 0:
                spins = 0
                while not _ready(done, after, t):
                    spins += 1
                    if spins > _SPINS_BEFORE_YIELD:
                        yield_cpu()
                if block_ptr[b + 1] > block_ptr[b]:
                    ticket_sse[t] = _sgd_block(users, items, ratings, block_ptr[b],
                                               block_ptr[b + 1], P, Q, bu, bi, mu, lr, lr_b, reg,
                                               reg_b, biased)
            atomic_store_release(done, t, 1)


def sgd_epoch(users, items, ratings, block_ptr, schedule, user_factors, item_factors, user_bias,
              item_bias, global_mean, lr, lr_bias, reg, reg_bias, biased, n_threads=1) -> float:
    """See ``fastrec.backends._contract.SGD_EPOCH_DOC``."""
    cast = user_factors.dtype.type  # scalars in T, so float32 math stays float32 as in C
    ticket_sse = np.zeros(schedule.size, dtype=np.float64)
    grid = int(round((block_ptr.shape[0] - 1) ** 0.5))
    with thread_limit(n_threads) as workers:
        _sgd_epoch(users, items, ratings, block_ptr, np.ascontiguousarray(schedule).reshape(-1),
                   grid, user_factors, item_factors, user_bias, item_bias, cast(global_mean),
                   cast(lr), cast(lr_bias), cast(reg), cast(reg_bias), bool(biased), ticket_sse,
                   workers)
    return float(np.sum(ticket_sse))
