"""Numba mirror of the scalar math in ``csrc/include/fastrec/*.h`` (same names, same order of
operations). Numba cannot include C headers; ``tests/kernels/test_scalar_parity.py`` runs every
function here against its C twin."""

import numpy as np
from numba import njit

from fastrec.backends.numba.simd import LANES, lane_dot

SGD_DOT_LANES = LANES


@njit(inline="always", cache=True)
def sgd_error(rating, global_mean, user_bias, item_bias, dot):
    return rating - (global_mean + user_bias + item_bias + dot)


@njit(inline="always", cache=True)
def sgd_bias_step(bias, err, lr_bias, reg_bias):
    return bias + lr_bias * (err - reg_bias * bias)


@njit(inline="always", cache=True)
def sgd_step(err, lr):
    return lr * err


@njit(inline="always", cache=True)
def sgd_shrink(lr, reg):
    return 1 - lr * reg


@njit(inline="always", cache=True)
def sgd_factor_step(p, q, step, shrink):
    """Returns the new (p, q); q's step uses p from before this rating."""
    return shrink * p + step * q, shrink * q + step * p


@njit(inline="always", cache=True)
def sgd_lane_dot(p, q):
    """Dot product of two C-contiguous rows with SGD_DOT_LANES interleaved partial sums reduced
    pairwise, as explicit vector IR (see ``simd.lane_dot``)."""
    return lane_dot(p, q)


# ---- NMF (csrc/include/fastrec/nmf.h) ------------------------------------------------------------
# ``eps`` is NMF_EPSILON already cast to the kernel's dtype: Numba cannot cast to "the type of
# this argument" inside a function, and a float64 constant would promote float32 math.
NMF_EPSILON = 1.1920928955078125e-07


@njit(inline="always", cache=True)
def nmf_kl_ratio(x, dot, eps):
    return x / (eps if dot < eps else dot)


@njit(inline="always", cache=True)
def nmf_regularised_denominator(den, value, l1, l2):
    return (den + l1) + l2 * value


@njit(inline="always", cache=True)
def nmf_mu_step(value, num, den, eps):
    safe = eps if den == 0 else den
    stepped = value * (num / safe)
    if stepped - stepped == 0:  # finite
        return stepped
    if not (num - num == 0 and safe - safe == 0):  # overflowing input: the fit sees it
        return stepped
    return num / (safe / value) if value > 0 else value - value


@njit(inline="always", cache=True)
def nmf_positive_part(t):
    return t if t > 0 else t - t


@njit(inline="always", cache=True)
def nmf_negative_part(t):
    return -t if t < 0 else t - t


@njit(inline="always", cache=True)
def nmf_bias_solve(residual_sum, count, reg_bias):
    return residual_sum / (count + count * reg_bias) if count > 0 else residual_sum - residual_sum


@njit(inline="always", cache=True)
def nmf_kl_entry(x, dot):
    if x <= 0.0:
        return 0.0
    wh = NMF_EPSILON if dot < NMF_EPSILON else dot
    return x * np.log(x / wh) - x
