"""SGD matrix factorisation epoch: OpenMP over the conflict-free blocks of each stratum."""

from cython.parallel cimport prange
from libc.stdint cimport int32_t, int64_t

from fastrec.backends.cython._types cimport floating, index_t

import numpy as np


cdef extern from "fastrec/sgd_cpu.h" namespace "fastrec" nogil:
    double sgd_block(const int32_t *users, const int32_t *items, const float *ratings,
                     int64_t begin, int64_t end, float *user_factors, float *item_factors,
                     float *user_bias, float *item_bias, int64_t k, float global_mean, float lr,
                     float lr_bias, float reg, float reg_bias, int biased)
    double sgd_block(const int64_t *users, const int64_t *items, const float *ratings,
                     int64_t begin, int64_t end, float *user_factors, float *item_factors,
                     float *user_bias, float *item_bias, int64_t k, float global_mean, float lr,
                     float lr_bias, float reg, float reg_bias, int biased)
    double sgd_block(const int32_t *users, const int32_t *items, const double *ratings,
                     int64_t begin, int64_t end, double *user_factors, double *item_factors,
                     double *user_bias, double *item_bias, int64_t k, double global_mean,
                     double lr, double lr_bias, double reg, double reg_bias, int biased)
    double sgd_block(const int64_t *users, const int64_t *items, const double *ratings,
                     int64_t begin, int64_t end, double *user_factors, double *item_factors,
                     double *user_bias, double *item_bias, int64_t k, double global_mean,
                     double lr, double lr_bias, double reg, double reg_bias, int biased)


def sgd_epoch(const index_t[::1] users, const index_t[::1] items, const floating[::1] ratings,
              const int64_t[::1] block_ptr, const int64_t[:, ::1] schedule,
              floating[:, ::1] user_factors, floating[:, ::1] item_factors,
              floating[::1] user_bias, floating[::1] item_bias,
              double global_mean, double lr, double lr_bias, double reg, double reg_bias,
              bint biased, int n_threads):
    """One SGD epoch; see ``fastrec.backends._contract.sgd_epoch``."""
    cdef Py_ssize_t n_strata = schedule.shape[0], width = schedule.shape[1]
    cdef Py_ssize_t s, b
    cdef int64_t block, k = user_factors.shape[1]
    cdef double[::1] block_sse = np.zeros(block_ptr.shape[0] - 1, dtype=np.float64)
    cdef floating *P = &user_factors[0, 0] if user_factors.shape[0] > 0 else NULL
    cdef floating *Q = &item_factors[0, 0] if item_factors.shape[0] > 0 else NULL
    cdef floating *bu = &user_bias[0] if user_bias.shape[0] > 0 else NULL
    cdef floating *bi = &item_bias[0] if item_bias.shape[0] > 0 else NULL
    cdef const index_t *u_ptr = &users[0] if users.shape[0] > 0 else NULL
    cdef const index_t *i_ptr = &items[0] if items.shape[0] > 0 else NULL
    cdef const floating *r_ptr = &ratings[0] if ratings.shape[0] > 0 else NULL
    cdef floating mu = <floating>global_mean
    cdef floating lr_t = <floating>lr, lr_b = <floating>lr_bias
    cdef floating reg_t = <floating>reg, reg_b = <floating>reg_bias
    if users.shape[0] == 0:
        return 0.0
    with nogil:
        for s in range(n_strata):
            for b in prange(width, num_threads=n_threads, schedule="dynamic", chunksize=1):
                block = schedule[s, b]
                if block >= 0 and block_ptr[block + 1] > block_ptr[block]:
                    block_sse[block] = sgd_block(u_ptr, i_ptr, r_ptr, block_ptr[block],
                                                 block_ptr[block + 1], P, Q, bu, bi, k, mu,
                                                 lr_t, lr_b, reg_t, reg_b, biased)
    # Summed in block order so the returned loss does not depend on the thread count.
    return float(np.sum(block_sse))
