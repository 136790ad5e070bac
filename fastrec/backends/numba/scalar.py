"""Numba mirror of the scalar math in ``csrc/include/fastrec/*.h`` (same names, same order of
operations). Numba cannot include C headers; ``tests/kernels/test_scalar_parity.py`` runs every
function here against its C twin."""

from numba import njit

SGD_DOT_LANES = 16


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
def sgd_lane_dot(p, q, acc):
    """Dot product with SGD_DOT_LANES interleaved partial sums reduced pairwise; ``acc`` is
    caller-provided scratch of SGD_DOT_LANES elements."""
    k = p.shape[0]
    for lane in range(SGD_DOT_LANES):
        acc[lane] = 0
    j = 0
    while j + SGD_DOT_LANES <= k:
        for lane in range(SGD_DOT_LANES):
            acc[lane] += p[j + lane] * q[j + lane]
        j += SGD_DOT_LANES
    lane = 0
    while j < k:
        acc[lane] += p[j] * q[j]
        j += 1
        lane += 1
    for width in (8, 4, 2):
        for lane in range(width):
            acc[lane] += acc[lane + width]
    return acc[0] + acc[1]
