# distutils: language = c++
"""Thin float64 (and fused-float) wrappers of the csrc/ header scalar math, for the parity tests
between the C++ headers and their Numba and numpy mirrors. Test-only: built by
``tests.shims.load``, never part of the installed extensions."""

from libc.stdint cimport int64_t, uint64_t

from fastrec.backends.cython._types cimport floating

import numpy as np


cdef extern from "fastrec/sgd.h" namespace "fastrec" nogil:
    T sgd_error[T](T rating, T global_mean, T user_bias, T item_bias, T dot)
    T sgd_bias_step[T](T bias, T err, T lr_bias, T reg_bias)
    T sgd_step[T](T err, T lr)
    T sgd_shrink[T](T lr, T reg)
    void sgd_factor_step[T](T &p, T &q, T step, T shrink)
    T sgd_lane_dot[T](const T *p, const T *q, int64_t k)

cdef extern from "fastrec/nmf.h" namespace "fastrec" nogil:
    double NMF_EPSILON
    T nmf_kl_ratio[T](T x, T dot)
    T nmf_regularised_denominator[T](T den, T value, T l1, T l2)
    T nmf_mu_step[T](T value, T num, T den)
    T nmf_positive_part[T](T t)
    T nmf_negative_part[T](T t)
    T nmf_bias_solve[T](T residual_sum, T count, T reg_bias)
    double nmf_kl_entry(double x, double dot)

cdef extern from "fastrec/rng.h" namespace "fastrec" nogil:
    uint64_t rng_mix64(uint64_t z)
    uint64_t rng_key(uint64_t seed, uint64_t stream)
    uint64_t rng_at(uint64_t key, uint64_t index)
    uint64_t rng_below(uint64_t bits, uint64_t n)
    double rng_uniform(uint64_t bits)

cdef extern from "fastrec/optim.h" namespace "fastrec" nogil:
    void adam_update[T](T &w, T &m, T &v, T g, T step_size, T inv_sqrt_bc2, T beta1, T beta2,
                        T eps)
    void adagrad_update[T](T &w, T &acc, T g, T lr, T eps)
    double adam_step_size(double lr, double beta1, int64_t step)
    double adam_inv_sqrt_bc2(double beta2, int64_t step)


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


def nmf_scalar(str name, floating[::1] a, floating[::1] b, floating[::1] c, floating[::1] d):
    """One scalar function of ``fastrec/nmf.h`` elementwise; returns a new array."""
    cdef Py_ssize_t j, n = a.shape[0]
    out_arr = np.empty(n, dtype=np.float32 if floating is float else np.float64)
    cdef floating[::1] out = out_arr
    for j in range(n):
        if name == "nmf_kl_ratio":
            out[j] = nmf_kl_ratio(a[j], b[j])
        elif name == "nmf_regularised_denominator":
            out[j] = nmf_regularised_denominator(a[j], b[j], c[j], d[j])
        elif name == "nmf_mu_step":
            out[j] = nmf_mu_step(a[j], b[j], c[j])
        elif name == "nmf_positive_part":
            out[j] = nmf_positive_part(a[j])
        elif name == "nmf_negative_part":
            out[j] = nmf_negative_part(a[j])
        elif name == "nmf_bias_solve":
            out[j] = nmf_bias_solve(a[j], b[j], c[j])
        elif name == "nmf_kl_entry":
            out[j] = <floating>nmf_kl_entry(a[j], b[j])
        else:
            raise ValueError(f"unknown scalar function {name!r}")
    return out_arr


def nmf_epsilon():
    return NMF_EPSILON


def rng_mix64_py(uint64_t z):
    return rng_mix64(z)


def rng_key_py(uint64_t seed, uint64_t stream):
    return rng_key(seed, stream)


def rng_at_py(uint64_t key, uint64_t index):
    return rng_at(key, index)


def rng_below_py(uint64_t bits, uint64_t n):
    return rng_below(bits, n)


def rng_uniform_py(uint64_t bits):
    return rng_uniform(bits)


def adam_update_f64(double w, double m, double v, double g, double lr, double beta1,
                    double beta2, double eps, int64_t step):
    adam_update[double](w, m, v, g, adam_step_size(lr, beta1, step),
                        adam_inv_sqrt_bc2(beta2, step), beta1, beta2, eps)
    return w, m, v


def adagrad_update_f64(double w, double acc, double g, double lr, double eps):
    adagrad_update[double](w, acc, g, lr, eps)
    return w, acc
