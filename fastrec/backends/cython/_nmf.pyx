"""NMF multiplicative updates: OpenMP over ranges of rows, each output row owned by one thread.

The Gram matrix and column sums are summed over fixed chunks of rows in chunk order, so every
result is identical at any thread count.
"""

from cython.parallel cimport prange, threadid
from libc.stdint cimport int64_t

from fastrec.backends.cython._blas_cpu cimport Blas, scipy_blas
from fastrec.backends.cython._types cimport floating, index_t

import numpy as np

from fastrec.backends._blas import single_threaded_blas
from fastrec.backends._cpu_layout import NMF_BLAS_MIN_RANK

# Rows per parallel task (load balance over uneven rows) and rows per partial Gram/column sum
# (fixed, so the summation order never depends on the thread count). At BLAS ranks a Gram chunk
# grows so that there are at most GRAM_MAX_CHUNKS partial k x k matrices, and a task updates
# BLAS_ROW_CHUNK rows (one GEMM for their denominators).
cdef enum:
    ROW_CHUNK = 64
    STATS_CHUNK = 1024
    GRAM_MAX_CHUNKS = 32
    BLAS_ROW_CHUNK = 128


cdef extern from "fastrec/nmf_cpu.h" namespace "fastrec" nogil:
    void nmf_gram_blas[T](const Blas &blas, const T *other, int64_t begin, int64_t end,
                          int64_t k, T *out)
    int64_t nmf_blas_scratch(int64_t rows, int64_t k)
    void nmf_frobenius_rows_blas[T, I](const Blas &blas, const I *indptr, const I *indices,
                                       const T *data, T *factors, const T *other,
                                       const T *gram, int64_t begin, int64_t end, int64_t k,
                                       T l1, T l2, T *scratch)
    void nmf_gram[T](const T *other, int64_t begin, int64_t end, int64_t k, T *out)
    void nmf_colsum[T](const T *other, int64_t begin, int64_t end, int64_t k, T *out)
    int64_t nmf_full_scratch(int64_t k)
    void nmf_full_rows[T, I](const I *indptr, const I *indices, const T *data, T *factors,
                             const T *other, const T *stats, int64_t begin, int64_t end,
                             int64_t k, int beta, T l1, T l2, T *scratch)
    void nmf_observed_rows[T, I](const I *indptr, const I *indices, const T *data, T *factors,
                                 const T *other, T *bias, const T *other_bias, T global_mean,
                                 int64_t begin, int64_t end, int64_t k, int beta, T l1, T l2,
                                 T reg_bias, int biased, T *scratch)
    double nmf_loss_rows[T, I](const I *indptr, const I *indices, const T *data,
                               const T *factors, const T *other, const T *bias,
                               const T *other_bias, double global_mean, int64_t begin,
                               int64_t end, int64_t k, int beta, int observed, int biased)


cdef void _partial_stats(const floating[:, ::1] other, int beta, int64_t chunk, bint use_blas,
                         floating[:, ::1] partial, int n_threads) noexcept nogil:
    """partial[c] = the Gram matrix (beta 2; only its upper triangle with ``use_blas``) or the
    column sums (beta 1) of rows [c * chunk, (c + 1) * chunk) of other [n, k]."""
    cdef int64_t n = other.shape[0], k = other.shape[1]
    cdef Py_ssize_t c
    cdef int64_t begin, end
    cdef Blas blas = scipy_blas()
    for c in prange(partial.shape[0], num_threads=n_threads, schedule="dynamic"):
        begin = c * chunk
        end = begin + chunk
        if end > n:
            end = n
        if use_blas:
            nmf_gram_blas(blas, &other[0, 0], begin, end, k, &partial[c, 0])
        elif beta == 2:
            nmf_gram(&other[0, 0], begin, end, k, &partial[c, 0])
        else:
            nmf_colsum(&other[0, 0], begin, end, k, &partial[c, 0])


cdef object _stats(const floating[:, ::1] other, int beta, int n_threads):
    """Symmetric Gram matrix other^T other (beta 2) or column sums (beta 1) of other [n, k]."""
    cdef int64_t n = other.shape[0], k = other.shape[1]
    cdef bint use_blas = beta == 2 and k >= NMF_BLAS_MIN_RANK
    cdef int64_t chunk = STATS_CHUNK
    if use_blas:
        chunk = max(chunk, -(-n // GRAM_MAX_CHUNKS))
    n_chunks = (n + chunk - 1) // chunk
    dtype = np.float32 if floating is float else np.float64
    width = k * k if beta == 2 else k
    partial_arr = np.zeros((max(n_chunks, 1), width), dtype=dtype)
    cdef floating[:, ::1] partial = partial_arr[:n_chunks]
    if use_blas:
        with single_threaded_blas():
            _partial_stats(other, beta, chunk, use_blas, partial, n_threads)
    else:
        _partial_stats(other, beta, chunk, use_blas, partial, n_threads)
    total = partial_arr.sum(axis=0)
    if beta != 2:
        return total
    upper = np.triu(total.reshape(k, k))
    return np.ascontiguousarray(upper + np.triu(upper, 1).T)


def nmf_update_full(const index_t[::1] indptr, const index_t[::1] indices,
                    const floating[::1] data, floating[:, ::1] factors,
                    const floating[:, ::1] other, int beta_loss, double l1_reg, double l2_reg,
                    int n_threads):
    """One multiplicative update of ``factors``; see ``fastrec.backends._contract``."""
    cdef int64_t n = factors.shape[0], k = factors.shape[1]
    cdef Py_ssize_t n_chunks = (n + ROW_CHUNK - 1) // ROW_CHUNK, c
    cdef int64_t begin, end
    cdef int tid
    cdef floating l1 = <floating>l1_reg, l2 = <floating>l2_reg
    cdef floating[:, ::1] scratch
    if n == 0:
        return
    dtype = np.float32 if floating is float else np.float64
    stats_arr = np.ascontiguousarray(_stats(other, beta_loss, n_threads), dtype=dtype).ravel()
    cdef const floating[::1] stats = stats_arr
    cdef const index_t *idx = &indices[0] if indices.shape[0] > 0 else NULL
    cdef const floating *x = &data[0] if data.shape[0] > 0 else NULL
    cdef const floating *o = &other[0, 0] if other.shape[0] > 0 else NULL
    cdef Blas blas
    if beta_loss == 2 and k >= NMF_BLAS_MIN_RANK:
        blas = scipy_blas()
        n_chunks = (n + BLAS_ROW_CHUNK - 1) // BLAS_ROW_CHUNK
        scratch = np.empty((n_threads, nmf_blas_scratch(BLAS_ROW_CHUNK, k)), dtype=dtype)
        with single_threaded_blas(), nogil:
            for c in prange(n_chunks, num_threads=n_threads, schedule="dynamic"):
                tid = threadid()
                begin = c * BLAS_ROW_CHUNK
                end = begin + BLAS_ROW_CHUNK
                if end > n:
                    end = n
                nmf_frobenius_rows_blas(blas, &indptr[0], idx, x, &factors[0, 0], o, &stats[0],
                                        begin, end, k, l1, l2, &scratch[tid, 0])
        return
    scratch = np.empty((n_threads, nmf_full_scratch(k)), dtype=dtype)
    with nogil:
        for c in prange(n_chunks, num_threads=n_threads, schedule="dynamic"):
            tid = threadid()
            begin = c * ROW_CHUNK
            end = begin + ROW_CHUNK
            if end > n:
                end = n
            nmf_full_rows(&indptr[0], idx, x, &factors[0, 0], o, &stats[0], begin, end, k,
                          beta_loss, l1, l2, &scratch[tid, 0])


cdef int64_t _longest_row(const index_t[::1] indptr) noexcept nogil:
    """The most entries in one row of the CSR ``indptr`` (a loop: numpy's diff and max cost
    more than a ratings-sized half-iteration's update of the item rows)."""
    cdef int64_t longest = 0, r
    for r in range(indptr.shape[0] - 1):
        longest = max(longest, <int64_t>(indptr[r + 1] - indptr[r]))
    return longest


def nmf_update_observed(const index_t[::1] indptr, const index_t[::1] indices,
                        const floating[::1] data, floating[:, ::1] factors,
                        const floating[:, ::1] other, floating[::1] bias,
                        const floating[::1] other_bias, double global_mean, int beta_loss,
                        double l1_reg, double l2_reg, double reg_bias, bint biased,
                        int n_threads):
    """One multiplicative update of ``factors`` (and ``bias``) over the observed entries."""
    cdef int64_t n = factors.shape[0], k = factors.shape[1]
    cdef Py_ssize_t n_chunks = (n + ROW_CHUNK - 1) // ROW_CHUNK, c
    cdef int64_t begin, end, max_row
    cdef int tid
    cdef floating l1 = <floating>l1_reg, l2 = <floating>l2_reg, rb = <floating>reg_bias
    cdef floating mu = <floating>global_mean
    if n == 0:
        return
    dtype = np.float32 if floating is float else np.float64
    max_row = _longest_row(indptr)
    cdef floating[:, ::1] scratch = np.empty((n_threads, 2 * k + max_row), dtype=dtype)
    cdef const index_t *idx = &indices[0] if indices.shape[0] > 0 else NULL
    cdef const floating *x = &data[0] if data.shape[0] > 0 else NULL
    cdef const floating *o = &other[0, 0] if other.shape[0] > 0 else NULL
    cdef const floating *ob = &other_bias[0] if other_bias.shape[0] > 0 else NULL
    with nogil:
        for c in prange(n_chunks, num_threads=n_threads, schedule="dynamic"):
            tid = threadid()
            begin = c * ROW_CHUNK
            end = begin + ROW_CHUNK
            if end > n:
                end = n
            nmf_observed_rows(&indptr[0], idx, x, &factors[0, 0], o, &bias[0], ob, mu, begin,
                              end, k, beta_loss, l1, l2, rb, biased, &scratch[tid, 0])


cdef double _data_term(const index_t[::1] indptr, const index_t[::1] indices,
                       const floating[::1] data, const floating[:, ::1] factors,
                       const floating[:, ::1] other, const floating *bias,
                       const floating *other_bias, double global_mean, int beta, int observed,
                       int biased, int n_threads):
    cdef int64_t n = factors.shape[0], k = factors.shape[1]
    cdef Py_ssize_t n_chunks = (n + ROW_CHUNK - 1) // ROW_CHUNK, c
    cdef int64_t begin, end
    cdef double[::1] partial = np.zeros(max(n_chunks, 1), dtype=np.float64)
    cdef const index_t *idx = &indices[0] if indices.shape[0] > 0 else NULL
    cdef const floating *x = &data[0] if data.shape[0] > 0 else NULL
    cdef const floating *o = &other[0, 0] if other.shape[0] > 0 else NULL
    cdef const floating *f = &factors[0, 0] if n > 0 else NULL
    with nogil:
        for c in prange(n_chunks, num_threads=n_threads, schedule="dynamic"):
            begin = c * ROW_CHUNK
            end = begin + ROW_CHUNK
            if end > n:
                end = n
            partial[c] = nmf_loss_rows(&indptr[0], idx, x, f, o, bias, other_bias, global_mean,
                                       begin, end, k, beta, observed, biased)
    # Summed in chunk order so the loss does not depend on the thread count.
    return float(np.sum(partial))


def nmf_loss_full(const index_t[::1] indptr, const index_t[::1] indices,
                  const floating[::1] data, const floating[:, ::1] factors,
                  const floating[:, ::1] other, int beta_loss, int n_threads):
    """Beta divergence of X and factors @ other.T; see ``fastrec.backends._contract``."""
    total = _data_term(indptr, indices, data, factors, other, NULL, NULL, 0.0, beta_loss, 0, 0,
                       n_threads)
    a = np.asarray(_stats(factors, beta_loss, n_threads), dtype=np.float64)
    b = np.asarray(_stats(other, beta_loss, n_threads), dtype=np.float64)
    if beta_loss == 2:
        return 0.5 * (total + float(np.sum(a * b)))
    return total + float(np.dot(a, b))


def nmf_loss_observed(const index_t[::1] indptr, const index_t[::1] indices,
                      const floating[::1] data, const floating[:, ::1] factors,
                      const floating[:, ::1] other, const floating[::1] bias,
                      const floating[::1] other_bias, double global_mean, int beta_loss,
                      bint biased, int n_threads):
    """Data term of the observed-entries loss; see ``fastrec.backends._contract``."""
    cdef const floating *b = &bias[0] if bias.shape[0] > 0 else NULL
    cdef const floating *ob = &other_bias[0] if other_bias.shape[0] > 0 else NULL
    return _data_term(indptr, indices, data, factors, other, b, ob, global_mean, beta_loss, 1,
                      biased, n_threads)
