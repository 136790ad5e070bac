"""Reference GRU4Rec kernels: textbook dense numpy, one time step and one row at a time where
that reads clearest. The oracle for the Cython and Numba backends (see ``_contract.GRU_*``)."""

from __future__ import annotations

import numpy as np

from fastrec.backends._contract import (
    LOSS_BPR_MAX,
    LOSS_CROSS_ENTROPY,
    LOSS_TOP1_MAX,
    OPT_ADAGRAD,
    gru_layout,
    rng_streams,
)
from fastrec.backends.reference.rng import rng_at, rng_below, rng_key, rng_uniform


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _layer_forward(A, h0, reset, Wh):
    """One layer over T steps, one session slot at a time. A: [T,B,3H] input projections (bias
    included), h0 [B,H], reset uint8[T,B], Wh [H,3H]. Returns hs [T,B,H] and the gates
    [T,B,3H] (r, z, n)."""
    T, B, H3 = A.shape
    H = H3 // 3
    hs = np.empty((T, B, H), A.dtype)
    gates = np.empty((T, B, H3), A.dtype)
    for b in range(B):
        h = h0[b].astype(A.dtype)
        for t in range(T):
            if reset[t, b]:
                h = np.zeros(H, A.dtype)
            a = A[t, b]
            r = _sigmoid(a[:H] + h @ Wh[:, :H])
            z = _sigmoid(a[H:2 * H] + h @ Wh[:, H:2 * H])
            n = np.tanh(a[2 * H:] + (r * h) @ Wh[:, 2 * H:])
            h = (1 - z) * h + z * n
            hs[t, b] = h
            gates[t, b] = np.concatenate([r, z, n])
    return hs, gates


def _previous_states(h0, hs, reset):
    prev = np.concatenate([h0[None], hs[:-1]], axis=0)
    return np.where(reset[:, :, None] != 0, 0, prev).astype(hs.dtype)


def _layer_backward(d_hs, h0, reset, hs, gates, Wh):
    """BPTT through one layer. Returns (dA [T,B,3H], dh0 [B,H], dWh [H,3H])."""
    T, B, H = hs.shape
    prev = _previous_states(h0, hs, reset)
    dA = np.empty_like(gates)
    dWh = np.zeros_like(Wh)
    dh_next = np.zeros((B, H), hs.dtype)
    for t in range(T - 1, -1, -1):
        r, z, n = gates[t, :, :H], gates[t, :, H:2 * H], gates[t, :, 2 * H:]
        h = prev[t]
        dh = d_hs[t] + dh_next
        dn_pre = dh * z * (1 - n * n)
        dz_pre = dh * (n - h) * z * (1 - z)
        dq = dn_pre @ Wh[:, 2 * H:].T
        dr_pre = dq * h * r * (1 - r)
        dWh[:, :H] += h.T @ dr_pre
        dWh[:, H:2 * H] += h.T @ dz_pre
        dWh[:, 2 * H:] += (r * h).T @ dn_pre
        dh_prev = dh * (1 - z) + dq * r + dr_pre @ Wh[:, :H].T + dz_pre @ Wh[:, H:2 * H].T
        dA[t, :, :H], dA[t, :, H:2 * H], dA[t, :, 2 * H:] = dr_pre, dz_pre, dn_pre
        dh_next = np.where(reset[t][:, None] != 0, 0, dh_prev).astype(hs.dtype)
    return dA, dh_next, dWh


def stack_forward(A0, h0, reset, Wx_rest, Wh, b):
    """Layers over a block given layer 0's input projections ``A0`` [T,B,3H] (bias included).
    Returns hs [L,T,B,H] and gates [L,T,B,3H]."""
    L = Wh.shape[0]
    hs = np.empty((L, *A0.shape[:2], Wh.shape[1]), A0.dtype)
    gates = np.empty((L, *A0.shape), A0.dtype)
    A = A0
    for layer in range(L):
        if layer > 0:
            A = hs[layer - 1] @ Wx_rest[layer - 1] + b[layer]
        hs[layer], gates[layer] = _layer_forward(A, h0[layer], reset, Wh[layer])
    return hs, gates


def stack_backward(h0, reset, Wx_rest, Wh, hs, gates, d_top):
    """BPTT through the stack; returns (dA0, dh0, dWx_rest, dWh, db)."""
    L = Wh.shape[0]
    dWx_rest = np.zeros_like(Wx_rest)
    dWh = np.zeros_like(Wh)
    db = np.zeros((L, Wh.shape[2]), hs.dtype)
    dh0 = np.zeros_like(h0)
    d_out = d_top
    for layer in range(L - 1, -1, -1):
        dA, dh0[layer], dWh[layer] = _layer_backward(d_out, h0[layer], reset, hs[layer],
                                                     gates[layer], Wh[layer])
        db[layer] = dA.sum(axis=(0, 1))
        if layer > 0:
            dWx_rest[layer - 1] = np.einsum("tbd,tbg->dg", hs[layer - 1], dA)
            d_out = dA @ Wx_rest[layer - 1].T
    return dA, dh0, dWx_rest, dWh, db


def gru_forward(X, h0, reset, Wx0, Wx_rest, Wh, b, n_threads=1):
    """See ``fastrec.backends._contract.GRU_FORWARD_DOC``."""
    return stack_forward(X @ Wx0 + b[0], h0, reset, Wx_rest, Wh, b)


def gru_backward(X, h0, reset, Wx0, Wx_rest, Wh, b, hs, gates, d_top, n_threads=1):
    """See ``fastrec.backends._contract.GRU_BACKWARD_DOC``."""
    dA0, dh0, dWx_rest, dWh, db = stack_backward(h0, reset, Wx_rest, Wh, hs, gates, d_top)
    return dA0 @ Wx0.T, dh0, np.einsum("tbd,tbg->dg", X, dA0), dWx_rest, dWh, db


def gru4rec_output_loss(hidden, out_table, samples, loss, bpreg, grad_scale, n_threads=1):
    """See ``fastrec.backends._contract.GRU4REC_OUTPUT_LOSS_DOC``."""
    N = hidden.shape[0]
    W = out_table[samples]                                   # [S, H+1]
    scores = hidden @ W[:, :-1].T + W[:, -1]                 # [N, S], row i's target is col i
    d_scores = np.zeros_like(scores)
    total = 0.0
    for i in range(N):
        r = scores[i].astype(np.float64)
        t = r[i]
        if loss == LOSS_CROSS_ENTROPY:
            m = r.max()
            p = np.exp(r - m)
            p /= p.sum()
            total += -np.log(p[i])
            g = p
            g[i] -= 1.0
        else:
            neg = np.ones_like(r, dtype=bool)
            neg[i] = False
            m = r[neg].max()
            s = np.where(neg, np.exp(r - m), 0.0)
            s /= s.sum()
            if loss == LOSS_BPR_MAX:
                sig = _sigmoid(t - r)
                P = np.sum(s * sig)
                R = np.sum(s * r * r)
                total += -np.log(P + 1e-24) + bpreg * R
                g = -s * (sig * sig - P) / (P + 1e-24) + bpreg * s * (r * r + 2 * r - R)
                g[i] = -np.sum(s * sig * (1 - sig)) / (P + 1e-24)
            elif loss == LOSS_TOP1_MAX:
                u = _sigmoid(r - t)
                v = _sigmoid(r * r)
                f = u + v
                F = np.sum(s * f)
                total += F
                g = s * (f - F) + s * (u * (1 - u) + 2 * r * v * (1 - v))
                g[i] = -np.sum(s * u * (1 - u))
            else:
                raise ValueError(f"unknown loss code {loss}")
        d_scores[i] = g * grad_scale
    d_hidden = (d_scores @ W[:, :-1]).astype(hidden.dtype)
    d_rows = np.empty_like(W)
    d_rows[:, :-1] = d_scores.T @ hidden
    d_rows[:, -1] = d_scores.sum(axis=0)
    return float(total), d_hidden, d_rows


def _step(param, grad, s1, s2, method, lr, momentum, beta1, beta2, eps, t):
    """optim.h's Adagrad (with GRU4Rec's momentum on the scaled step when momentum > 0) or Adam;
    s1, s2 are (accumulator, velocity) or (m, v)."""
    dtype = param.dtype.type
    if method == OPT_ADAGRAD:
        s1 += grad * grad
        delta = dtype(lr) * grad / (np.sqrt(s1) + dtype(eps))
        if momentum > 0:
            s2[...] = dtype(momentum) * s2 - delta
            param += s2
        else:
            param -= delta
    else:
        s1[...] = dtype(beta1) * s1 + dtype(1 - beta1) * grad
        s2[...] = dtype(beta2) * s2 + dtype(1 - beta2) * grad * grad
        step_size = dtype(lr / (1 - beta1 ** t))
        inv_sqrt_bc2 = dtype(1 / np.sqrt(1 - beta2 ** t))
        param -= step_size * s1 / (np.sqrt(s2) * inv_sqrt_bc2 + dtype(eps))


def _step_rows(table, s1, s2, rows, grads, *opt):
    """Sparse step: duplicate rows' gradients summed, each distinct row stepped once."""
    unique, inverse = np.unique(rows, return_inverse=True)
    summed = np.zeros((unique.shape[0], table.shape[1]), grads.dtype)
    np.add.at(summed, inverse, grads)
    p, a, v = table[unique], s1[unique], s2[unique]
    _step(p, summed, a, v, *opt)
    table[unique], s1[unique], s2[unique] = p, a, v


def dropout_mask(shape, p, seed, stream, first_counter, dtype):
    """Inverted-dropout mask drawn from the counter-based RNG (element k uses index
    ``first_counter + k``): 0 where dropped, ``1 / (1 - p)`` where kept."""
    key = rng_key(seed, stream)
    mask = np.empty(int(np.prod(shape)), dtype)
    for k in range(mask.shape[0]):
        kept = rng_uniform(rng_at(key, first_counter + k)) >= p
        mask[k] = 1.0 / (1.0 - p) if kept else 0.0
    return mask.reshape(shape)


def alias_draw(bits, prob, alias):
    """One alias-table draw as ``rng_alias_draw`` in gru.h: ``rng_below`` picks the bucket from
    the high 32 bits, the low 32 bits are the coin."""
    bucket = rng_below(bits, prob.shape[0])
    coin = (bits & 0xFFFFFFFF) * (1.0 / 4294967296.0)
    return bucket if coin < prob[bucket] else int(alias[bucket])


def sample_negatives(prob, alias, n, seed, stream, first_counter):
    """``n`` items (int64[n]) drawn from the alias table with the counter-based RNG."""
    key = rng_key(seed, stream)
    return np.array([alias_draw(rng_at(key, first_counter + k), prob, alias)
                     for k in range(n)], np.int64)


def gru4rec_train_epoch(inputs, targets, reset, hidden, emb, emb_s1, emb_s2, gru_params,
                        gru_s1, gru_s2, out_table, out_s1, out_s2, neg_prob, neg_alias, spec,
                        n_threads=1):
    """See ``fastrec.backends._contract.GRU4REC_TRAIN_EPOCH_DOC``."""
    n_steps, B = inputs.shape
    L, _, H = hidden.shape
    T, D = spec.bptt, emb.shape[1]
    layout = gru_layout(L, H, D, spec.embedded)
    w = layout.views(gru_params)
    dtype = gru_params.dtype
    streams = rng_streams(spec.epoch)
    opt = (spec.method, spec.lr, spec.momentum, spec.beta1, spec.beta2, spec.eps)
    total = 0.0
    for block in range(n_steps // T):
        s0 = block * T
        x_items, block_reset = inputs[s0:s0 + T], reset[s0:s0 + T]
        X = emb[x_items]                                                  # [T,B,D]
        emb_mask = None
        if spec.embedded and spec.dropout_embed > 0:
            emb_mask = dropout_mask(X.shape, spec.dropout_embed, spec.seed, streams.embed,
                                    s0 * B * D, dtype)
            X = X * emb_mask
        A0 = (X @ w.wx0 if spec.embedded else X) + w.b[0]
        hs, gates = stack_forward(A0, hidden, block_reset, w.wx_rest, w.wh, w.b)
        top = hs[-1]
        hid_mask = None
        if spec.dropout_hidden > 0:
            hid_mask = dropout_mask(top.shape, spec.dropout_hidden, spec.seed, streams.hidden,
                                    s0 * B * H, dtype)
            top = top * hid_mask
        d_top = np.empty_like(top)
        rows, row_grads = [], []
        for t in range(T):
            negatives = sample_negatives(neg_prob, neg_alias, spec.n_sample, spec.seed,
                                         streams.negatives, (s0 + t) * spec.n_sample)
            samples = np.concatenate([targets[s0 + t], negatives.astype(targets.dtype)])
            loss_t, d_top[t], d_rows = gru4rec_output_loss(top[t], out_table, samples, spec.loss,
                                                   spec.bpreg, 1.0 / (T * B))
            total += loss_t
            rows.append(samples)
            row_grads.append(d_rows)
        if hid_mask is not None:
            d_top = d_top * hid_mask
        grads = np.zeros_like(gru_params)
        g = layout.views(grads)
        dA0, _, g.wx_rest[...], g.wh[...], g.b[...] = stack_backward(
            hidden, block_reset, w.wx_rest, w.wh, hs, gates, d_top)
        if spec.embedded:
            g.wx0[...] = np.einsum("tbd,tbg->dg", X, dA0)
            dX = dA0 @ w.wx0.T
            if emb_mask is not None:
                dX = dX * emb_mask
        else:
            dX = dA0
        t_opt = spec.step0 + block + 1
        _step(gru_params, grads, gru_s1, gru_s2, *opt, t_opt)
        _step_rows(emb, emb_s1, emb_s2, x_items.reshape(-1), dX.reshape(-1, D), *opt, t_opt)
        _step_rows(out_table, out_s1, out_s2, np.concatenate(rows), np.concatenate(row_grads),
                   *opt, t_opt)
        hidden[...] = hs[:, -1]
    n_blocks = n_steps // T
    return total, n_blocks * T * B
