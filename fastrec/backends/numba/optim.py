"""Numba optimiser kernels and the mirror of ``csrc/include/fastrec/optim.h`` (same names).

Scalar steps return the new values instead of writing through references. Dense and sparse
(lazy, rows touched by a batch) steps follow ``fastrec.backends._contract``.

Kernels use ``error_model="numpy"``: IEEE division as in C (no ZeroDivisionError check per
division, which would keep the optimiser loops scalar).
"""

import math

import numpy as np
from numba import njit, prange

from fastrec.backends.numba.threads import thread_limit


@njit(inline="always", cache=True, error_model="numpy")
def adam_step_size(lr, beta1, step):
    return lr / (1.0 - beta1 ** float(step))


@njit(inline="always", cache=True, error_model="numpy")
def adam_inv_sqrt_bc2(beta2, step):
    return 1.0 / math.sqrt(1.0 - beta2 ** float(step))


@njit(inline="always", cache=True, error_model="numpy")
def adam_update(w, m, v, g, step_size, inv_sqrt_bc2, beta1, beta2, eps):
    """Returns the new (w, m, v)."""
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    return w - step_size * m / (np.sqrt(v) * inv_sqrt_bc2 + eps), m, v


@njit(inline="always", cache=True, error_model="numpy")
def adagrad_update(w, acc, g, lr, eps):
    """Returns the new (w, acc)."""
    acc = acc + g * g
    return w - lr * g / (np.sqrt(acc) + eps), acc


@njit(inline="always", cache=True)
def adagrad_momentum_update(w, acc, vel, g, lr, momentum, eps):
    """Returns the new (w, acc, vel)."""
    acc = acc + g * g
    vel = momentum * vel - lr * g / (np.sqrt(acc) + eps)
    return w + vel, acc, vel


@njit(inline="always", cache=True, error_model="numpy")
def sgd_update(w, g, lr):
    return w - lr * g


@njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def _adam_dense(params, grads, m, v, step_size, inv_sqrt_bc2, beta1, beta2, eps):
    for j in prange(params.shape[0]):
        params[j], m[j], v[j] = adam_update(params[j], m[j], v[j], grads[j], step_size,
                                            inv_sqrt_bc2, beta1, beta2, eps)


def adam_step(params, grads, m, v, step, lr, beta1=0.9, beta2=0.999, eps=1e-8, n_threads=1):
    """See ``fastrec.backends._contract.ADAM_STEP_DOC``."""
    cast = params.dtype.type
    with thread_limit(n_threads):
        _adam_dense(params, grads, m, v, cast(adam_step_size(lr, beta1, step)),
                    cast(adam_inv_sqrt_bc2(beta2, step)), cast(beta1), cast(beta2), cast(eps))


@njit(cache=True, nogil=True, error_model="numpy")
def link_rows(rows, stamp, tail, nxt, leaders, batch_id):
    """Group a batch's duplicate rows in O(batch): ``leaders[:n]`` (returned n) are the first
    occurrence of each distinct row and ``nxt`` chains the later ones in batch order.
    ``stamp`` int64[n_rows] must hold values != batch_id for rows not linked yet."""
    n_leaders = 0
    for b in range(rows.shape[0]):
        r = rows[b]
        nxt[b] = -1
        if stamp[r] != batch_id:
            stamp[r] = batch_id
            leaders[n_leaders] = b
            n_leaders += 1
        else:
            nxt[tail[r]] = b
        tail[r] = b
    return n_leaders


@njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def sparse_apply(table, rows, row_grads, state1, state2, nxt, leaders, n_leaders, kind,
                 step_size, inv_sqrt_bc2, beta1, beta2, eps):
    """One update per distinct row with the sum of its gradients (summed in batch order, into
    the leader's row of ``row_grads``). kind 0: lazy Adam (state1 = m, state2 = v); 1: Adagrad
    (state1 = accumulator, step_size = lr); 2: SGD (step_size = lr)."""
    d = table.shape[1]
    for j in prange(n_leaders):
        b0 = leaders[j]
        g = row_grads[b0]
        b = nxt[b0]
        while b >= 0:
            for f in range(d):
                g[f] += row_grads[b, f]
            b = nxt[b]
        r = rows[b0]
        w = table[r]
        if kind == 0:
            m = state1[r]
            v = state2[r]
            for f in range(d):
                w[f], m[f], v[f] = adam_update(w[f], m[f], v[f], g[f], step_size, inv_sqrt_bc2,
                                               beta1, beta2, eps)
        elif kind == 1:
            acc = state1[r]
            for f in range(d):
                w[f], acc[f] = adagrad_update(w[f], acc[f], g[f], step_size, eps)
        else:
            for f in range(d):
                w[f] = sgd_update(w[f], g[f], step_size)


def _sparse_step(table, rows, row_grads, state1, state2, kind, step_size, inv_sqrt_bc2, beta1,
                 beta2, eps, n_threads):
    n = rows.shape[0]
    stamp = np.full(table.shape[0], -1, np.int64)
    tail = np.empty(table.shape[0], np.int64)
    nxt = np.empty(n, np.int64)
    leaders = np.empty(n, np.int64)
    grads = row_grads.copy()
    n_leaders = link_rows(rows, stamp, tail, nxt, leaders, 0)
    cast = table.dtype.type
    with thread_limit(n_threads):
        sparse_apply(table, rows, grads, state1, state2, nxt, leaders, n_leaders, kind,
                     cast(step_size), cast(inv_sqrt_bc2), cast(beta1), cast(beta2), cast(eps))


def sparse_adam_step(table, rows, row_grads, m, v, step, lr, beta1=0.9, beta2=0.999, eps=1e-8,
                     n_threads=1):
    """See ``fastrec.backends._contract.SPARSE_ADAM_STEP_DOC``."""
    _sparse_step(table, rows, row_grads, m, v, 0, adam_step_size(lr, beta1, step),
                 adam_inv_sqrt_bc2(beta2, step), beta1, beta2, eps, n_threads)


def sparse_adagrad_step(table, rows, row_grads, acc, lr, eps=1e-10, n_threads=1):
    """See ``fastrec.backends._contract.SPARSE_ADAGRAD_STEP_DOC``."""
    _sparse_step(table, rows, row_grads, acc, acc, 1, lr, 1.0, 0.0, 0.0, eps, n_threads)
