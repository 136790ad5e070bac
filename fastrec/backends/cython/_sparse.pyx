"""CSR building blocks (``csrc/include/fastrec/sparse_cpu.h``): the transpose of a CSR matrix
and its products with dense blocks of vectors, GIL released, OpenMP over rows; every result is
the same at any thread count."""

from cython.parallel cimport prange
from libc.stdint cimport int64_t

from fastrec.backends.cython._types cimport floating, index_t

import numpy as np

from fastrec._array import aligned_zeros

cdef extern from "fastrec/sparse_cpu.h" namespace "fastrec" nogil:
    void csr_dense_rows[T, I](const I *indptr, const I *indices, const T *data,
                              const T *dense, int64_t width, int64_t begin, int64_t end,
                              T *out)
    void csr_gram_rows[T, I](const I *indptr, const I *indices, const T *data, int64_t r0,
                             int64_t r1, const T *dense, int64_t width, T *out)
    void csr_transpose_arrays "fastrec::csr_transpose"[T, I](
        const I *indptr, const I *indices, const T *data, int64_t n_rows, int64_t n_cols,
        I *t_indptr, I *t_indices, T *t_data, int n_threads) except +

cdef enum:
    ROW_CHUNK = 256  # rows per parallel task: rows differ in length, tasks are dealt dynamically


def csr_transpose(const index_t[::1] indptr, const index_t[::1] indices,
                  const floating[::1] data, int64_t n_cols, int n_threads):
    """The CSR of X^T from the CSR of X [n_rows, n_cols] (indices in range, not checked).

    indptr : I[n_rows + 1]; indices : I[nnz]; data : T[nnz].
    Returns (t_indptr I[n_cols + 1], t_indices I[nnz], t_data T[nnz]): row c of X^T lists
    column c's entries by increasing row of X, scipy's ``X.T.tocsr()`` with sorted indices.
    """
    cdef int64_t n_rows = indptr.shape[0] - 1
    cdef int64_t nnz = indices.shape[0]
    if data.shape[0] != nnz or indptr[n_rows] != nnz:
        raise ValueError("indices and data must hold indptr[-1] entries")
    t_indptr_arr = np.empty(n_cols + 1, dtype=np.asarray(indptr).dtype)
    t_indices_arr = np.empty(nnz, dtype=np.asarray(indices).dtype)
    t_data_arr = np.empty(nnz, dtype=np.asarray(data).dtype)
    cdef index_t[::1] t_indptr = t_indptr_arr
    cdef index_t[::1] t_indices = t_indices_arr
    cdef floating[::1] t_data = t_data_arr
    if nnz == 0:
        t_indptr_arr[:] = 0
        return t_indptr_arr, t_indices_arr, t_data_arr
    with nogil:
        csr_transpose_arrays(&indptr[0], &indices[0], &data[0], n_rows, n_cols, &t_indptr[0],
                             &t_indices[0], &t_data[0], n_threads)
    return t_indptr_arr, t_indices_arr, t_data_arr


def csr_times_dense(const index_t[::1] indptr, const index_t[::1] indices,
                    const floating[::1] data, const floating[:, ::1] dense, int n_threads):
    """X @ dense for the CSR X [n_rows, n_cols] (indices in range, not checked).

    indptr : I[n_rows + 1]; indices : I[nnz]; data : T[nnz]; dense : T[n_cols, width],
    C-contiguous, in the data's type. Returns T[n_rows, width], each entry summed in stored
    order from zero (scipy's ``X @ dense`` bit for bit).
    """
    cdef int64_t n_rows = indptr.shape[0] - 1
    cdef int64_t width = dense.shape[1]
    if data.shape[0] != indices.shape[0]:
        raise ValueError("indices and data must have the same length")
    out_arr = np.zeros((n_rows, width), dtype=np.asarray(data).dtype)
    if n_rows == 0 or width == 0 or indices.shape[0] == 0:
        return out_arr
    cdef floating[:, ::1] out = out_arr
    cdef Py_ssize_t n_tasks = (n_rows + ROW_CHUNK - 1) // ROW_CHUNK, task
    cdef int64_t begin, end
    with nogil:
        for task in prange(n_tasks, num_threads=n_threads, schedule="dynamic"):
            begin = task * ROW_CHUNK
            end = min(begin + ROW_CHUNK, n_rows)
            csr_dense_rows(&indptr[0], &indices[0], &data[0], &dense[0, 0], width, begin, end,
                           &out[0, 0])
    return out_arr


cdef enum:
    GRAM_PARTS = 2  # row halves of X whose Gram products are added (csr_gram_times_dense)


def csr_gram_times_dense(const index_t[::1] indptr, const index_t[::1] indices,
                         const floating[::1] data, const floating[:, ::1] dense, int n_threads):
    """X^T (X @ dense) for the CSR X [n_rows, n_cols] (indices in range, not checked) in one
    pass over X, without the [n_rows, width] intermediate.

    dense : T[n_cols, width], C-contiguous, in the data's type. Returns T[n_cols, width]: with
    X split at row n_rows // 2 into X_1 and X_2, X_1^T (X_1 dense) + X_2^T (X_2 dense), each
    term bit for bit ``csr_times_dense`` of its rows' transpose (sorted indices) applied to
    ``csr_times_dense`` of them, added in that order. The halves run on up to two threads, each
    into an output of its own, so the result is the same at any thread count. (Splitting the
    columns of ``dense`` instead kept the two products' bits, but two threads writing
    neighbouring cache lines of one output took 2-4x one thread's time.)
    """
    cdef int64_t n_rows = indptr.shape[0] - 1
    cdef int64_t width = dense.shape[1]
    if data.shape[0] != indices.shape[0]:
        raise ValueError("indices and data must have the same length")
    dtype = np.asarray(data).dtype
    cdef int64_t per_line = 64 // dtype.itemsize
    if width % per_line:
        # Rows of whole 64-byte lines: a narrow block (NNDSVD at small ranks) runs at a
        # compiled width, about half the time of the run-time width's loops, and columns never
        # mix, so the real ones are the same.
        padded = np.zeros((dense.shape[0], (width + per_line - 1) // per_line * per_line),
                          dtype=dtype)
        padded[:, :width] = dense
        wide = csr_gram_times_dense(indptr, indices, data, padded, n_threads)
        return np.ascontiguousarray(wide[:, :width])
    parts_arr = aligned_zeros((GRAM_PARTS, dense.shape[0], width), dtype)
    if n_rows == 0 or width == 0 or indices.shape[0] == 0:
        return parts_arr[0]
    cdef floating[:, :, ::1] parts = parts_arr
    cdef int64_t[3] bounds = [0, n_rows // 2, n_rows]
    cdef Py_ssize_t part
    cdef int threads = max(1, min(n_threads, GRAM_PARTS))
    with nogil:
        for part in prange(GRAM_PARTS, num_threads=threads, schedule="static"):
            csr_gram_rows(&indptr[0], &indices[0], &data[0], bounds[part], bounds[part + 1],
                          &dense[0, 0], width, &parts[part, 0, 0])
    out = parts_arr[0]
    out += parts_arr[1]
    return out
