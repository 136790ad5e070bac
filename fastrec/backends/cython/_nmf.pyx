"""NMF multiplicative updates: OpenMP over ranges of rows, each output row owned by one thread.

The Gram matrix and column sums are summed over fixed chunks of rows in chunk order, so every
result is identical at any thread count.
"""

from cython.parallel cimport prange, threadid
from libc.stdint cimport int64_t

from fastrec.backends.cython._types cimport floating, index_t

import numpy as np

# Rows per parallel task (load balance over uneven rows) and rows per partial Gram/column sum
# (fixed, so the summation order never depends on the thread count).
cdef enum:
    ROW_CHUNK = 64
    STATS_CHUNK = 1024


cdef extern from "fastrec/nmf_cpu.h" namespace "fastrec" nogil:
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


cdef object _stats(const floating[:, ::1] other, int beta, int n_threads):
    """Symmetric Gram matrix other^T other (beta 2) or column sums (beta 1) of other [n, k]."""
    cdef int64_t n = other.shape[0], k = other.shape[1]
    cdef Py_ssize_t n_chunks = (n + STATS_CHUNK - 1) // STATS_CHUNK, c
    cdef int64_t begin, end
    dtype = np.float32 if floating is float else np.float64
    width = k * k if beta == 2 else k
    partial_arr = np.zeros((max(n_chunks, 1), width), dtype=dtype)
    cdef floating[:, ::1] partial = partial_arr
    with nogil:
        for c in prange(n_chunks, num_threads=n_threads, schedule="dynamic"):
            begin = c * STATS_CHUNK
            end = begin + STATS_CHUNK
            if end > n:
                end = n
            if beta == 2:
                nmf_gram(&other[0, 0], begin, end, k, &partial[c, 0])
            else:
                nmf_colsum(&other[0, 0], begin, end, k, &partial[c, 0])
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
    if n == 0:
        return
    dtype = np.float32 if floating is float else np.float64
    stats_arr = np.ascontiguousarray(_stats(other, beta_loss, n_threads), dtype=dtype).ravel()
    cdef const floating[::1] stats = stats_arr
    cdef floating[:, ::1] scratch = np.empty((n_threads, nmf_full_scratch(k)), dtype=dtype)
    cdef const index_t *idx = &indices[0] if indices.shape[0] > 0 else NULL
    cdef const floating *x = &data[0] if data.shape[0] > 0 else NULL
    cdef const floating *o = &other[0, 0] if other.shape[0] > 0 else NULL
    with nogil:
        for c in prange(n_chunks, num_threads=n_threads, schedule="dynamic"):
            tid = threadid()
            begin = c * ROW_CHUNK
            end = begin + ROW_CHUNK
            if end > n:
                end = n
            nmf_full_rows(&indptr[0], idx, x, &factors[0, 0], o, &stats[0], begin, end, k,
                          beta_loss, l1, l2, &scratch[tid, 0])


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
    max_row = int(np.max(np.diff(np.asarray(indptr))))
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
