"""Numba NCF passes: the mirror of ``csrc/include/fastrec/ncf.h`` (same names) and the same
chunked forward/backward/epoch structure as ``ncf_cpu.h``; GEMMs are ``np.dot`` into
preallocated views (Numba calls scipy's BLAS), kept single-threaded while Numba's threads run.

Kernels use ``error_model="numpy"``: IEEE division as in C (no ZeroDivisionError check per
division, which would keep the optimiser loops scalar).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastrec.backends._blas import single_threaded_blas
from fastrec.backends._contract import OPT_ADAGRAD, OPT_ADAM, ncf_epoch_columns, ncf_n_rating
from fastrec.backends.numba.optim import link_rows
from fastrec.backends.numba.rng import rng_at, rng_below, rng_key
from fastrec.backends.numba.threads import thread_limit

NCF_LOSS_BCE, NCF_LOSS_SQUARED = 0, 1
NCF_NEGATIVE_TRIES = 64
NCF_CHUNK = 64
DENSE_BLOCK = 1024  # NCF_DENSE_BLOCK of ncf_cpu.h

# -- scalar mirror of ncf.h ------------------------------------------------------------------
@njit(inline="always", cache=True, error_model="numpy")
def ncf_relu(x):
    return x if x > 0 else 0.0


@njit(inline="always", cache=True, error_model="numpy")
def ncf_sigmoid(z):
    if z >= 0:
        return 1 / (1 + np.exp(-z))
    e = np.exp(z)
    return e / (1 + e)


@njit(inline="always", cache=True, error_model="numpy")
def ncf_loss(kind, z, y):
    if kind == NCF_LOSS_BCE:
        return (z if z > 0 else 0.0) - z * y + np.log1p(np.exp(-abs(z)))
    d = z - y
    return d * d


@njit(inline="always", cache=True, error_model="numpy")
def ncf_loss_grad(kind, z, y):
    if kind == NCF_LOSS_BCE:
        return ncf_sigmoid(z) - y
    return 2 * (z - y)


@njit(inline="always", cache=True, error_model="numpy")
def ncf_rating_loss(weight, pred, rating):
    d = pred - rating
    return weight * d * d


@njit(inline="always", cache=True, error_model="numpy")
def ncf_rating_grad(weight, pred, rating):
    return 2 * weight * (pred - rating)


@njit(inline="always", cache=True, error_model="numpy")
def ncf_negative_candidate(key, negative, attempt, n_items):
    return np.int64(rng_below(rng_at(key, np.uint64(negative) * np.uint64(NCF_NEGATIVE_TRIES)
                                      + np.uint64(attempt)), n_items))


# -- shape ------------------------------------------------------------------------------------
def _shape(layers, n_gmf):
    """(widths, w_off, act_sum, n_mlp, last, out_offset, n_dense, grad_width) as in NcfShape."""
    widths = np.ascontiguousarray(layers, dtype=np.int64)
    nw = widths.shape[0]
    w_off = np.zeros(max(nw, 1), np.int64)
    act_sum = np.zeros(max(nw, 1), np.int64)
    off = acc = 0
    for layer in range(nw):
        act_sum[layer] = acc
        acc += int(widths[layer])
        if layer >= 1:
            w_off[layer] = off
            off += int(widths[layer - 1]) * int(widths[layer]) + int(widths[layer])
    last = int(widths[-1]) if nw else 0
    n_mlp = int(widths[0]) // 2 if nw else 0
    return widths, w_off, act_sum, n_mlp, last, off, off + n_gmf + last + 1, acc


# -- chunk passes -----------------------------------------------------------------------------
@njit(cache=True, nogil=True, error_model="numpy")
def _forward_rows(users, items, batch, r0, n, U, V, dense, widths, w_off, act_sum, n_gmf, n_mlp,
                  last, out_offset, cache, logits):
    if n <= 0:
        return
    g, e = n_gmf, n_mlp
    nw = widths.shape[0]
    gmf = cache[r0 * g:(r0 + n) * g].reshape((n, g))
    for r in range(n):
        pu = U[users[r0 + r]]
        qi = V[items[r0 + r]]
        for f in range(g):
            gmf[r, f] = pu[f] * qi[f]
    x = gmf  # placeholder of the right type; replaced when there is an MLP
    if nw:
        start = batch * g + r0 * 2 * e
        x = cache[start:start + n * 2 * e].reshape((n, 2 * e))
        for r in range(n):
            pu = U[users[r0 + r]]
            qi = V[items[r0 + r]]
            for f in range(e):
                x[r, f] = pu[g + f]
                x[r, e + f] = qi[g + f]
        for layer in range(1, nw):
            fan_in, fan_out = widths[layer - 1], widths[layer]
            start = batch * (g + act_sum[layer]) + r0 * fan_out
            y = cache[start:start + n * fan_out].reshape((n, fan_out))
            w = dense[w_off[layer]:w_off[layer] + fan_in * fan_out].reshape((fan_in, fan_out))
            b = dense[w_off[layer] + fan_in * fan_out:w_off[layer] + fan_in * fan_out + fan_out]
            np.dot(x, w, y)
            for r in range(n):
                for j in range(fan_out):
                    y[r, j] = ncf_relu(y[r, j] + b[j])
            x = y
    h = dense[out_offset:out_offset + g + last + 1]
    for r in range(n):
        z = h[g + last]
        for f in range(g):
            z += h[f] * gmf[r, f]
        for j in range(last):
            z += h[g + j] * x[r, j]
        logits[r0 + r] = z


@njit(cache=True, nogil=True, error_model="numpy")
def _backward_rows(users, items, targets, batch, r0, n, U, V, dense, widths, w_off, act_sum,
                   n_gmf, n_mlp, last, out_offset, cache, logits, loss_kind, ratings,
                   rating_weights, rating_mean, rating_reg, n_rating, scale, grad_work, chunk_grad,
                   user_grads, item_grads):
    """ratings, rating_weights: T[batch] of the rating term, or empty arrays without one;
    a rating bias column exists when U is wider than n_gmf + n_mlp (it is the last)."""
    chunk_grad[:] = 0
    if n <= 0:
        return 0.0
    g, e = n_gmf, n_mlp
    nw = widths.shape[0]
    bias = g + e if U.shape[1] > g + e else -1
    gmf = cache[r0 * g:(r0 + n) * g].reshape((n, g))
    h = dense[out_offset:out_offset + g + last + 1]
    gh = chunk_grad[out_offset:out_offset + g + last + 1]
    big_l = nw - 1
    act_last = gmf
    d_last = chunk_grad[0:0].reshape((0, 0))
    if nw:
        start = batch * (g + act_sum[big_l]) + r0 * last
        act_last = cache[start:start + n * last].reshape((n, last))
        start = batch * act_sum[big_l] + r0 * last
        d_last = grad_work[start:start + n * last].reshape((n, last))
    loss = 0.0
    for r in range(n):
        z = logits[r0 + r]
        y = targets[r0 + r]
        loss += float(ncf_loss(loss_kind, z, y))
        dz = ncf_loss_grad(loss_kind, z, y) * scale
        gh[g + last] += dz
        pu = U[users[r0 + r]]
        qi = V[items[r0 + r]]
        ug = user_grads[r0 + r]
        ig = item_grads[r0 + r]
        for f in range(g):
            gh[f] += dz * gmf[r, f]
            t = dz * h[f]
            ug[f] = t * qi[f]
            ig[f] = t * pu[f]
        user_bias_grad = scale * 0
        item_bias_grad = scale * 0
        if ratings.shape[0] and rating_weights[r0 + r] != 0:
            w = rating_weights[r0 + r]
            y_r = ratings[r0 + r]
            pred = rating_mean + pu[bias] + qi[bias]
            for f in range(n_rating):
                pred += gmf[r, f]
            dpred = ncf_rating_grad(w, pred, y_r) * scale
            dreg = 2 * w * rating_reg * scale
            squares = pu[bias] * pu[bias] + qi[bias] * qi[bias]
            for f in range(n_rating):
                ug[f] += dpred * qi[f] + dreg * pu[f]
                ig[f] += dpred * pu[f] + dreg * qi[f]
                squares += pu[f] * pu[f] + qi[f] * qi[f]
            loss += float(ncf_rating_loss(w, pred, y_r) + w * rating_reg * squares)
            user_bias_grad = dpred + dreg * pu[bias]
            item_bias_grad = dpred + dreg * qi[bias]
        if bias >= 0:
            ug[bias] = user_bias_grad
            ig[bias] = item_bias_grad
        for j in range(last):
            gh[g + j] += dz * act_last[r, j]
            d_last[r, j] = dz * h[g + j]
    for layer in range(big_l, 0, -1):
        fan_in, fan_out = widths[layer - 1], widths[layer]
        start = batch * (g + act_sum[layer]) + r0 * fan_out
        y = cache[start:start + n * fan_out].reshape((n, fan_out))
        start = batch * act_sum[layer] + r0 * fan_out
        dy = grad_work[start:start + n * fan_out].reshape((n, fan_out))
        start = batch * (g + act_sum[layer - 1]) + r0 * fan_in
        x = cache[start:start + n * fan_in].reshape((n, fan_in))
        start = batch * act_sum[layer - 1] + r0 * fan_in
        dx = grad_work[start:start + n * fan_in].reshape((n, fan_in))
        for r in range(n):
            for j in range(fan_out):
                if not y[r, j] > 0:
                    dy[r, j] = 0
        off = w_off[layer]
        w = dense[off:off + fan_in * fan_out].reshape((fan_in, fan_out))
        g_w = chunk_grad[off:off + fan_in * fan_out].reshape((fan_in, fan_out))
        g_b = chunk_grad[off + fan_in * fan_out:off + fan_in * fan_out + fan_out]
        np.dot(x.T, dy, g_w)
        for r in range(n):
            for j in range(fan_out):
                g_b[j] += dy[r, j]
        np.dot(dy, w.T, dx)
    if nw:
        dx0 = grad_work[r0 * 2 * e:(r0 + n) * 2 * e].reshape((n, 2 * e))
        for r in range(n):
            for f in range(e):
                user_grads[r0 + r, g + f] = dx0[r, f]
                item_grads[r0 + r, g + f] = dx0[r, e + f]
    return loss


# -- batch passes -----------------------------------------------------------------------------
@njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def _forward_batch(users, items, U, V, dense, widths, w_off, act_sum, n_gmf, n_mlp, last,
                   out_offset, cache, logits):
    batch = users.shape[0]
    n_chunks = (batch + NCF_CHUNK - 1) // NCF_CHUNK
    for c in prange(n_chunks):
        r0 = c * NCF_CHUNK
        _forward_rows(users, items, batch, r0, min(NCF_CHUNK, batch - r0), U, V, dense, widths,
                      w_off, act_sum, n_gmf, n_mlp, last, out_offset, cache, logits)


@njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def _backward_batch(users, items, targets, U, V, dense, widths, w_off, act_sum, n_gmf, n_mlp,
                    last, out_offset, cache, logits, loss_kind, ratings, rating_weights,
                    rating_mean, rating_reg, n_rating, scale, grad_work, chunk_grads, dense_grad,
                    user_grads, item_grads):
    batch = users.shape[0]
    n_chunks = (batch + NCF_CHUNK - 1) // NCF_CHUNK
    chunk_loss = np.zeros(n_chunks)
    for c in prange(n_chunks):
        r0 = c * NCF_CHUNK
        chunk_loss[c] = _backward_rows(
            users, items, targets, batch, r0, min(NCF_CHUNK, batch - r0), U, V, dense, widths,
            w_off, act_sum, n_gmf, n_mlp, last, out_offset, cache, logits, loss_kind, ratings,
            rating_weights, rating_mean, rating_reg, n_rating, scale, grad_work, chunk_grads[c],
            user_grads, item_grads)
    _sum_chunks(chunk_grads, n_chunks, dense_grad)
    return chunk_loss.sum()


@njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def _sum_chunks(chunk_grads, n_chunks, out):
    for j in prange(out.shape[0]):
        total = chunk_grads[0, j]
        for c in range(1, n_chunks):
            total += chunk_grads[c, j]
        out[j] = total


@njit(cache=True, nogil=True, error_model="numpy")
def _draw_negative(key, negative, u, seen_indptr, seen_indices, n_items):
    lo, hi = seen_indptr[u], seen_indptr[u + 1]
    item = 0
    for t in range(NCF_NEGATIVE_TRIES):
        item = ncf_negative_candidate(key, negative, t, n_items)
        pos = lo + np.searchsorted(seen_indices[lo:hi], item)
        if pos >= hi or seen_indices[pos] != item:
            return item
    return item


@njit(cache=True, nogil=True, error_model="numpy")
def _update_range(kind, w, s1, s2, g, sc):
    """optim_update_range of optim.h: one optimiser step of w[:] with gradient g[:].
    ``sc`` is T[8]: step_size, inv_sqrt_bc2, beta1, beta2, eps, 1 - beta1, 1 - beta2 (computed
    in T as in C), so every operation stays in T. The kind is tested once per range so that
    each loop vectorises."""
    step_size, inv_sqrt_bc2, beta1, beta2, eps, c1, c2 = sc[0], sc[1], sc[2], sc[3], sc[4], \
        sc[5], sc[6]
    if kind == OPT_ADAM:
        for f in range(w.shape[0]):
            m = beta1 * s1[f] + c1 * g[f]
            v = beta2 * s2[f] + c2 * g[f] * g[f]
            s1[f] = m
            s2[f] = v
            w[f] = w[f] - step_size * m / (np.sqrt(v) * inv_sqrt_bc2 + eps)
    elif kind == OPT_ADAGRAD:
        for f in range(w.shape[0]):
            acc = s1[f] + g[f] * g[f]
            s1[f] = acc
            w[f] = w[f] - step_size * g[f] / (np.sqrt(acc) + eps)
    else:
        for f in range(w.shape[0]):
            w[f] = w[f] - step_size * g[f]


@njit(cache=True, nogil=True, error_model="numpy")
def _apply_row(kind, leader, rows, row_grads, nxt, table, s1, s2, sc, n_nonnegative):
    """One lazy step of the row of ``leader``'s chain; its first ``n_nonnegative`` columns are
    then projected onto >= 0."""
    g = row_grads[leader]
    b = nxt[leader]
    while b >= 0:
        for f in range(g.shape[0]):
            g[f] += row_grads[b, f]
        b = nxt[b]
    r = rows[leader]
    _update_range(kind, table[r], s1[r], s2[r], g, sc)
    for f in range(n_nonnegative):
        table[r, f] = max(table[r, f], 0)


@njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def _train_epoch(pos_users, pos_items, pos_targets, seen_indptr, seen_indices, order,
                 n_negatives, key, U, V, dense, widths, w_off, act_sum, n_gmf, n_mlp, last,
                 out_offset, loss_kind, pos_ratings, rating_weight, rating_mean, rating_reg,
                 n_rating, n_nonnegative,
                 optimizer, scalars, step_scalars, ds1, ds2, us1, us2, is1, is2, batch_size,
                 cache, grad_work, chunk_grads, user_grads, item_grads, b_users, b_items,
                 b_targets, b_ratings, b_weights, logits):
    n_samples = order.shape[0]
    n_items = V.shape[0]
    group = n_negatives + 1
    n_batches = (n_samples + batch_size - 1) // batch_size
    max_chunks = chunk_grads.shape[0]
    chunk_loss = np.zeros(max_chunks)
    user_stamp = np.full(U.shape[0], -1, np.int64)
    user_tail = np.empty(U.shape[0], np.int64)
    item_stamp = np.full(V.shape[0], -1, np.int64)
    item_tail = np.empty(V.shape[0], np.int64)
    user_next = np.empty(batch_size, np.int64)
    item_next = np.empty(batch_size, np.int64)
    user_leaders = np.empty(batch_size, np.int64)
    item_leaders = np.empty(batch_size, np.int64)
    n_dense = dense.shape[0]
    row_ratings = b_ratings if pos_ratings.shape[0] else pos_ratings  # empty: no rating term
    total = 0.0
    for b in range(n_batches):
        start = b * batch_size
        bs = min(batch_size, n_samples - start)
        n_chunks = (bs + NCF_CHUNK - 1) // NCF_CHUNK
        scale = scalars[0] if bs == batch_size else scalars[1]
        for c in prange(n_chunks):
            r0 = c * NCF_CHUNK
            n = min(NCF_CHUNK, bs - r0)
            for r in range(r0, r0 + n):
                slot = order[start + r]
                p = slot // group
                j = slot % group
                u = pos_users[p]
                b_users[r] = u
                if j == 0:
                    b_items[r] = pos_items[p]
                    b_targets[r] = pos_targets[p]
                else:
                    b_items[r] = _draw_negative(key, p * n_negatives + j - 1, u, seen_indptr,
                                                seen_indices, n_items)
                    b_targets[r] = 0
                if pos_ratings.shape[0]:
                    b_ratings[r] = pos_ratings[p] if j == 0 else 0
                    b_weights[r] = rating_weight if j == 0 else 0
            _forward_rows(b_users, b_items, bs, r0, n, U, V, dense, widths, w_off, act_sum,
                          n_gmf, n_mlp, last, out_offset, cache, logits)
            chunk_loss[c] = _backward_rows(
                b_users, b_items, b_targets, bs, r0, n, U, V, dense, widths, w_off, act_sum,
                n_gmf, n_mlp, last, out_offset, cache, logits, loss_kind, row_ratings,
                b_weights, rating_mean, rating_reg, n_rating, scale, grad_work, chunk_grads[c],
                user_grads, item_grads)
        sc = step_scalars[b]
        n_user_rows = link_rows(b_users[:bs], user_stamp, user_tail, user_next, user_leaders, b)
        n_item_rows = link_rows(b_items[:bs], item_stamp, item_tail, item_next, item_leaders, b)
        for c in range(n_chunks):
            total += chunk_loss[c]
        # One parallel region for every update of the batch: dense blocks, then distinct rows.
        n_blocks = (n_dense + DENSE_BLOCK - 1) // DENSE_BLOCK
        for j in prange(n_blocks + n_user_rows + n_item_rows):
            if j < n_blocks:
                j0 = j * DENSE_BLOCK
                j1 = min(j0 + DENSE_BLOCK, n_dense)
                g = chunk_grads[0, j0:j1]
                for c in range(1, n_chunks):
                    for k in range(j1 - j0):
                        g[k] += chunk_grads[c, j0 + k]
                _update_range(optimizer, dense[j0:j1], ds1[j0:j1], ds2[j0:j1], g, sc)
            elif j < n_blocks + n_user_rows:
                _apply_row(optimizer, user_leaders[j - n_blocks], b_users, user_grads, user_next,
                           U, us1, us2, sc, n_nonnegative)
            else:
                _apply_row(optimizer, item_leaders[j - n_blocks - n_user_rows], b_items,
                           item_grads, item_next, V, is1, is2, sc, n_nonnegative)
    return total


# -- contract entry points ----------------------------------------------------------------------
def ncf_forward(users, items, user_emb, item_emb, dense, layers, n_gmf, cache, logits,
                n_threads=1):
    """See ``fastrec.backends._contract.NCF_FORWARD_DOC``."""
    if users.shape[0] == 0:
        return
    widths, w_off, act_sum, n_mlp, last, out_offset, _, _ = _shape(layers, n_gmf)
    with single_threaded_blas(), thread_limit(n_threads):
        _forward_batch(users, items, user_emb, item_emb, dense, widths, w_off, act_sum,
                       int(n_gmf), n_mlp, last, out_offset, cache, logits)


def ncf_backward(users, items, targets, user_emb, item_emb, dense, layers, n_gmf, cache, logits,
                 loss, dense_grad, user_grads, item_grads, n_threads=1, ratings=None,
                 rating_weights=None, rating_mean=0.0, rating_reg=0.0, n_rating=None) -> float:
    """See ``fastrec.backends._contract.NCF_BACKWARD_DOC``."""
    rating_columns = ncf_n_rating(n_rating, n_gmf) if ratings is not None else 0
    batch = users.shape[0]
    if batch == 0:
        dense_grad[:] = 0
        return 0.0
    widths, w_off, act_sum, n_mlp, last, out_offset, n_dense, grad_width = _shape(layers, n_gmf)
    n_chunks = (batch + NCF_CHUNK - 1) // NCF_CHUNK
    grad_work = np.empty(batch * grad_width, dense.dtype)
    chunk_grads = np.empty((n_chunks, n_dense), dense.dtype)
    none = np.empty(0, dense.dtype)
    with single_threaded_blas(), thread_limit(n_threads):
        return float(_backward_batch(users, items, targets, user_emb, item_emb, dense, widths,
                                     w_off, act_sum, int(n_gmf), n_mlp, last, out_offset, cache,
                                     logits, int(loss), none if ratings is None else ratings,
                                     none if rating_weights is None else rating_weights,
                                     dense.dtype.type(rating_mean),
                                     dense.dtype.type(rating_reg), rating_columns,
                                     dense.dtype.type(1.0 / batch), grad_work, chunk_grads,
                                     dense_grad, user_grads, item_grads))


def ncf_train_epoch(pos_users, pos_items, pos_targets, seen_indptr, seen_indices, order,
                    n_negatives, seed, epoch, user_emb, item_emb, dense, layers, n_gmf, loss,
                    optimizer, lr, beta1, beta2, eps, step, dense_state1, dense_state2,
                    user_state1, user_state2, item_state1, item_state2, batch_size,
                    n_threads=1, ratings=None, rating_weight=0.0, rating_mean=0.0,
                    rating_reg=0.0, n_rating=None, nonnegative=False) -> float:
    """See ``fastrec.backends._contract.NCF_TRAIN_EPOCH_DOC``."""
    rating_columns, nonnegative_columns = ncf_epoch_columns(n_rating, n_gmf,
                                                            ratings is not None, nonnegative)
    n_samples = order.shape[0]
    if n_samples == 0:
        return 0.0
    dtype = dense.dtype
    widths, w_off, act_sum, n_mlp, last, out_offset, n_dense, grad_width = _shape(layers, n_gmf)
    n_batches = (n_samples + batch_size - 1) // batch_size
    steps = step + 1 + np.arange(n_batches)
    if optimizer == OPT_ADAM:
        step_sizes = (lr / (1.0 - beta1 ** steps.astype(np.float64))).astype(dtype)
        inv_sqrt_bc2s = (1.0 / np.sqrt(1.0 - beta2 ** steps.astype(np.float64))).astype(dtype)
    else:
        step_sizes = np.full(n_batches, lr, dtype)
        inv_sqrt_bc2s = np.ones(n_batches, dtype)
    last_batch = n_samples - (n_batches - 1) * batch_size
    scalars = np.array([1.0 / batch_size, 1.0 / last_batch], dtype)
    step_scalars = np.empty((n_batches, 8), dtype)
    step_scalars[:, 0], step_scalars[:, 1] = step_sizes, inv_sqrt_bc2s
    step_scalars[:, 2], step_scalars[:, 3], step_scalars[:, 4] = beta1, beta2, eps
    step_scalars[:, 5] = dtype.type(1) - dtype.type(beta1)
    step_scalars[:, 6] = dtype.type(1) - dtype.type(beta2)
    step_scalars[:, 7] = 0
    d = user_emb.shape[1]
    max_chunks = (batch_size + NCF_CHUNK - 1) // NCF_CHUNK
    index_dtype = pos_users.dtype
    key = np.uint64(rng_key(np.uint64(seed), np.uint64(epoch)))
    with single_threaded_blas(), thread_limit(n_threads):
        return float(_train_epoch(
            pos_users, pos_items, pos_targets, seen_indptr, seen_indices, order,
            int(n_negatives), key, user_emb, item_emb, dense, widths, w_off, act_sum,
            int(n_gmf), n_mlp, last, out_offset, int(loss),
            np.empty(0, dtype) if ratings is None else ratings, dtype.type(rating_weight),
            dtype.type(rating_mean), dtype.type(rating_reg), rating_columns, nonnegative_columns,
            int(optimizer), scalars, step_scalars,
            dense_state1, dense_state2, user_state1, user_state2, item_state1,
            item_state2, int(batch_size), np.empty(batch_size * (n_gmf + grad_width) + 1, dtype),
            np.empty(batch_size * grad_width + 1, dtype), np.empty((max_chunks, n_dense), dtype),
            np.empty((batch_size, d), dtype), np.empty((batch_size, d), dtype),
            np.empty(batch_size, index_dtype), np.empty(batch_size, index_dtype),
            np.empty(batch_size, dtype), np.empty(batch_size, dtype),
            np.empty(batch_size, dtype), np.empty(batch_size, dtype)))
