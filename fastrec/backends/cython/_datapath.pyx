"""The compiled data path: dense id ranks, the user-major pattern with its duplicate check and the
SGD block layout (``csrc/include/fastrec/data_cpu.h``), GIL released, OpenMP over chunks, rows
and row blocks; every result is the same at any thread count."""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t

from fastrec.backends.cython._types cimport floating, index_t

import numpy as np

cdef extern from "fastrec/data_cpu.h" namespace "fastrec" nogil:
    int64_t dense_ranks[R, I](const R *raw, int64_t n, int64_t max_id, uint8_t *present,
                              I *rank, int64_t *ids, I *index, int n_threads) except +
    int64_t user_pattern[I, P](const I *users, const I *items, int64_t nnz, int64_t n_users,
                               int64_t *indptr, I *indices, P *order,
                               int n_threads) except +
    void layout_row_counts[I](const I *users, int64_t nnz, const int64_t *user_rows,
                              int64_t n_users, int64_t grid, int64_t piece, int64_t *hist,
                              int64_t *seg, int n_threads) except +
    void layout_deal[I, T](const I *users, const I *items, const T *ratings, int64_t nnz,
                           const int64_t *user_rows, const int64_t *item_rows, int64_t n_users,
                           int64_t grid, int64_t piece, int64_t first, int64_t last,
                           const uint32_t *keys, int64_t *hist, I *out_users, I *out_items,
                           T *out_ratings, uint32_t *sorted_keys, int n_threads) except +
    void layout_blocks[I, T](I *out_users, I *out_items, T *out_ratings,
                             const uint32_t *sorted_keys,
                             int64_t nnz, int64_t n_users, int64_t n_items, int64_t grid,
                             const int64_t *seg, int64_t *block_ptr, int n_threads) except +

_INT32_MAX = 2**31 - 1


def rank_ids(const index_t[::1] raw, int64_t max_id, int n_threads):
    """Sorted distinct ids and each entry's rank among them, for ids in ``[0, max_id]``.

    raw : int32[n] or int64[n], every value in ``[0, max_id]`` (not checked here).
    Returns (index I[n], ids int64[n_ids]); the same as ``numpy.unique(raw,
    return_inverse=True)`` in O(n + max_id) without sorting. I is int32 when max_id < 2^31 - 1,
    else int64; when the ids are exactly 0..max_id, index is ``raw`` itself (no copy).
    """
    cdef int64_t n = raw.shape[0]
    cdef uint8_t[::1] present = np.zeros(max_id + 1, dtype=np.uint8)
    cdef int64_t[::1] ids = np.empty(max_id + 1, dtype=np.int64)
    cdef int32_t[::1] rank32, index32
    cdef int64_t[::1] rank64, index64
    cdef int64_t n_ids
    if max_id < _INT32_MAX:
        rank32 = np.empty(max_id + 1, dtype=np.int32)
        index = np.empty(n, dtype=np.int32)
        index32 = index
        with nogil:
            n_ids = dense_ranks(&raw[0] if n else NULL, n, max_id, &present[0], &rank32[0],
                                &ids[0], &index32[0] if n else NULL, n_threads)
    else:
        rank64 = np.empty(max_id + 1, dtype=np.int64)
        index = np.empty(n, dtype=np.int64)
        index64 = index
        with nogil:
            n_ids = dense_ranks(&raw[0] if n else NULL, n, max_id, &present[0], &rank64[0],
                                &ids[0], &index64[0] if n else NULL, n_threads)
    if n_ids == max_id + 1:
        index = np.asarray(raw)
    return index, np.asarray(ids)[:n_ids].copy()


def pattern(const index_t[::1] users, const index_t[::1] items, int64_t n_users,
            bint with_order, int n_threads):
    """User-major pattern of the pairs ``(users[j], items[j])`` (indices in range, not checked).

    Returns (indptr int64[n_users + 1], indices I[nnz] (each row's items ascending, repeats
    kept), order int32/int64[nnz] (input position of each entry, pairs sorted by (user, item,
    position); None unless ``with_order``), n_rows_with_repeats int).
    """
    cdef int64_t nnz = users.shape[0]
    if items.shape[0] != nnz:
        raise ValueError("users and items must have the same length")
    indptr_arr = np.empty(n_users + 1, dtype=np.int64)
    indices_arr = np.empty(nnz, dtype=np.asarray(items).dtype)
    cdef int64_t[::1] indptr = indptr_arr
    cdef index_t[::1] indices = indices_arr
    cdef int32_t[::1] order32
    cdef int64_t[::1] order64
    cdef int64_t repeated
    cdef int32_t *no_order = NULL
    order_arr = None
    if nnz == 0:
        indptr_arr[:] = 0
        return indptr_arr, indices_arr, np.empty(0, np.int32) if with_order else None, 0
    if with_order and nnz <= _INT32_MAX:
        order_arr = np.empty(nnz, dtype=np.int32)
        order32 = order_arr
        with nogil:
            repeated = user_pattern(&users[0], &items[0], nnz, n_users, &indptr[0],
                                    &indices[0], &order32[0], n_threads)
    elif with_order:
        order_arr = np.empty(nnz, dtype=np.int64)
        order64 = order_arr
        with nogil:
            repeated = user_pattern(&users[0], &items[0], nnz, n_users, &indptr[0],
                                    &indices[0], &order64[0], n_threads)
    else:
        with nogil:
            repeated = user_pattern(&users[0], &items[0], nnz, n_users, &indptr[0],
                                    &indices[0], no_order, n_threads)
    return indptr_arr, indices_arr, order_arr, int(repeated)


def layout(const index_t[::1] users, const index_t[::1] items, const floating[::1] ratings,
           const int64_t[::1] user_rows, const int64_t[::1] item_rows, int64_t grid,
           draw_keys, int n_threads, int64_t piece=0):
    """The SGD block layout (``BlockedRatings.build``'s definition) of nnz ratings.

    users, items : I[nnz] dense indices; ratings : T[nnz]; user_rows, item_rows : int64 working
    row of each index (permutations); ``draw_keys(n)`` returns the next n tie-break keys
    (uint32[n]), called with consecutive runs of the input in order, so the keys of all nnz
    ratings never exist at once (runs of ``piece`` ratings per thread; default: a quarter of
    the ratings over the threads, at least 2^16: four runs of keys, each a quarter of all).
    Returns (users I[nnz], items I[nnz], ratings T[nnz], block_ptr int64[G*G + 1]) in layout
    order, users and items as working rows.
    """
    cdef int64_t nnz = users.shape[0]
    cdef int64_t n_users = user_rows.shape[0], n_items = item_rows.shape[0]
    if items.shape[0] != nnz or ratings.shape[0] != nnz:
        raise ValueError("users, items and ratings must have the same length")
    if grid < 1 or grid > min(n_users, n_items):
        raise ValueError(f"grid side must be in [1, min(n_users, n_items)], got {grid}")
    out_users_arr = np.empty(nnz, dtype=np.asarray(users).dtype)
    out_items_arr = np.empty(nnz, dtype=np.asarray(items).dtype)
    out_ratings_arr = np.empty(nnz, dtype=np.asarray(ratings).dtype)
    block_ptr_arr = np.zeros(grid * grid + 1, dtype=np.int64)
    cdef index_t[::1] out_users = out_users_arr
    cdef index_t[::1] out_items = out_items_arr
    cdef floating[::1] out_ratings = out_ratings_arr
    cdef int64_t[::1] block_ptr = block_ptr_arr
    if nnz == 0:
        return out_users_arr, out_items_arr, out_ratings_arr, block_ptr_arr
    n_threads = max(1, n_threads)
    if piece <= 0:
        piece = max(1 << 16, (nnz + 4 * n_threads - 1) // (4 * n_threads))
    cdef int64_t n_pieces = (nnz + piece - 1) // piece, first, last, start, count
    cdef int64_t[::1] hist = np.empty(n_pieces * grid, dtype=np.int64)
    cdef int64_t[::1] seg = np.empty(grid + 1, dtype=np.int64)
    cdef uint32_t[::1] sorted_keys = np.empty(nnz, dtype=np.uint32)
    cdef const uint32_t[::1] keys
    with nogil:
        layout_row_counts(&users[0], nnz, &user_rows[0], n_users, grid, piece, &hist[0],
                          &seg[0], n_threads)
    for first in range(0, n_pieces, n_threads):
        last = min(first + n_threads, n_pieces)
        start = first * piece
        count = min(nnz, last * piece) - start
        keys = np.ascontiguousarray(draw_keys(count), dtype=np.uint32)
        if keys.shape[0] != count:
            raise ValueError(f"draw_keys({count}) returned {keys.shape[0]} keys")
        with nogil:
            layout_deal(&users[0], &items[0], &ratings[0], nnz, &user_rows[0], &item_rows[0],
                        n_users, grid, piece, first, last, &keys[0], &hist[0], &out_users[0],
                        &out_items[0], &out_ratings[0], &sorted_keys[0], n_threads)
    keys = None
    with nogil:
        layout_blocks(&out_users[0], &out_items[0], &out_ratings[0], &sorted_keys[0], nnz,
                      n_users, n_items, grid, &seg[0], &block_ptr[0], n_threads)
    return out_users_arr, out_items_arr, out_ratings_arr, block_ptr_arr
