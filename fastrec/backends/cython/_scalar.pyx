"""Thin float64 wrappers of the header scalar math, for the Cython/Numba parity test only."""

from libc.stdint cimport int64_t

cdef extern from "fastrec/sgd.h" namespace "fastrec" nogil:
    T sgd_error[T](T rating, T global_mean, T user_bias, T item_bias, T dot)
    T sgd_bias_step[T](T bias, T err, T lr_bias, T reg_bias)
    T sgd_step[T](T err, T lr)
    T sgd_shrink[T](T lr, T reg)
    void sgd_factor_step[T](T &p, T &q, T step, T shrink)
    T sgd_lane_dot[T](const T *p, const T *q, int64_t k)


def sgd_error_f64(double rating, double mu, double bu, double bi, double dot):
    return sgd_error[double](rating, mu, bu, bi, dot)


def sgd_bias_step_f64(double bias, double err, double lr, double reg):
    return sgd_bias_step[double](bias, err, lr, reg)


def sgd_step_f64(double err, double lr):
    return sgd_step[double](err, lr)


def sgd_shrink_f64(double lr, double reg):
    return sgd_shrink[double](lr, reg)


def sgd_factor_step_f64(double p, double q, double step, double shrink):
    sgd_factor_step[double](p, q, step, shrink)
    return p, q


def sgd_lane_dot_f64(const double[::1] p, const double[::1] q):
    if p.shape[0] == 0:
        return 0.0
    return sgd_lane_dot[double](&p[0], &q[0], p.shape[0])
