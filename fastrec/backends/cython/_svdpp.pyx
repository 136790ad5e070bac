"""SVD++ SGD epoch: OpenMP over users, the conflict-free blocks in dataflow order, then items."""

from libc.math cimport sqrt
from libc.stdint cimport int64_t

from fastrec.backends.cython._types cimport floating, index_t

import numpy as np


cdef extern from "fastrec/svdpp_cpu.h" namespace "fastrec" nogil:
    void svdpp_epoch_cpu[T, I](const I *users, const I *items, const T *ratings,
                               const int64_t *block_ptr, int64_t grid, const int64_t *schedule,
                               int64_t n_tickets, const int64_t *user_ptr,
                               const I *user_items, const int64_t *item_ptr,
                               const I *item_users, int64_t n_users, int64_t n_items,
                               T *user_factors, T *item_factors, T *implicit, T *user_bias,
                               T *item_bias, int64_t k, T global_mean, T lr, T lr_bias, T reg,
                               T reg_bias, T reg_implicit, int biased, int n_threads,
                               double *ticket_sse) except +


def svdpp_epoch(const index_t[::1] users, const index_t[::1] items, const floating[::1] ratings,
                const int64_t[::1] block_ptr, const int64_t[:, ::1] schedule,
                const int64_t[::1] user_ptr, const index_t[::1] user_items,
                const int64_t[::1] item_ptr, const index_t[::1] item_users,
                floating[:, ::1] user_factors, floating[:, ::1] item_factors,
                floating[:, ::1] implicit_factors, floating[::1] user_bias,
                floating[::1] item_bias, double global_mean, double lr, double lr_bias,
                double reg, double reg_bias, double reg_implicit, bint biased, int n_threads):
    """One SVD++ epoch; see ``fastrec.backends._contract.SVDPP_EPOCH_DOC``."""
    cdef int64_t n_tickets = schedule.shape[0] * schedule.shape[1]
    cdef int64_t n_users = user_factors.shape[0], n_items = item_factors.shape[0]
    cdef int64_t grid = <int64_t>round(sqrt(<double>(block_ptr.shape[0] - 1)))
    cdef double[::1] ticket_sse = np.zeros(max(n_tickets, 1), dtype=np.float64)
    # Empty arrays have no element to point at: a one-element stand-in is never read.
    cdef index_t[::1] no_index = np.zeros(1, dtype=np.asarray(users).dtype)
    cdef const index_t *users_p = &users[0] if users.shape[0] else &no_index[0]
    cdef const index_t *items_p = &items[0] if items.shape[0] else &no_index[0]
    cdef const index_t *user_items_p = &user_items[0] if user_items.shape[0] else &no_index[0]
    cdef const index_t *item_users_p = &item_users[0] if item_users.shape[0] else &no_index[0]
    cdef floating[::1] no_rating = np.zeros(1, dtype=np.asarray(user_bias).dtype)
    cdef const floating *ratings_p = &ratings[0] if ratings.shape[0] else &no_rating[0]
    cdef const int64_t *schedule_p = &schedule[0, 0] if n_tickets else &block_ptr[0]
    if n_users == 0 or n_items == 0 or user_factors.shape[1] == 0:
        return 0.0
    if grid * grid != block_ptr.shape[0] - 1:
        raise ValueError("block_ptr must describe a square G x G grid of blocks")
    with nogil:
        svdpp_epoch_cpu(users_p, items_p, ratings_p, &block_ptr[0], grid, schedule_p,
                        n_tickets, &user_ptr[0], user_items_p, &item_ptr[0], item_users_p, n_users,
                        n_items, &user_factors[0, 0], &item_factors[0, 0],
                        &implicit_factors[0, 0], &user_bias[0], &item_bias[0],
                        <int64_t>user_factors.shape[1], <floating>global_mean, <floating>lr,
                        <floating>lr_bias, <floating>reg, <floating>reg_bias,
                        <floating>reg_implicit, biased, max(n_threads, 1), &ticket_sse[0])
    # Summed in schedule order so the returned loss does not depend on the thread count.
    return float(np.sum(ticket_sse))
