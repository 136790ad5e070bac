# distutils: extra_compile_args = -fno-math-errno
# (errno of sqrt/exp/log is never read here; GCC's errno guard would keep the optimiser loops
# scalar)
"""Optimiser step kernels: dense Adam, lazy sparse Adam, sparse Adagrad."""

from libc.stdint cimport int64_t

from fastrec.backends.cython._types cimport floating, index_t

import numpy as np


cdef extern from "fastrec/optim_cpu.h" namespace "fastrec" nogil:
    cdef int OPT_ADAM, OPT_ADAGRAD
    void dense_step[T](int kind, double lr, double beta1, double beta2, double eps, int64_t step,
                       T *params, const T *grads, T *state1, T *state2, int64_t n,
                       int n_threads)
    void sparse_step[T, I](int kind, double lr, double beta1, double beta2, double eps,
                           int64_t step, T *table, int64_t d, const I *rows, int64_t n,
                           T *row_grads, T *state1, T *state2, int64_t *stamp, int64_t *tail,
                           int64_t *next, int64_t *leaders, int64_t batch_id, int n_threads)


def adam_step(floating[::1] params, const floating[::1] grads, floating[::1] m,
              floating[::1] v, int64_t step, double lr, double beta1=0.9, double beta2=0.999,
              double eps=1e-8, int n_threads=1):
    """See ``fastrec.backends._contract.ADAM_STEP_DOC``."""
    if params.shape[0] == 0:
        return
    with nogil:
        dense_step(OPT_ADAM, lr, beta1, beta2, eps, step, &params[0], &grads[0], &m[0], &v[0],
                   params.shape[0], n_threads)


cdef _sparse_step(int kind, floating[:, ::1] table, const index_t[::1] rows,
                  const floating[:, ::1] row_grads, floating[:, ::1] state1,
                  floating[:, ::1] state2, int64_t step, double lr, double beta1, double beta2,
                  double eps, int n_threads):
    cdef Py_ssize_t n = rows.shape[0]
    cdef int64_t d = table.shape[1]
    if n == 0 or d == 0:
        return
    cdef int64_t[::1] stamp = np.full(table.shape[0], -1, np.int64)
    cdef int64_t[::1] tail = np.empty(table.shape[0], np.int64)
    cdef int64_t[::1] nxt = np.empty(n, np.int64)
    cdef int64_t[::1] leaders = np.empty(n, np.int64)
    cdef floating[:, ::1] grads = np.array(row_grads, copy=True)
    with nogil:
        sparse_step(kind, lr, beta1, beta2, eps, step, &table[0, 0], d, &rows[0], n,
                    &grads[0, 0], &state1[0, 0], &state2[0, 0], &stamp[0], &tail[0], &nxt[0],
                    &leaders[0], 0, n_threads)


def sparse_adam_step(floating[:, ::1] table, const index_t[::1] rows,
                     const floating[:, ::1] row_grads, floating[:, ::1] m, floating[:, ::1] v,
                     int64_t step, double lr, double beta1=0.9, double beta2=0.999,
                     double eps=1e-8, int n_threads=1):
    """See ``fastrec.backends._contract.SPARSE_ADAM_STEP_DOC``."""
    _sparse_step(OPT_ADAM, table, rows, row_grads, m, v, step, lr, beta1, beta2, eps, n_threads)


def sparse_adagrad_step(floating[:, ::1] table, const index_t[::1] rows,
                        const floating[:, ::1] row_grads, floating[:, ::1] acc, double lr,
                        double eps=1e-10, int n_threads=1):
    """See ``fastrec.backends._contract.SPARSE_ADAGRAD_STEP_DOC``."""
    _sparse_step(OPT_ADAGRAD, table, rows, row_grads, acc, acc, 1, lr, 0.0, 0.0, eps,
                 n_threads)
