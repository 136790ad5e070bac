"""Numba GRU4Rec passes: the same structure as ``csrc/include/fastrec/gru_cpu.h`` (flat buffers,
fixed chunks split across threads with prange, BLAS GEMMs with leading dimensions and offsets),
with the scalar math of ``gru_scalar.py``. The GEMM-heavy passes and the optimizer steps are
parallel; the light loops (gathers, column sums) stay serial, which also keeps the first-call
compile time down. Kernels use ``error_model="numpy"`` (IEEE division as in C: a per-element
ZeroDivisionError check keeps a loop from vectorising), and inner loops index row views from 0,
so no negative-index wraparound is emitted either. GEMMs: ``blas.py``.
"""

import numpy as np
from numba import njit, prange

from fastrec.backends._blas import single_threaded_blas
from fastrec.backends.numba.blas import gemm_rm
from fastrec.backends.numba.gru_scalar import (
    bpr_max_grad_negative,
    cast_like,
    gru_candidate,
    gru_exp,
    gru_gate,
    gru_grad_candidate,
    gru_grad_reset,
    gru_grad_state,
    gru_grad_update,
    gru_sigmoid,
    gru_state,
    rng_alias_draw,
    top1_max_grad_negative,
)
from fastrec.backends.numba.optim import (
    adagrad_momentum_update,
    adagrad_update,
    adam_inv_sqrt_bc2,
    adam_step_size,
    adam_update,
)
from fastrec.backends.numba.rng import rng_at, rng_key, rng_uniform
from fastrec.backends.numba.threads import thread_limit

# Below PARALLEL_MIN_WORK multiply-adds (PARALLEL_MIN_ELEMENTS optimizer steps) a pass runs
# serially, as GRU_PARALLEL_MIN_WORK / GRU_PARALLEL_MIN_ELEMENTS in C++.
PARALLEL_MIN_WORK = 2e6
PARALLEL_MIN_ELEMENTS = 32768
DENSE_CHUNK = 4096
ROW_CHUNK = 16
COL_CHUNK = 64
SAMPLE_CHUNK = 128


@njit(cache=True, nogil=True, error_model="numpy")
def _gemm_chunk(c, by_rows, ta, tb, M, N, K, alpha, A, a0, lda, B, b0, ldb, beta, C, c0, ldc):
    extent = M if by_rows else N
    chunk = ROW_CHUNK if by_rows else COL_CHUNK
    o = c * chunk
    ln = min(chunk, extent - o)
    if by_rows:
        gemm_rm(ta, tb, ln, N, K, alpha, A, a0 + (o if ta else o * lda), lda, B, b0, ldb, beta,
                C, c0 + o * ldc, ldc)
    else:
        gemm_rm(ta, tb, M, ln, K, alpha, A, a0, lda, B, b0 + (o * ldb if tb else o), ldb, beta,
                C, c0 + o, ldc)


@njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _gemm_chunks_parallel(n_chunks, by_rows, ta, tb, M, N, K, alpha, A, a0, lda, B, b0, ldb,
                          beta, C, c0, ldc):
    for c in prange(n_chunks):
        _gemm_chunk(c, by_rows, ta, tb, M, N, K, alpha, A, a0, lda, B, b0, ldb, beta, C, c0, ldc)


@njit(cache=True, nogil=True, error_model="numpy")
def gemm_par(by_rows, ta, tb, M, N, K, alpha, A, a0, lda, B, b0, ldb, beta, C, c0, ldc):
    """The product split over fixed row or column chunks of C, in parallel when large."""
    extent = M if by_rows else N
    chunk = ROW_CHUNK if by_rows else COL_CHUNK
    n_chunks = (extent + chunk - 1) // chunk
    if float(M) * N * K >= PARALLEL_MIN_WORK and n_chunks > 1:
        _gemm_chunks_parallel(n_chunks, by_rows, ta, tb, M, N, K, alpha, A, a0, lda, B, b0, ldb,
                              beta, C, c0, ldc)
    else:
        for c in range(n_chunks):
            _gemm_chunk(c, by_rows, ta, tb, M, N, K, alpha, A, a0, lda, B, b0, ldb, beta, C, c0,
                        ldc)


# ---- stacked GRU --------------------------------------------------------------------------------
@njit(cache=True, nogil=True, error_model="numpy")
def _layer_forward_rows(layer, steps, B, H, A, a0, h0, h0_off, reset, Wh, wh0, prev, q, gates,
                        hs, hz, nq, b0, b1):
    m = b1 - b0
    off = layer * steps * B
    for t in range(steps):
        for b in range(b0, b1):
            p = (off + t * B + b) * H
            if reset[t * B + b]:
                prev[p:p + H] = 0
            elif t == 0:
                prev[p:p + H] = h0[h0_off + b * H:h0_off + (b + 1) * H]
            else:
                src = (off + (t - 1) * B + b) * H
                prev[p:p + H] = hs[src:src + H]
        row0 = off + t * B + b0
        gemm_rm(False, False, m, 2 * H, H, 1.0, prev, row0 * H, H, Wh, wh0, 3 * H, 0.0, hz,
                b0 * 2 * H, 2 * H)
        for b in range(b0, b1):
            row = off + t * B + b
            a = (t * B + b) * 3 * H + a0
            # row views: loop indices from 0 are known non-negative, so Numba emits no
            # negative-index wraparound and LLVM vectorises the loop
            ar, hr = A[a:a + 3 * H], hz[b * 2 * H:(b + 1) * 2 * H]
            gr, qr, pr = gates[row * 3 * H:(row + 1) * 3 * H], q[row * H:(row + 1) * H], \
                prev[row * H:(row + 1) * H]
            for j in range(H):
                r = gru_gate(ar[j], hr[j])
                gr[j] = r
                gr[H + j] = gru_gate(ar[H + j], hr[H + j])
                qr[j] = r * pr[j]
        gemm_rm(False, False, m, H, H, 1.0, q, row0 * H, H, Wh, wh0 + 2 * H, 3 * H, 0.0, nq,
                b0 * H, H)
        for b in range(b0, b1):
            row = off + t * B + b
            a = (t * B + b) * 3 * H + a0
            ar, nr = A[a:a + 3 * H], nq[b * H:(b + 1) * H]
            gr, hr, pr = gates[row * 3 * H:(row + 1) * 3 * H], hs[row * H:(row + 1) * H], \
                prev[row * H:(row + 1) * H]
            for j in range(H):
                n = gru_candidate(ar[2 * H + j], nr[j])
                gr[2 * H + j] = n
                hr[j] = gru_state(pr[j], gr[H + j], n)


@njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _forward_layer_parallel(layer, steps, B, H, A, a0, h0, reset, Wh, prev, q, gates, hs, hz,
                            nq):
    n_chunks = (B + ROW_CHUNK - 1) // ROW_CHUNK
    for c in prange(n_chunks):
        _layer_forward_rows(layer, steps, B, H, A, a0, h0, layer * B * H, reset, Wh,
                            layer * H * 3 * H, prev, q, gates, hs, hz, nq, c * ROW_CHUNK,
                            min(B, (c + 1) * ROW_CHUNK))


@njit(cache=True, nogil=True, error_model="numpy")
def _forward_layer(layer, steps, B, H, A, a0, h0, reset, Wh, prev, q, gates, hs, hz, nq):
    if 3.0 * steps * B * H * H >= PARALLEL_MIN_WORK and B > ROW_CHUNK:
        _forward_layer_parallel(layer, steps, B, H, A, a0, h0, reset, Wh, prev, q, gates, hs, hz,
                                nq)
    else:
        for c in range((B + ROW_CHUNK - 1) // ROW_CHUNK):
            _layer_forward_rows(layer, steps, B, H, A, a0, h0, layer * B * H, reset, Wh,
                                layer * H * 3 * H, prev, q, gates, hs, hz, nq, c * ROW_CHUNK,
                                min(B, (c + 1) * ROW_CHUNK))


@njit(cache=True, nogil=True, error_model="numpy")
def stack_forward(steps, B, L, H, A0, h0, reset, wx_rest, wx_off, Wh, wh_off, bias, b_off, prev,
                  q, gates, hs, A, hz, nq):
    """A0 [steps*B*3H] flat; weights read from flat arrays at the given offsets."""
    n = steps * B
    whl = Wh[wh_off:wh_off + L * H * 3 * H]
    for layer in range(L):
        if layer == 0:
            _forward_layer(0, steps, B, H, A0, 0, h0, reset, whl, prev, q, gates, hs, hz, nq)
        else:
            for row in range(n):
                A[row * 3 * H:(row + 1) * 3 * H] = bias[b_off + layer * 3 * H:
                                                        b_off + (layer + 1) * 3 * H]
            gemm_par(True, False, False, n, 3 * H, H, 1.0, hs, (layer - 1) * n * H, H, wx_rest,
                     wx_off + (layer - 1) * H * 3 * H, 3 * H, 1.0, A, 0, 3 * H)
            _forward_layer(layer, steps, B, H, A, 0, h0, reset, whl, prev, q, gates, hs, hz, nq)


@njit(cache=True, nogil=True, error_model="numpy")
def _layer_backward_rows(layer, steps, B, H, reset, Wh, wh0, prev, gates, d_out, dA, dh, dht,
                         dq, dhn, dh0, b0, b1):
    m = b1 - b0
    off = layer * steps * B
    dh[b0 * H:b1 * H] = 0
    for t in range(steps - 1, -1, -1):
        row0 = t * B + b0
        for b in range(b0, b1):
            row = t * B + b
            g = (off + row) * 3 * H
            p = (off + row) * H
            gr, pr = gates[g:g + 3 * H], prev[p:p + H]
            dor, dhr, dtr = d_out[row * H:(row + 1) * H], dh[b * H:(b + 1) * H], \
                dht[b * H:(b + 1) * H]
            dar = dA[row * 3 * H:(row + 1) * 3 * H]
            for j in range(H):
                d = dor[j] + dhr[j]
                dtr[j] = d
                dar[2 * H + j] = gru_grad_candidate(d, gr[H + j], gr[2 * H + j])
                dar[H + j] = gru_grad_update(d, gr[H + j], gr[2 * H + j], pr[j])
        gemm_rm(False, True, m, H, H, 1.0, dA, row0 * 3 * H + 2 * H, 3 * H, Wh, wh0 + 2 * H,
                3 * H, 0.0, dq, b0 * H, H)
        for b in range(b0, b1):
            row = t * B + b
            g = (off + row) * 3 * H
            p = (off + row) * H
            gr, pr = gates[g:g + 3 * H], prev[p:p + H]
            dqr, dtr, dnr = dq[b * H:(b + 1) * H], dht[b * H:(b + 1) * H], dhn[b * H:(b + 1) * H]
            dar = dA[row * 3 * H:(row + 1) * 3 * H]
            for j in range(H):
                dar[j] = gru_grad_reset(dqr[j], pr[j], gr[j])
                dnr[j] = gru_grad_state(dtr[j], gr[H + j], dqr[j], gr[j])
        gemm_rm(False, True, m, H, 2 * H, 1.0, dA, row0 * 3 * H, 3 * H, Wh, wh0, 3 * H, 1.0, dhn,
                b0 * H, H)
        for b in range(b0, b1):
            if reset[t * B + b]:
                dh[b * H:(b + 1) * H] = 0
            else:
                dh[b * H:(b + 1) * H] = dhn[b * H:(b + 1) * H]
    if dh0.shape[0] > 0:
        dh0[(layer * B + b0) * H:(layer * B + b1) * H] = dh[b0 * H:b1 * H]


@njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _backward_layer_parallel(layer, steps, B, H, reset, Wh, prev, gates, d_out, dA, dh, dht, dq,
                             dhn, dh0):
    n_chunks = (B + ROW_CHUNK - 1) // ROW_CHUNK
    for c in prange(n_chunks):
        _layer_backward_rows(layer, steps, B, H, reset, Wh, layer * H * 3 * H, prev, gates, d_out,
                             dA, dh, dht, dq, dhn, dh0, c * ROW_CHUNK,
                             min(B, (c + 1) * ROW_CHUNK))


@njit(cache=True, nogil=True, error_model="numpy")
def _backward_layer(layer, steps, B, H, reset, Wh, prev, gates, d_out, dA, dh, dht, dq, dhn,
                    dh0):
    if 3.0 * steps * B * H * H >= PARALLEL_MIN_WORK and B > ROW_CHUNK:
        _backward_layer_parallel(layer, steps, B, H, reset, Wh, prev, gates, d_out, dA, dh, dht,
                                 dq, dhn, dh0)
    else:
        for c in range((B + ROW_CHUNK - 1) // ROW_CHUNK):
            _layer_backward_rows(layer, steps, B, H, reset, Wh, layer * H * 3 * H, prev, gates,
                                 d_out, dA, dh, dht, dq, dhn, dh0, c * ROW_CHUNK,
                                 min(B, (c + 1) * ROW_CHUNK))


@njit(cache=True, nogil=True, error_model="numpy")
def column_sums(a, rows, cols, out, o0):
    n_chunks = (cols + COL_CHUNK - 1) // COL_CHUNK
    for c in range(n_chunks):
        j0 = c * COL_CHUNK
        j1 = min(cols, j0 + COL_CHUNK)
        for j in range(j0, j1):
            out[o0 + j] = 0
        for i in range(rows):
            for j in range(j0, j1):
                out[o0 + j] += a[i * cols + j]


@njit(cache=True, nogil=True, error_model="numpy")
def stack_backward(steps, B, L, H, d_top, reset, wx_rest, wx_off, Wh, wh_off, grads, gwx_off,
                   gwh_off, gb_off, dh0, prev, q, gates, hs, dA, d_out, dh, dht, dq, dhn):
    """Leaves dA0 in dA; writes the weight gradients into ``grads`` at the given offsets."""
    n = steps * B
    whl = Wh[wh_off:wh_off + L * H * 3 * H]
    d_out[:n * H] = d_top[:n * H]
    for layer in range(L - 1, -1, -1):
        _backward_layer(layer, steps, B, H, reset, whl, prev, gates, d_out, dA, dh, dht, dq, dhn,
                        dh0)
        off = layer * n
        gw = gwh_off + layer * H * 3 * H
        gemm_par(False, True, False, H, 2 * H, n, 1.0, prev, off * H, H, dA, 0, 3 * H, 0.0, grads,
                 gw, 3 * H)
        gemm_par(False, True, False, H, H, n, 1.0, q, off * H, H, dA, 2 * H, 3 * H, 0.0, grads,
                 gw + 2 * H, 3 * H)
        column_sums(dA, n, 3 * H, grads, gb_off + layer * 3 * H)
        if layer > 0:
            gemm_par(False, True, False, H, 3 * H, n, 1.0, hs, (off - n) * H, H, dA, 0, 3 * H,
                     0.0, grads, gwx_off + (layer - 1) * H * 3 * H, 3 * H)
            gemm_par(True, False, True, n, H, 3 * H, 1.0, dA, 0, 3 * H, wx_rest,
                     wx_off + (layer - 1) * H * 3 * H, 3 * H, 0.0, d_out, 0, H)


# ---- sampled output layer -----------------------------------------------------------------------
@njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _score_chunks(N, H1, S, out_table, samples, haug, ws, sc, part, neg_only):
    n_chunks = (S + SAMPLE_CHUNK - 1) // SAMPLE_CHUNK
    for c in prange(n_chunks):
        j0 = c * SAMPLE_CHUNK
        j1 = min(S, j0 + SAMPLE_CHUNK)
        for j in range(j0, j1):
            ws[j * H1:(j + 1) * H1] = out_table[samples[j]]
        gemm_rm(False, True, j1 - j0, N, H1, 1.0, ws, j0 * H1, H1, haug, 0, H1, 0.0, sc, j0 * N,
                N)
        mx = part[c, 0]
        mx[:] = -np.inf
        for j in range(j0, j1):
            row = sc[j * N:(j + 1) * N]
            for i in range(N):
                v = -np.inf if (neg_only and i == j) else float(row[i])
                mx[i] = v if v > mx[i] else mx[i]


@njit(cache=True, nogil=True, error_model="numpy")
def _sum_chunk(c, N, S, sc, ex, aux, part, m, tgt, loss, neg_only):
    j0 = c * SAMPLE_CHUNK
    j1 = min(S, j0 + SAMPLE_CHUNK)
    p = part[c]
    p[:] = 0.0
    p0, p1, p2, p3 = p[0], p[1], p[2], p[3]
    for j in range(j0, j1):
        # row views: see _layer_forward_rows
        r, e, x = sc[j * N:(j + 1) * N], ex[j * N:(j + 1) * N], aux[j * N:(j + 1) * N]
        one = cast_like(r[0], 1.0)
        for i in range(N):
            e[i] = gru_exp(r[i] - m[i])
        if neg_only and j < N:
            e[j] = cast_like(r[0], 0.0)
        if loss == 1:
            for i in range(N):
                x[i] = gru_sigmoid(tgt[i] - r[i])
            for i in range(N):
                p0[i] += float(e[i])
                p1[i] += float(e[i] * x[i])
                p2[i] += float(e[i] * x[i] * (one - x[i]))
                p3[i] += float(e[i] * r[i] * r[i])
        elif loss == 2:
            for i in range(N):
                x[i] = gru_sigmoid(r[i] - tgt[i])
            for i in range(N):
                v = gru_sigmoid(r[i] * r[i])
                p0[i] += float(e[i])
                p1[i] += float(e[i] * (x[i] + v))
                p2[i] += float(e[i] * x[i] * (one - x[i]))
        else:
            for i in range(N):
                p0[i] += float(e[i])


@njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _sum_chunks(N, S, sc, ex, aux, part, m, tgt, loss, neg_only):
    n_chunks = (S + SAMPLE_CHUNK - 1) // SAMPLE_CHUNK
    for c in prange(n_chunks):
        _sum_chunk(c, N, S, sc, ex, aux, part, m, tgt, loss, neg_only)


@njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _grad_chunks(N, H1, S, sc, ex, aux, haug, dws, Z, P, R, dt, loss, bpreg, grad_scale,
                 neg_only):
    n_chunks = (S + SAMPLE_CHUNK - 1) // SAMPLE_CHUNK
    for c in prange(n_chunks):
        j0 = c * SAMPLE_CHUNK
        j1 = min(S, j0 + SAMPLE_CHUNK)
        for j in range(j0, j1):
            rr, e, x = sc[j * N:(j + 1) * N], ex[j * N:(j + 1) * N], aux[j * N:(j + 1) * N]
            for i in range(N):
                r = rr[i]
                s = e[i] / Z[i]
                if loss == 0:
                    g = s - (cast_like(r, 1.0) if i == j else cast_like(r, 0.0))
                elif loss == 1:
                    g = bpr_max_grad_negative(s, x[i], r, P[i], R[i], bpreg)
                else:
                    g = top1_max_grad_negative(s, x[i], gru_sigmoid(r * r), r, P[i])
                if neg_only and i == j:
                    g = dt[i]
                rr[i] = g * grad_scale
        gemm_rm(False, False, j1 - j0, H1, N, 1.0, sc, j0 * N, N, haug, 0, H1, 0.0, dws, j0 * H1,
                H1)


@njit(cache=True, nogil=True, error_model="numpy")
def output_loss(hidden, h_off, N, H, out_table, samples, S, loss, bpreg, grad_scale, haug, ws,
                sc, ex, aux, part, dws, dhid):
    """See gru_cpu.h output_loss; hidden is flat with row i at h_off + i*H. Fills dhid [N*H] and
    dws [S*(H+1)], returns the summed loss."""
    H1 = H + 1
    neg_only = loss != 0
    dtype_one = cast_like(hidden[0], 1.0)
    for i in range(N):
        haug[i * H1:i * H1 + H] = hidden[h_off + i * H:h_off + (i + 1) * H]
        haug[i * H1 + H] = dtype_one
    n_chunks = (S + SAMPLE_CHUNK - 1) // SAMPLE_CHUNK
    _score_chunks(N, H1, S, out_table, samples, haug, ws, sc, part, neg_only)
    m = np.empty(N, hidden.dtype)
    tgt = np.empty(N, hidden.dtype)
    for i in range(N):
        v = -np.inf
        for c in range(n_chunks):
            v = max(v, part[c, 0, i])
        m[i] = v
        tgt[i] = sc[i * N + i]
    _sum_chunks(N, S, sc, ex, aux, part, m, tgt, loss, neg_only)
    Z = np.empty(N, hidden.dtype)
    P = np.zeros(N, hidden.dtype)
    R = np.zeros(N, hidden.dtype)
    dt = np.zeros(N, hidden.dtype)
    total = 0.0
    for i in range(N):
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        for c in range(n_chunks):
            s0 += part[c, 0, i]
            s1 += part[c, 1, i]
            s2 += part[c, 2, i]
            s3 += part[c, 3, i]
        Z[i] = s0
        if loss == 0:
            total += np.log(s0) + float(m[i]) - float(tgt[i])
        elif loss == 1:
            Pi = s1 / s0
            Ri = s3 / s0
            P[i], R[i] = Pi, Ri
            total += -np.log(Pi + 1e-24) + bpreg * Ri
            dt[i] = -(s2 / s0) / (Pi + 1e-24)
        else:
            Pi = s1 / s0
            P[i] = Pi
            total += Pi
            dt[i] = -(s2 / s0)
    _grad_chunks(N, H1, S, sc, ex, aux, haug, dws, Z, P, R, dt, loss,
                 cast_like(hidden[0], bpreg), cast_like(hidden[0], grad_scale), neg_only)
    gemm_par(False, True, False, N, H, S, 1.0, sc, 0, N, ws, 0, H1, 0.0, dhid, 0, H)
    return total


# ---- optimizer ---------------------------------------------------------------------------------
@njit(inline="always", cache=True, error_model="numpy")
def _opt_apply(w, s1, s2, g, method, lr, momentum, beta1, beta2, eps, step_size, inv_sqrt_bc2):
    if method == 0:
        return adam_update(w, s1, s2, g, step_size, inv_sqrt_bc2, beta1, beta2, eps)
    if momentum > 0:
        return adagrad_momentum_update(w, s1, s2, g, lr, momentum, eps)
    w, s1 = adagrad_update(w, s1, g, lr, eps)
    return w, s1, s2


@njit(cache=True, nogil=True, error_model="numpy")
def _dense_chunk(w, s1, s2, g, o, c):
    k0, k1 = c * DENSE_CHUNK, min(w.shape[0], (c + 1) * DENSE_CHUNK)
    _opt_row(w[k0:k1], s1[k0:k1], s2[k0:k1], g[k0:k1], o)


@njit(cache=True, nogil=True, error_model="numpy")
def _opt_row(w, s1, s2, g, o):
    """One step of len(w) contiguous parameters (views, so the loop vectorises)."""
    method, lr, momentum, beta1, beta2, eps, step_size, inv_sqrt_bc2 = o
    for k in range(w.shape[0]):
        w[k], s1[k], s2[k] = _opt_apply(w[k], s1[k], s2[k], g[k], method, lr, momentum, beta1,
                                        beta2, eps, step_size, inv_sqrt_bc2)


@njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _dense_update_parallel(w, s1, s2, g, o, n_chunks):
    for c in prange(n_chunks):
        _dense_chunk(w, s1, s2, g, o, c)


@njit(cache=True, nogil=True, error_model="numpy")
def _dense_update(w, s1, s2, g, o):
    n_chunks = (w.shape[0] + DENSE_CHUNK - 1) // DENSE_CHUNK
    if w.shape[0] >= PARALLEL_MIN_ELEMENTS and n_chunks > 1:
        _dense_update_parallel(w, s1, s2, g, o, n_chunks)
    else:
        for c in range(n_chunks):
            _dense_chunk(w, s1, s2, g, o, c)


@njit(cache=True, nogil=True, error_model="numpy")
def _rows_part(table, s1, s2, rows, grads, n, slot_of, o, part, parts):
    """Rows i with i % parts == part: duplicates summed into their first occurrence (in order),
    then one step per distinct row, so the result does not depend on the number of parts."""
    width = table.shape[1]
    for k in range(n):
        i = rows[k]
        if i % parts != part:
            continue
        if slot_of[i] < 0:
            slot_of[i] = k
        else:
            d = slot_of[i] * width
            dst, src = grads[d:d + width], grads[k * width:(k + 1) * width]
            for f in range(width):
                dst[f] += src[f]
    for k in range(n):
        i = rows[k]
        if i % parts != part or slot_of[i] != k:
            continue
        _opt_row(table[i], s1[i], s2[i], grads[k * width:(k + 1) * width], o)
        slot_of[i] = -1


@njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _rows_update_parallel(table, s1, s2, rows, grads, n, slot_of, o, parts):
    for part in prange(parts):
        _rows_part(table, s1, s2, rows, grads, n, slot_of, o, part, parts)


@njit(cache=True, nogil=True, error_model="numpy")
def rows_update(table, s1, s2, rows, grads, n, slot_of, o, parts):
    """Sparse rows step (as gru_rows_update in C++): rows split among ``parts`` threads by id."""
    if float(n) * table.shape[1] >= PARALLEL_MIN_ELEMENTS and parts > 1:
        _rows_update_parallel(table, s1, s2, rows, grads, n, slot_of, o, parts)
    else:
        _rows_part(table, s1, s2, rows, grads, n, slot_of, o, 0, 1)


@njit(cache=True, nogil=True, error_model="numpy")
def _make_opt(dtype_one, method, lr, momentum, beta1, beta2, eps, t):
    adam = method == 0
    return (method, cast_like(dtype_one, lr), cast_like(dtype_one, momentum),
            cast_like(dtype_one, beta1), cast_like(dtype_one, beta2), cast_like(dtype_one, eps),
            cast_like(dtype_one, adam_step_size(lr, beta1, t) if adam else lr),
            cast_like(dtype_one, adam_inv_sqrt_bc2(beta2, t) if adam else 1.0))


# ---- the training epoch ------------------------------------------------------------------------
@njit(cache=True, nogil=True, error_model="numpy")
def _gather_inputs(x_items, emb, X, A0, mask_x, bias, embedded, dropout_embed, key_emb,
                   first, keep_x):
    n = x_items.shape[0]
    D = emb.shape[1]
    H3 = A0.shape[0] // n
    for row in range(n):
        src = emb[x_items[row]]
        for f in range(D):
            if dropout_embed > 0:
                k = row * D + f
                u = rng_uniform(rng_at(key_emb, first + k))
                mask_x[k] = keep_x if u >= dropout_embed else cast_like(keep_x, 0.0)
                X[row * D + f] = src[f] * mask_x[k]
            else:
                X[row * D + f] = src[f]
        for j in range(H3):
            A0[row * H3 + j] = bias[j] if embedded else X[row * D + j] + bias[j]


@njit(cache=True, nogil=True, error_model="numpy")
def _epoch(inputs, targets, reset, hidden, emb, emb_s1, emb_s2, gru, gru_s1, gru_s2, out,
           out_s1, out_s2, neg_prob, neg_alias, embedded, loss, n_sample, bptt, method, bpreg,
           dropout_embed, dropout_hidden, lr, momentum, beta1, beta2, eps, step0, seed, epoch,
           n_threads):
    n_steps, B = inputs.shape
    L, _, H = hidden.shape
    n_items, D = emb.shape
    Tb = bptt
    K = n_sample
    S = B + K
    H3 = 3 * H
    H1 = H + 1
    n = Tb * B
    n_blocks = n_steps // Tb
    dtype = gru.dtype
    one = cast_like(gru[0], 1.0)
    wx0_size = D * H3 if embedded else 0
    wx_off = wx0_size
    wh_off = wx_off + (L - 1) * H * H3
    b_off = wh_off + L * H * H3
    bias = gru[b_off:]
    prev = np.empty(L * n * H, dtype)
    q = np.empty(L * n * H, dtype)
    gates = np.empty(L * n * H3, dtype)
    hs = np.empty(L * n * H, dtype)
    A = np.empty(n * H3, dtype)
    hz = np.empty(B * 2 * H, dtype)
    nq = np.empty(B * H, dtype)
    dA = np.empty(n * H3, dtype)
    d_out = np.empty(n * H, dtype)
    dh = np.empty(B * H, dtype)
    dht = np.empty(B * H, dtype)
    dq = np.empty(B * H, dtype)
    dhn = np.empty(B * H, dtype)
    no_dh0 = np.empty(0, dtype)
    n_chunks = (S + SAMPLE_CHUNK - 1) // SAMPLE_CHUNK
    haug = np.empty(B * H1, dtype)
    ws = np.empty(S * H1, dtype)
    sc = np.empty(S * B, dtype)
    ex = np.empty(S * B, dtype)
    aux = np.empty(S * B, dtype)
    part = np.empty((n_chunks, 4, B), np.float64)
    dws = np.empty(S * H1, dtype)
    dhid = np.empty(B * H, dtype)
    X = np.empty(n * D, dtype)
    A0 = np.empty(n * H3, dtype)
    mask_x = np.empty(n * D if dropout_embed > 0 else 0, dtype)
    mask_h = np.empty(n * H if dropout_hidden > 0 else 0, dtype)
    top = np.empty(n * H, dtype)
    d_top = np.empty(n * H, dtype)
    grads = np.empty(gru.shape[0], dtype)
    dX = np.empty(n * D, dtype)
    out_grads = np.empty(Tb * S * H1, dtype)
    samples = np.empty(Tb * S, inputs.dtype)
    slot_of = np.full(n_items, -1, np.int64)
    key_neg = rng_key(seed, 4 * epoch + 1)
    key_emb = rng_key(seed, 4 * epoch + 2)
    key_hid = rng_key(seed, 4 * epoch + 3)
    keep_x = cast_like(one, 1.0 / (1.0 - dropout_embed))
    keep_h = cast_like(one, 1.0 / (1.0 - dropout_hidden))
    grad_scale = 1.0 / n
    flat_in = inputs.reshape(-1)
    flat_reset = reset.reshape(-1)
    flat_hidden = hidden.reshape(-1)
    total = 0.0
    for blk in range(n_blocks):
        s0 = blk * Tb
        x_items = flat_in[s0 * B:s0 * B + n]
        blk_reset = flat_reset[s0 * B:s0 * B + n]
        _gather_inputs(x_items, emb, X, A0, mask_x, bias, embedded, dropout_embed, key_emb,
                       s0 * B * D, keep_x)
        if embedded:
            gemm_par(True, False, False, n, H3, D, 1.0, X, 0, D, gru, 0, H3, 1.0, A0, 0, H3)
        stack_forward(Tb, B, L, H, A0, flat_hidden, blk_reset, gru, wx_off, gru, wh_off, gru,
                      b_off, prev, q, gates, hs, A, hz, nq)
        ht = (L - 1) * n * H
        if dropout_hidden > 0:
            for k in range(n * H):
                u = rng_uniform(rng_at(key_hid, s0 * B * H + k))
                mask_h[k] = keep_h if u >= dropout_hidden else cast_like(keep_h, 0.0)
                top[k] = hs[ht + k] * mask_h[k]
        else:
            top[:] = hs[ht:ht + n * H]
        for t in range(Tb):
            smp = samples[t * S:(t + 1) * S]
            smp[:B] = targets[s0 + t]
            for k in range(K):
                smp[B + k] = rng_alias_draw(rng_at(key_neg, (s0 + t) * K + k), neg_prob,
                                            neg_alias, n_items)
            total += output_loss(top, t * B * H, B, H, out, smp, S, loss, bpreg, grad_scale,
                                 haug, ws, sc, ex, aux, part, dws, dhid)
            d_top[t * B * H:(t + 1) * B * H] = dhid
            out_grads[t * S * H1:(t + 1) * S * H1] = dws
        if dropout_hidden > 0:
            for k in range(n * H):
                d_top[k] *= mask_h[k]
        stack_backward(Tb, B, L, H, d_top, blk_reset, gru, wx_off, gru, wh_off, grads, wx_off,
                       wh_off, b_off, no_dh0, prev, q, gates, hs, dA, d_out, dh, dht, dq, dhn)
        if embedded:
            gemm_par(False, True, False, D, H3, n, 1.0, X, 0, D, dA, 0, H3, 0.0, grads, 0, H3)
            gemm_par(True, False, True, n, D, H3, 1.0, dA, 0, H3, gru, 0, H3, 0.0, dX, 0, D)
            if dropout_embed > 0:
                for k in range(n * D):
                    dX[k] *= mask_x[k]
        else:
            dX[:] = dA[:n * H3]
        o = _make_opt(one, method, lr, momentum, beta1, beta2, eps, step0 + blk + 1)
        _dense_update(gru, gru_s1, gru_s2, grads, o)
        rows_update(emb, emb_s1, emb_s2, x_items, dX, n, slot_of, o, n_threads)
        rows_update(out, out_s1, out_s2, samples, out_grads, Tb * S, slot_of, o, n_threads)
        for layer in range(L):
            src = (layer * n + (Tb - 1) * B) * H
            flat_hidden[layer * B * H:(layer + 1) * B * H] = hs[src:src + B * H]
    return total, n_blocks * n


def gru4rec_train_epoch(inputs, targets, reset, hidden, emb, emb_s1, emb_s2, gru_params, gru_s1,
                        gru_s2, out_table, out_s1, out_s2, neg_prob, neg_alias, spec,
                        n_threads=1):
    """See ``fastrec.backends._contract.GRU4REC_TRAIN_EPOCH_DOC``."""
    if inputs.shape[0] < spec.bptt:
        return 0.0, 0
    with thread_limit(n_threads) as threads, single_threaded_blas():
        total, n_events = _epoch(
            inputs, targets, reset, hidden, emb, emb_s1, emb_s2, gru_params, gru_s1, gru_s2,
            out_table, out_s1, out_s2, neg_prob, neg_alias, bool(spec.embedded), int(spec.loss),
            int(spec.n_sample), int(spec.bptt), int(spec.method), float(spec.bpreg),
            float(spec.dropout_embed), float(spec.dropout_hidden), float(spec.lr),
            float(spec.momentum), float(spec.beta1), float(spec.beta2), float(spec.eps),
            int(spec.step0), np.uint64(spec.seed % 2**64), int(spec.epoch), threads)
    return float(total), int(n_events)


def gru_forward(X, h0, reset, Wx0, Wx_rest, Wh, b, n_threads=1):
    """See ``fastrec.backends._contract.GRU_FORWARD_DOC``."""
    steps, B, _ = X.shape
    L, H = Wh.shape[0], Wh.shape[1]
    n = steps * B
    dtype = X.dtype
    prev, q, hs = (np.empty(L * n * H, dtype) for _ in range(3))
    gates = np.empty(L * n * 3 * H, dtype)
    # numpy's products stay single-threaded too (see _gru.pyx)
    with thread_limit(n_threads), single_threaded_blas():
        A0 = np.ascontiguousarray(X @ Wx0 + b[0]).reshape(-1)
        stack_forward(steps, B, L, H, A0, h0.reshape(-1), reset.reshape(-1),
                      Wx_rest.reshape(-1), 0, Wh.reshape(-1), 0, b.reshape(-1), 0, prev, q, gates,
                      hs, np.empty(n * 3 * H, dtype), np.empty(B * 2 * H, dtype),
                      np.empty(B * H, dtype))
    return hs.reshape(L, steps, B, H), gates.reshape(L, steps, B, 3 * H)


def gru_backward(X, h0, reset, Wx0, Wx_rest, Wh, b, hs, gates, d_top, n_threads=1):
    """See ``fastrec.backends._contract.GRU_BACKWARD_DOC``."""
    L, steps, B, H = hs.shape
    n = steps * B
    dtype = X.dtype
    prev = np.where(reset[None, :, :, None] != 0, 0,
                    np.concatenate([h0[:, None], hs[:, :-1]], axis=1)).astype(dtype)
    q = (gates[..., :H] * prev).astype(dtype)
    sizes = ((L - 1) * H * 3 * H, L * H * 3 * H, L * 3 * H)
    grads = np.zeros(sum(sizes), dtype)
    dA = np.empty(n * 3 * H, dtype)
    dh0 = np.empty(L * B * H, dtype)
    with thread_limit(n_threads), single_threaded_blas():
        stack_backward(steps, B, L, H, np.ascontiguousarray(d_top).reshape(-1), reset.reshape(-1),
                       Wx_rest.reshape(-1), 0, Wh.reshape(-1), 0, grads, 0, sizes[0],
                       sizes[0] + sizes[1], dh0, prev.reshape(-1), q.reshape(-1),
                       gates.reshape(-1), hs.reshape(-1), dA, np.empty(n * H, dtype),
                       np.empty(B * H, dtype), np.empty(B * H, dtype), np.empty(B * H, dtype),
                       np.empty(B * H, dtype))
        dA0 = dA.reshape(n, 3 * H)
        dX = (dA0 @ Wx0.T).reshape(X.shape)
        dWx0 = X.reshape(n, -1).T @ dA0
    dWx_rest = grads[:sizes[0]].reshape(Wx_rest.shape)
    dWh = grads[sizes[0]:sizes[0] + sizes[1]].reshape(Wh.shape)
    db = grads[sizes[0] + sizes[1]:].reshape(b.shape)
    return dX, dh0.reshape(h0.shape), dWx0, dWx_rest, dWh, db


def gru4rec_output_loss(hidden, out_table, samples, loss, bpreg, grad_scale, n_threads=1):
    """See ``fastrec.backends._contract.GRU4REC_OUTPUT_LOSS_DOC``."""
    N, H = hidden.shape
    S = samples.shape[0]
    dtype = hidden.dtype
    n_chunks = (S + SAMPLE_CHUNK - 1) // SAMPLE_CHUNK
    dws = np.empty(S * (H + 1), dtype)
    dhid = np.empty(N * H, dtype)
    with thread_limit(n_threads), single_threaded_blas():
        total = output_loss(hidden.reshape(-1), 0, N, H, out_table, samples, S, int(loss),
                            float(bpreg), float(grad_scale), np.empty(N * (H + 1), dtype),
                            np.empty(S * (H + 1), dtype), np.empty(S * N, dtype),
                            np.empty(S * N, dtype), np.empty(S * N, dtype),
                            np.empty((n_chunks, 4, N), np.float64), dws, dhid)
    return float(total), dhid.reshape(N, H), dws.reshape(S, H + 1)
