"""SGD matrix factorisation epoch: OpenMP over the conflict-free blocks of each stratum."""

from libc.math cimport sqrt
from libc.stdint cimport int64_t

from fastrec.backends.cython._types cimport floating, index_t

import numpy as np


cdef extern from "fastrec/sgd_cpu.h" namespace "fastrec" nogil:
    void sgd_epoch_dataflow[T, I](const I *users, const I *items, const T *ratings,
                                  const int64_t *block_ptr, int64_t grid,
                                  const int64_t *schedule, int64_t n_tickets, T *user_factors,
                                  T *item_factors, T *user_bias, T *item_bias, int64_t k,
                                  T global_mean, T lr, T lr_bias, T reg, T reg_bias, int biased,
                                  int n_threads, double *ticket_sse) except +


def sgd_epoch(const index_t[::1] users, const index_t[::1] items, const floating[::1] ratings,
              const int64_t[::1] block_ptr, const int64_t[:, ::1] schedule,
              floating[:, ::1] user_factors, floating[:, ::1] item_factors,
              floating[::1] user_bias, floating[::1] item_bias,
              double global_mean, double lr, double lr_bias, double reg, double reg_bias,
              bint biased, int n_threads):
    """One SGD epoch; see ``fastrec.backends._contract.SGD_EPOCH_DOC``.

    Blocks run in dataflow order (no barrier between strata): see ``sgd_epoch_dataflow`` in
    ``csrc/include/fastrec/sgd_cpu.h``.
    """
    cdef int64_t n_blocks = block_ptr.shape[0] - 1
    cdef int64_t grid = <int64_t>round(sqrt(<double>n_blocks))
    cdef int64_t n_tickets = schedule.shape[0] * schedule.shape[1]
    cdef double[::1] ticket_sse = np.zeros(max(n_tickets, 1), dtype=np.float64)
    if users.shape[0] == 0 or n_tickets == 0:
        return 0.0
    if grid * grid != n_blocks:
        raise ValueError("block_ptr must describe a square G x G grid of blocks")
    with nogil:
        sgd_epoch_dataflow(&users[0], &items[0], &ratings[0], &block_ptr[0], grid,
                           &schedule[0, 0], n_tickets, &user_factors[0, 0],
                           &item_factors[0, 0], &user_bias[0], &item_bias[0],
                           <int64_t>user_factors.shape[1], <floating>global_mean, <floating>lr,
                           <floating>lr_bias, <floating>reg, <floating>reg_bias, biased,
                           max(n_threads, 1), &ticket_sse[0])
    # Summed in schedule order so the returned loss does not depend on the thread count.
    return float(np.sum(ticket_sse))
