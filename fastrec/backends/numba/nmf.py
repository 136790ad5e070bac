"""Numba NMF multiplicative updates: the Cython kernels' loops (rows in parallel chunks, each
output row owned by one thread, Gram matrix and column sums over fixed chunks) with the scalar
math from ``scalar.py``, the mirror of ``csrc/include/fastrec/nmf.h``. At ranks from
``NMF_BLAS_MIN_RANK`` on, the Frobenius dense products are the Cython kernels' BLAS calls
(``blas.py``; nmf_cpu.h, "Large ranks").

Numba's on-disk cache of a kernel is keyed on this file only, not on ``scalar.py``: a change to
the scalar math must come with a change here, or cached kernels keep the old math (the
overflow rule of ``nmf_mu_step``, and its restriction to finite num and den, came with
this note)."""

import numpy as np
from numba import njit, prange

from fastrec.backends._blas import single_threaded_blas
from fastrec.backends._cpu_layout import NMF_BLAS_MIN_RANK
from fastrec.backends.numba.blas import gemm_rm, register_syrk, syrk_upper_rm
from fastrec.backends.numba.scalar import (
    NMF_EPSILON,
    nmf_bias_solve,
    nmf_kl_entry,
    nmf_kl_ratio,
    nmf_mu_step,
    nmf_negative_part,
    nmf_positive_part,
    nmf_regularised_denominator,
    sgd_lane_dot,
)
from fastrec.backends.numba.threads import thread_limit

ROW_CHUNK = 64  # rows per parallel task
STATS_CHUNK = 1024  # rows per partial Gram / column sum, fixed so sums ignore the thread count
GRAM_MAX_CHUNKS = 32  # at BLAS ranks, partial Gram matrices at most (chunks grow instead)
BLAS_ROW_CHUNK = 128  # at BLAS ranks, rows per parallel task (one GEMM for their denominators)


# The Frobenius full mode's products (Gram matrices, denominators, numerators) are fused
# multiply-add chains in the Cython kernels' order (csrc/include/fastrec/nmf_cpu.h, "Fused
# products"): LLVM's "contract" flag turns each `t += a * b` below into one FMA. Only these
# functions carry the flag; everything else rounds every product and sum.
_FUSED = dict(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})


@njit(**_FUSED)
def _gram_rows(other, begin, end, g):
    """sum_r other_r other_r^T over rows [begin, end) into g [k * k], both triangles (each entry
    the Cython kernels' chain; the full square vectorises better than the triangle)."""
    k = other.shape[1]
    r = begin
    while r + 4 <= end:
        a, b, c, d = other[r], other[r + 1], other[r + 2], other[r + 3]
        for j in range(k):
            aj, bj, cj, dj = a[j], b[j], c[j], d[j]
            row = g[j * k:(j + 1) * k]
            for m in range(k):
                t = row[m]
                t += aj * a[m]
                t += bj * b[m]
                t += cj * c[m]
                t += dj * d[m]
                row[m] = t
        r += 4
    while r < end:
        a = other[r]
        for j in range(k):
            aj = a[j]
            row = g[j * k:(j + 1) * k]
            for m in range(k):
                row[m] += aj * a[m]
        r += 1


@njit(**_FUSED)
def _gram_times_rows(w, gram, den):
    """den [m, k] = w [m, k] . gram for the symmetric Gram matrix gram [k, k]: each entry one
    chain over j in order; four rows at a time, so four independent chains share each load of
    a Gram row."""
    m, k = w.shape
    den[:m] = 0
    r = 0
    while r + 4 <= m:
        d0, d1, d2, d3 = den[r], den[r + 1], den[r + 2], den[r + 3]
        for j in range(k):
            w0, w1, w2, w3 = w[r, j], w[r + 1, j], w[r + 2, j], w[r + 3, j]
            g = gram[j]
            for f in range(k):
                gf = g[f]
                d0[f] += w0 * gf
                d1[f] += w1 * gf
                d2[f] += w2 * gf
                d3[f] += w3 * gf
        r += 4
    while r < m:
        d = den[r]
        for j in range(k):
            wj = w[r, j]
            g = gram[j]
            for f in range(k):
                d[f] += wj * g[f]
        r += 1


@njit(**_FUSED)
def _frobenius_numerator(indptr, indices, data, other, r, num):
    """num [k] = sum of x * other[col] over row r's stored entries, one chain in entry order."""
    num[:] = 0
    for e in range(indptr[r], indptr[r + 1]):
        x = data[e]
        h = other[indices[e]]
        for f in range(num.shape[0]):
            num[f] += x * h[f]


@njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def _stats_partial(other, beta, partial):
    n, k = other.shape
    for c in prange(partial.shape[0]):
        begin = c * STATS_CHUNK
        end = min(begin + STATS_CHUNK, n)
        out = partial[c]
        if beta == 2:
            _gram_rows(other, begin, end, out)
        else:
            for r in range(begin, end):
                row = other[r]
                for f in range(k):
                    out[f] += row[f]


@njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def _gram_partial_blas(other, chunk, partial):
    """partial[c] = upper triangle of the Gram matrix of rows [c * chunk, (c + 1) * chunk)."""
    n, k = other.shape
    flat = other.reshape(-1)
    for c in prange(partial.shape[0]):
        begin = c * chunk
        end = min(begin + chunk, n)
        syrk_upper_rm(k, end - begin, 1.0, flat, begin * k, k, 0.0, partial[c], 0, k)


def _stats(other, beta, n_threads):
    """Symmetric Gram matrix other^T other [k, k] (beta 2) or column sums [k] (beta 1)."""
    n, k = other.shape
    blas = beta == 2 and k >= NMF_BLAS_MIN_RANK
    chunk = max(STATS_CHUNK, -(-n // GRAM_MAX_CHUNKS)) if blas else STATS_CHUNK
    n_chunks = (n + chunk - 1) // chunk
    partial = np.zeros((max(n_chunks, 1), k * k if beta == 2 else k), dtype=other.dtype)
    if blas:
        register_syrk()
        with single_threaded_blas(), thread_limit(n_threads):
            _gram_partial_blas(other, chunk, partial[:n_chunks])
    else:
        with thread_limit(n_threads):
            _stats_partial(other, beta, partial)
    total = partial.sum(axis=0)
    if beta != 2:
        return total
    upper = np.triu(total.reshape(k, k))
    return np.ascontiguousarray(upper + np.triu(upper, 1).T)


@njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def _full(indptr, indices, data, factors, other, stats, beta, l1, l2, eps):
    n, k = factors.shape
    for c in prange((n + ROW_CHUNK - 1) // ROW_CHUNK):
        num = np.empty(k, factors.dtype)
        begin, end = c * ROW_CHUNK, min((c + 1) * ROW_CHUNK, n)
        # Frobenius: the chunk's denominators, from its rows before any is updated.
        dens = np.empty((end - begin if beta == 2 else 0, k), factors.dtype)
        if beta == 2:
            _gram_times_rows(factors[begin:end], stats, dens)
        for r in range(begin, end):
            w = factors[r]
            if beta == 2:
                _frobenius_numerator(indptr, indices, data, other, r, num)
                den = dens[r - begin]
            else:
                num[:] = 0
                for e in range(indptr[r], indptr[r + 1]):
                    h = other[indices[e]]
                    ratio = nmf_kl_ratio(data[e], sgd_lane_dot(w, h), eps)
                    for f in range(k):
                        num[f] += ratio * h[f]
                den = stats[0]
            for f in range(k):
                w[f] = nmf_mu_step(w[f], num[f],
                                   nmf_regularised_denominator(den[f], w[f], l1, l2), eps)


@njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def _frobenius_blas(indptr, indices, data, factors, other, gram, l1, l2, eps):
    """Frobenius update at a BLAS rank: per task of BLAS_ROW_CHUNK rows, their denominators by
    one GEMM with the full symmetric Gram matrix, then each row's numerator and step."""
    n, k = factors.shape
    flat, gram_flat = factors.reshape(-1), gram.reshape(-1)
    for c in prange((n + BLAS_ROW_CHUNK - 1) // BLAS_ROW_CHUNK):
        begin, end = c * BLAS_ROW_CHUNK, min((c + 1) * BLAS_ROW_CHUNK, n)
        dens = np.empty((end - begin) * k, factors.dtype)
        gemm_rm(False, False, end - begin, k, k, 1.0, flat, begin * k, k, gram_flat, 0, k, 0.0,
                dens, 0, k)
        num = np.empty(k, factors.dtype)
        for r in range(begin, end):
            _frobenius_numerator(indptr, indices, data, other, r, num)
            w = factors[r]
            den = dens[(r - begin) * k:(r - begin + 1) * k]
            for f in range(k):
                w[f] = nmf_mu_step(w[f], num[f],
                                   nmf_regularised_denominator(den[f], w[f], l1, l2), eps)


@njit(cache=True, parallel=True, nogil=True)
def _observed(indptr, indices, data, factors, other, bias, other_bias, mu, beta, l1, l2,
              reg_bias, biased, eps, max_row):
    n, k = factors.shape
    for c in prange((n + ROW_CHUNK - 1) // ROW_CHUNK):
        num = np.empty(k, factors.dtype)
        den = np.empty(k, factors.dtype)
        dots = np.empty(max_row, factors.dtype)
        cast = np.empty(1, factors.dtype)  # int -> T without promoting to float64
        for r in range(c * ROW_CHUNK, min((c + 1) * ROW_CHUNK, n)):
            w = factors[r]
            start, stop = indptr[r], indptr[r + 1]
            cast[0] = stop - start
            count = cast[0]
            for e in range(start, stop):
                dots[e - start] = sgd_lane_dot(w, other[indices[e]])
            offset = eps - eps
            if biased:
                residual_sum = eps - eps
                for e in range(start, stop):
                    residual_sum += data[e] - mu - other_bias[indices[e]] - dots[e - start]
                bias[r] = nmf_bias_solve(residual_sum, count, reg_bias)
                offset = mu + bias[r]
            num[:] = 0
            den[:] = 0
            for e in range(start, stop):
                h = other[indices[e]]
                dot = dots[e - start]
                if beta == 2:
                    target = data[e] - offset - other_bias[indices[e]] if biased else data[e]
                    pos = nmf_positive_part(target)
                    neg = dot + nmf_negative_part(target)
                    for f in range(k):
                        num[f] += pos * h[f]
                        den[f] += neg * h[f]
                else:
                    ratio = nmf_kl_ratio(data[e], dot, eps)
                    for f in range(k):
                        num[f] += ratio * h[f]
                        den[f] += h[f]
            row_l1, row_l2 = count * l1, count * l2
            for f in range(k):
                w[f] = nmf_mu_step(w[f], num[f],
                                   nmf_regularised_denominator(den[f], w[f], row_l1, row_l2),
                                   eps)


@njit(cache=True, parallel=True, nogil=True)
def _loss_rows(indptr, indices, data, factors, other, bias, other_bias, mu, beta, observed,
               biased, partial):
    n = factors.shape[0]
    for c in prange(partial.shape[0]):
        total = 0.0
        for r in range(c * ROW_CHUNK, min((c + 1) * ROW_CHUNK, n)):
            w = factors[r]
            for e in range(indptr[r], indptr[r + 1]):
                x = float(data[e])
                dot = float(sgd_lane_dot(w, other[indices[e]]))
                if beta == 2:
                    if observed:
                        pred = dot
                        if biased:
                            pred = mu + float(bias[r]) + float(other_bias[indices[e]]) + dot
                        total += 0.5 * (x - pred) * (x - pred)
                    else:
                        total += x * x - 2.0 * x * dot
                else:
                    total += nmf_kl_entry(x, dot) + (dot if observed else 0.0)
        partial[c] = total


def _data_term(indptr, indices, data, factors, other, bias, other_bias, mu, beta, observed,
               biased, n_threads) -> float:
    partial = np.zeros(max(1, (factors.shape[0] + ROW_CHUNK - 1) // ROW_CHUNK))
    with thread_limit(n_threads):
        _loss_rows(indptr, indices, data, factors, other, bias, other_bias, float(mu), beta,
                   observed, biased, partial)
    return float(np.sum(partial))  # chunk order: independent of the thread count


def nmf_update_full(indptr, indices, data, factors, other, beta_loss, l1_reg, l2_reg,
                    n_threads=1) -> None:
    """See ``fastrec.backends._contract.NMF_UPDATE_FULL_DOC``."""
    if factors.shape[0] == 0:
        return
    cast = factors.dtype.type
    # Always 2-D for one compiled signature: the Gram matrix [k, k], or column sums as [1, k].
    stats = _stats(other, beta_loss, n_threads).reshape(-1, factors.shape[1])
    if beta_loss == 2 and factors.shape[1] >= NMF_BLAS_MIN_RANK:
        with single_threaded_blas(), thread_limit(n_threads):
            _frobenius_blas(indptr, indices, data, factors, other, stats, cast(l1_reg),
                            cast(l2_reg), cast(NMF_EPSILON))
        return
    with thread_limit(n_threads):
        _full(indptr, indices, data, factors, other, stats, int(beta_loss), cast(l1_reg),
              cast(l2_reg), cast(NMF_EPSILON))


def nmf_update_observed(indptr, indices, data, factors, other, bias, other_bias, global_mean,
                        beta_loss, l1_reg, l2_reg, reg_bias, biased, n_threads=1) -> None:
    """See ``fastrec.backends._contract.NMF_UPDATE_OBSERVED_DOC``."""
    if factors.shape[0] == 0:
        return
    cast = factors.dtype.type
    max_row = max(1, int(np.max(np.diff(indptr))))
    with thread_limit(n_threads):
        _observed(indptr, indices, data, factors, other, bias, other_bias, cast(global_mean),
                  int(beta_loss), cast(l1_reg), cast(l2_reg), cast(reg_bias), bool(biased),
                  cast(NMF_EPSILON), max_row)


def nmf_loss_full(indptr, indices, data, factors, other, beta_loss, n_threads=1) -> float:
    """See ``fastrec.backends._contract.NMF_LOSS_FULL_DOC``."""
    empty = np.zeros(0, factors.dtype)
    total = _data_term(indptr, indices, data, factors, other, empty, empty, 0.0, int(beta_loss),
                       False, False, n_threads)
    a = _stats(factors, beta_loss, n_threads).astype(np.float64)
    b = _stats(other, beta_loss, n_threads).astype(np.float64)
    if beta_loss == 2:
        return 0.5 * (total + float(np.sum(a * b)))
    return total + float(np.dot(a, b))


def nmf_loss_observed(indptr, indices, data, factors, other, bias, other_bias, global_mean,
                      beta_loss, biased, n_threads=1) -> float:
    """See ``fastrec.backends._contract.NMF_LOSS_OBSERVED_DOC``."""
    return _data_term(indptr, indices, data, factors, other, bias, other_bias, global_mean,
                      int(beta_loss), True, bool(biased), n_threads)
