"""Top-n per row for serving: score a batch of users against every item and keep each row's
best ``n`` in the same pass (a bounded heap per row, csrc/include/fastrec/topn.h), skipping the
row's excluded items (a CSR row, e.g. the items a user has seen) on the way.

Rows go to OpenMP threads in tiles of ``_TILE_ROWS``; a tile is scored one block of
``_ITEM_BLOCK`` items at a time by a small single-threaded GEMM into per-thread scratch that
stays in cache, so memory is O(batch * n) plus O(threads * tile * block), never O(batch * items).
The GIL is released for the whole call, and BLAS is held to one thread while it runs (the
threads are OpenMP's: a threaded BLAS underneath would oversubscribe the cores).
"""

from cython.parallel cimport prange, threadid
from libc.math cimport INFINITY, NAN
from libc.stdint cimport int64_t
from libc.string cimport memcpy
from scipy.linalg.cython_blas cimport dgemm, dgemv, sgemm, sgemv

from fastrec.backends.cython._types cimport floating, index_t

import numpy as np

from fastrec.backends._blas import single_threaded_blas

DEF _TILE_ROWS = 128
DEF _ITEM_BLOCK = 512
DEF _GEMV_ROWS = 8


cdef extern from "fastrec/topn.h" namespace "fastrec" nogil:
    void topn_finish[T](T *scores, int64_t *ids, int64_t size, int64_t capacity, T pad_score)

cdef extern from "fastrec/topn_cpu.h" namespace "fastrec" nogil:
    void topn_offer_row(float *heap_scores, int64_t *heap_ids, int64_t *size, int64_t capacity,
                        float *scores, const float *bias, int64_t width, int64_t first_id)
    void topn_offer_row(double *heap_scores, int64_t *heap_ids, int64_t *size,
                        int64_t capacity, double *scores, const double *bias, int64_t width,
                        int64_t first_id)


cdef void _block_scores(const floating *query, const floating *items, int64_t k, int64_t rows,
                        int64_t width, floating *out) noexcept nogil:
    """out[r, j] = query[r] . items[j] for a tile of rows and a block of items (row-major
    [rows, width]): in BLAS's column-major terms out^T = items_block^T' * query^T."""
    cdef char transa = b"T"
    cdef char transb = b"N"
    cdef int m_ = <int>width, n_ = <int>rows, k_ = <int>k, inc = 1
    cdef floating one = 1, zero = 0
    cdef int64_t r
    if rows < _GEMV_ROWS:
        # a GEMM packs the item block for every call, which costs more than the product when
        # there are only a few rows: matrix-vector products read it in place
        for r in range(rows):
            if floating is float:
                sgemv(&transa, &k_, &m_, &one, <float *>items, &k_, <float *>query + r * k,
                      &inc, &zero, out + r * width, &inc)
            else:
                dgemv(&transa, &k_, &m_, &one, <double *>items, &k_, <double *>query + r * k,
                      &inc, &zero, out + r * width, &inc)
        return
    if floating is float:
        sgemm(&transa, &transb, &m_, &n_, &k_, &one, <float *>items, &k_, <float *>query, &k_,
              &zero, out, &m_)
    else:
        dgemm(&transa, &transb, &m_, &n_, &k_, &one, <double *>items, &k_, <double *>query, &k_,
              &zero, out, &m_)


cdef void _tile(const floating *source, bint precomputed, int64_t k, const floating *items,
                const floating *bias, int64_t n_items, int64_t row0, int64_t rows,
                const index_t *indptr, const index_t *indices, const int64_t *exclude_rows,
                floating *scratch, int64_t *cursor, int64_t n_out, int64_t *out_ids,
                floating *out_scores, int64_t *sizes) noexcept nogil:
    """Feeds rows row0..row0+rows-1 every item, block by block, then sorts their heaps.
    ``source`` is the query [b, k] (scores by GEMM) or, when ``precomputed``, scores [b, n_items].
    Excluded indices are sorted per row, so one cursor per row walks them once in all."""
    cdef int64_t r, p, end, start, width, u
    # matrix-vector rows take wider blocks in the same scratch: fewer BLAS calls per row
    cdef int64_t block = _ITEM_BLOCK if rows >= _GEMV_ROWS else _TILE_ROWS * _ITEM_BLOCK // rows
    cdef floating *s
    if indptr != NULL:
        for r in range(rows):
            cursor[r] = indptr[exclude_rows[row0 + r]]
    start = 0
    while start < n_items:
        width = min(block, n_items - start)
        if precomputed:
            for r in range(rows):
                memcpy(scratch + r * width, source + (row0 + r) * n_items + start,
                       width * sizeof(floating))
        else:
            _block_scores(source + row0 * k, items + start * k, k, rows, width, scratch)
        for r in range(rows):
            s = scratch + r * width
            if indptr != NULL:
                u = exclude_rows[row0 + r]
                p = cursor[r]
                end = indptr[u + 1]
                while p < end and indices[p] < start + width:
                    if indices[p] >= start:
                        s[indices[p] - start] = NAN
                    p += 1
                cursor[r] = p
            topn_offer_row(out_scores + (row0 + r) * n_out, out_ids + (row0 + r) * n_out,
                           &sizes[row0 + r], n_out, s, bias + start if bias != NULL else NULL,
                           width, start)
        start += width
    for r in range(rows):
        topn_finish(out_scores + (row0 + r) * n_out, out_ids + (row0 + r) * n_out,
                    sizes[row0 + r], n_out, <floating>(-INFINITY))


cdef _run(const floating[:, ::1] source, bint precomputed, const floating[:, ::1] items,
          const floating[::1] bias, bint has_bias, const index_t[::1] indptr,
          const index_t[::1] indices, const int64_t[::1] exclude_rows, bint has_exclude,
          int64_t[:, ::1] out_ids, floating[:, ::1] out_scores, int n_threads):
    cdef int64_t b = out_ids.shape[0], n_out = out_ids.shape[1]
    cdef int64_t n_items = source.shape[1] if precomputed else items.shape[0]
    cdef int64_t k = 0 if precomputed else items.shape[1]
    cdef int64_t tile_rows, n_tiles, t, tid, rows
    if b == 0 or n_out == 0:
        return
    # as many tiles of at most _TILE_ROWS as needed, in a multiple of the threads, evenly sized:
    # 300 rows on 2 threads make 4 tiles of 75, not 3 of 128 split 2:1
    n_threads = <int>max(1, min(<int64_t>n_threads, b))
    n_tiles = n_threads * ((b + n_threads * _TILE_ROWS - 1) // (n_threads * _TILE_ROWS))
    tile_rows = (b + n_tiles - 1) // n_tiles
    n_tiles = (b + tile_rows - 1) // tile_rows
    dtype = np.float32 if floating is float else np.float64
    cdef floating[:, ::1] scratch = np.empty((n_threads, _TILE_ROWS * _ITEM_BLOCK), dtype)
    cdef int64_t[:, ::1] cursor = np.empty((n_threads, _TILE_ROWS), np.int64)
    cdef int64_t[::1] sizes = np.zeros(b, np.int64)
    cdef const floating *src = &source[0, 0]
    cdef const floating *items_ptr = NULL
    cdef const floating *bias_ptr = NULL
    cdef const index_t *indptr_ptr = NULL
    cdef const index_t *indices_ptr = NULL
    cdef const int64_t *rows_ptr = NULL
    if not precomputed:
        items_ptr = &items[0, 0]
    if has_bias:
        bias_ptr = &bias[0]
    if has_exclude:
        indptr_ptr, rows_ptr = &indptr[0], &exclude_rows[0]
        if indices.shape[0]:
            indices_ptr = &indices[0]
    with single_threaded_blas(), nogil:
        for t in prange(n_tiles, num_threads=n_threads, schedule="dynamic"):
            tid = threadid()
            rows = min(tile_rows, b - t * tile_rows)
            _tile(src, precomputed, k, items_ptr, bias_ptr, n_items, t * tile_rows, rows,
                  indptr_ptr, indices_ptr, rows_ptr, &scratch[tid, 0], &cursor[tid, 0], n_out,
                  &out_ids[0, 0], &out_scores[0, 0], &sizes[0])


def topn_factors(const floating[:, ::1] query, const floating[:, ::1] item_factors,
                 const floating[::1] item_bias, const index_t[::1] exclude_indptr,
                 const index_t[::1] exclude_indices, const int64_t[::1] exclude_rows,
                 int64_t[:, ::1] out_ids, floating[:, ::1] out_scores, int n_threads=1):
    """Top-n of ``query @ item_factors.T + item_bias`` per row into ``out_ids`` int64[b, n] and
    ``out_scores`` T[b, n] (written in place; n <= n_items), best first, padded with id -1 and
    score -inf when a row has fewer than n eligible items. ``item_bias`` T[m] may be empty (no
    bias). Row r skips the items ``exclude_indices[exclude_indptr[u]:exclude_indptr[u + 1]]``
    with ``u = exclude_rows[r]`` (sorted within each row; empty ``exclude_rows``: no exclusion).
    query T[b, k], item_factors T[m, k], C-contiguous."""
    cdef bint has_exclude = exclude_rows.shape[0] > 0
    _run(query, False, item_factors, item_bias, item_bias.shape[0] > 0, exclude_indptr,
         exclude_indices, exclude_rows, has_exclude, out_ids, out_scores, n_threads)


def topn_scores(const floating[:, ::1] scores, const index_t[::1] exclude_indptr,
                const index_t[::1] exclude_indices, const int64_t[::1] exclude_rows,
                int64_t[:, ::1] out_ids, floating[:, ::1] out_scores, int n_threads=1):
    """:func:`topn_factors` for precomputed scores T[b, m] (not modified)."""
    cdef bint has_exclude = exclude_rows.shape[0] > 0
    if scores.shape[0] == 0:
        return
    _run(scores, True, scores, scores[0], False, exclude_indptr, exclude_indices, exclude_rows,
         has_exclude, out_ids, out_scores, n_threads)
