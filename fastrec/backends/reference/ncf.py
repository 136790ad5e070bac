"""Reference NCF passes: whole-batch numpy matrices and textbook backpropagation.

Layouts (embeddings, ``layers``, the flat ``dense`` vector, the block-major ``cache``) are those
of ``fastrec.backends._contract.NCF_LAYOUT_DOC``. The epoch composes the reference kernels batch
by batch in Python: slow, but plain, and it draws the same negatives as the compiled kernels
(same counter-based RNG, one draw at a time).
"""

from __future__ import annotations

import numpy as np

from fastrec.backends._contract import OPT_ADAGRAD, OPT_ADAM, ncf_epoch_columns, ncf_n_rating
from fastrec.backends.reference import optim
from fastrec.backends.reference.rng import rng_at, rng_below, rng_key

LOSS_BCE, LOSS_SQUARED = 0, 1
NCF_NEGATIVE_TRIES = 64


def dense_views(dense: np.ndarray, layers: np.ndarray, n_gmf: int):
    """Views into the flat dense vector: ([(W_l, b_l), ...], h, b_out)."""
    out, off = [], 0
    for fan_in, fan_out in zip(layers[:-1], layers[1:], strict=True):
        w = dense[off:off + fan_in * fan_out].reshape(fan_in, fan_out)
        off += fan_in * fan_out
        out.append((w, dense[off:off + fan_out]))
        off += fan_out
    last = int(layers[-1]) if len(layers) else 0
    h = dense[off:off + n_gmf + last]
    return out, h, dense[off + n_gmf + last:off + n_gmf + last + 1]


def cache_blocks(cache: np.ndarray, batch: int, layers: np.ndarray, n_gmf: int):
    """[gmf (B x n_gmf), mlp_0 (B x layers[0]), ..., mlp_L]: views into the flat cache."""
    blocks, off = [], 0
    for width in (n_gmf, *(int(w) for w in layers)):
        blocks.append(cache[off:off + batch * width].reshape(batch, width))
        off += batch * width
    return blocks


def ncf_forward(users, items, user_emb, item_emb, dense, layers, n_gmf, cache, logits,
                n_threads=1):
    """See ``fastrec.backends._contract.NCF_FORWARD_DOC``."""
    batch = users.shape[0]
    blocks = cache_blocks(cache, batch, layers, n_gmf)
    weights, h, b_out = dense_views(dense, layers, n_gmf)
    pu, qi = user_emb[users], item_emb[items]
    blocks[0][...] = pu[:, :n_gmf] * qi[:, :n_gmf]
    z = blocks[0] @ h[:n_gmf] + b_out[0]
    if len(layers):
        mlp = slice(n_gmf, n_gmf + int(layers[0]) // 2)
        blocks[1][...] = np.hstack([pu[:, mlp], qi[:, mlp]])
        for (w, b), x, y in zip(weights, blocks[1:-1], blocks[2:], strict=True):
            y[...] = np.maximum(x @ w + b, 0)
        z = z + blocks[-1] @ h[n_gmf:]
    logits[...] = z


def loss_and_grad(logits, targets, loss):
    """Per-sample loss (float64) and d loss / d logit."""
    z, y = logits.astype(np.float64), targets.astype(np.float64)
    if loss == LOSS_BCE:
        value = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
        return value, 1.0 / (1.0 + np.exp(-z)) - y
    if loss == LOSS_SQUARED:
        return (z - y) ** 2, 2.0 * (z - y)
    raise ValueError(f"unknown loss code {loss}")


def rating_term(users, items, user_emb, item_emb, n_rating, ratings, rating_weights, rating_mean,
                rating_reg):
    """The joint model's rating term of each row, ``w ((mu + b_u + b_i + p_u . q_i - r)^2 +
    reg (|p_u|^2 + |q_i|^2 + b_u^2 + b_i^2))`` (the bias in the last column, p and q the first
    ``n_rating`` GMF columns): (loss float64[B], d loss / d user row float64[B, n_rating + 1],
    d loss / d item row), the rows' derivatives in those columns then the bias."""
    cols = [*range(n_rating), user_emb.shape[1] - 1]
    pu, qi = user_emb[users][:, cols].astype(np.float64), item_emb[items][:, cols].astype(
        np.float64)
    pred = rating_mean + pu[:, -1] + qi[:, -1] + np.sum(pu[:, :-1] * qi[:, :-1], axis=1)
    err = pred - ratings.astype(np.float64)
    w = rating_weights.astype(np.float64)[:, None]
    d_user = 2.0 * w * (err[:, None] * np.hstack([qi[:, :-1], np.ones((len(err), 1))])
                        + rating_reg * pu)
    d_item = 2.0 * w * (err[:, None] * np.hstack([pu[:, :-1], np.ones((len(err), 1))])
                        + rating_reg * qi)
    value = w[:, 0] * (err * err + rating_reg * (np.sum(pu * pu, axis=1)
                                                 + np.sum(qi * qi, axis=1)))
    return value, d_user, d_item


def ncf_backward(users, items, targets, user_emb, item_emb, dense, layers, n_gmf, cache, logits,
                 loss, dense_grad, user_grads, item_grads, n_threads=1, ratings=None,
                 rating_weights=None, rating_mean=0.0, rating_reg=0.0, n_rating=None) -> float:
    """See ``fastrec.backends._contract.NCF_BACKWARD_DOC``."""
    dtype = dense.dtype
    batch = users.shape[0]
    blocks = cache_blocks(cache, batch, layers, n_gmf)
    weights, h, _ = dense_views(dense, layers, n_gmf)
    g_weights, g_h, g_b_out = dense_views(dense_grad, layers, n_gmf)
    values, dz = loss_and_grad(logits, targets, loss)
    dz = (dz / max(batch, 1)).astype(dtype)
    g_b_out[...] = dz.sum()
    g_h[:n_gmf] = dz @ blocks[0]
    pu, qi = user_emb[users], item_emb[items]
    d_gmf = dz[:, None] * h[None, :n_gmf]
    user_grads[:, :n_gmf] = d_gmf * qi[:, :n_gmf]
    item_grads[:, :n_gmf] = d_gmf * pu[:, :n_gmf]
    if len(layers):
        g_h[n_gmf:] = dz @ blocks[-1]
        delta = dz[:, None] * h[None, n_gmf:]
        for layer in range(len(weights) - 1, -1, -1):
            w, _ = weights[layer]
            delta = delta * (blocks[layer + 2] > 0)
            g_weights[layer][0][...] = blocks[layer + 1].T @ delta
            g_weights[layer][1][...] = delta.sum(axis=0)
            delta = delta @ w.T
        n_mlp = int(layers[0]) // 2
        user_grads[:, n_gmf:n_gmf + n_mlp] = delta[:, :n_mlp]
        item_grads[:, n_gmf:n_gmf + n_mlp] = delta[:, n_mlp:]
    if user_emb.shape[1] > n_gmf + (int(layers[0]) // 2 if len(layers) else 0):
        n_rating = ncf_n_rating(n_rating, n_gmf)
        d_user = d_item = np.zeros((batch, n_rating + 1))
        if ratings is not None:
            rating_values, d_user, d_item = rating_term(users, items, user_emb, item_emb,
                                                        n_rating, ratings, rating_weights,
                                                        rating_mean, rating_reg)
            values = values + rating_values
        for grads, d in ((user_grads, d_user), (item_grads, d_item)):
            d = (d / max(batch, 1)).astype(dtype)
            grads[:, :n_rating] += d[:, :-1]
            grads[:, -1] = d[:, -1]
    return float(values.sum())


def draw_negatives(pos_users, seen_indptr, seen_indices, n_items, n_negatives, seed, epoch,
                   positives=None):
    """The negatives of the given positives: int64[len(positives), n_negatives]. Negative ``j``
    of positive ``p`` is the first of NCF_NEGATIVE_TRIES uniform draws (index
    ``(p * n_negatives + j) * NCF_NEGATIVE_TRIES + attempt`` of stream ``rng_key(seed, epoch)``)
    that the user has not seen, else the last draw. ``positives`` are positive indices (default
    all)."""
    if positives is None:
        positives = range(pos_users.shape[0])
    key = rng_key(seed, epoch)
    chosen = np.zeros((len(positives), n_negatives), np.int64)
    for row, p in enumerate(positives):
        u = pos_users[p]
        seen = set(seen_indices[seen_indptr[u]:seen_indptr[u + 1]].tolist())
        for j in range(n_negatives):
            negative = int(p) * n_negatives + j
            for attempt in range(NCF_NEGATIVE_TRIES):
                item = rng_below(rng_at(key, negative * NCF_NEGATIVE_TRIES + attempt), n_items)
                if item not in seen:
                    break
            chosen[row, j] = item
    return chosen


def ncf_train_epoch(pos_users, pos_items, pos_targets, seen_indptr, seen_indices, order,
                    n_negatives, seed, epoch, user_emb, item_emb, dense, layers, n_gmf, loss,
                    optimizer, lr, beta1, beta2, eps, step, dense_state1, dense_state2,
                    user_state1, user_state2, item_state1, item_state2, batch_size,
                    n_threads=1, ratings=None, rating_weight=0.0, rating_mean=0.0,
                    rating_reg=0.0, n_rating=None, nonnegative=False) -> float:
    """See ``fastrec.backends._contract.NCF_TRAIN_EPOCH_DOC``."""
    _, nonnegative_columns = ncf_epoch_columns(n_rating, n_gmf, ratings is not None,
                                               nonnegative)
    dtype = dense.dtype
    group = n_negatives + 1
    total = 0.0
    width = n_gmf + int(np.sum(layers))
    for b, start in enumerate(range(0, order.shape[0], batch_size)):
        slots = order[start:start + batch_size]
        p, j = slots // group, slots % group
        users = pos_users[p]
        items = pos_items[p].astype(np.int64)
        targets = pos_targets[p].astype(dtype)
        neg = j > 0
        if neg.any():
            drawn = draw_negatives(pos_users, seen_indptr, seen_indices, item_emb.shape[0],
                                   n_negatives, seed, epoch, p[neg])
            items[neg] = drawn[np.arange(drawn.shape[0]), j[neg] - 1]
            targets[neg] = 0
        items = items.astype(pos_items.dtype)
        n = users.shape[0]
        cache = np.zeros(n * width, dtype)
        logits = np.zeros(n, dtype)
        ncf_forward(users, items, user_emb, item_emb, dense, layers, n_gmf, cache, logits)
        dense_grad = np.zeros_like(dense)
        user_grads = np.zeros((n, user_emb.shape[1]), dtype)
        item_grads = np.zeros((n, item_emb.shape[1]), dtype)
        row_ratings = row_weights = None
        if ratings is not None:
            row_ratings = np.where(neg, 0, ratings[p]).astype(dtype)
            row_weights = np.where(neg, 0, rating_weight).astype(dtype)
        total += ncf_backward(users, items, targets, user_emb, item_emb, dense, layers, n_gmf,
                              cache, logits, loss, dense_grad, user_grads, item_grads,
                              ratings=row_ratings, rating_weights=row_weights,
                              rating_mean=rating_mean, rating_reg=rating_reg,
                              n_rating=n_rating)
        t = step + b + 1
        if optimizer == OPT_ADAM:
            optim.adam_step(dense, dense_grad, dense_state1, dense_state2, t, lr, beta1, beta2,
                            eps)
            optim.sparse_adam_step(user_emb, users, user_grads, user_state1, user_state2, t, lr,
                                   beta1, beta2, eps)
            optim.sparse_adam_step(item_emb, items, item_grads, item_state1, item_state2, t, lr,
                                   beta1, beta2, eps)
        elif optimizer == OPT_ADAGRAD:
            dense_state1 += dense_grad * dense_grad
            dense -= dtype.type(lr) * dense_grad / (np.sqrt(dense_state1) + dtype.type(eps))
            optim.sparse_adagrad_step(user_emb, users, user_grads, user_state1, lr, eps)
            optim.sparse_adagrad_step(item_emb, items, item_grads, item_state1, lr, eps)
        else:
            dense -= dtype.type(lr) * dense_grad
            for table, rows, grads in ((user_emb, users, user_grads),
                                       (item_emb, items, item_grads)):
                np.subtract.at(table, rows, dtype.type(lr) * grads)
        if nonnegative_columns:
            for table, rows in ((user_emb, users), (item_emb, items)):
                table[rows, :nonnegative_columns] = np.maximum(
                    table[rows, :nonnegative_columns], 0)
    return total
