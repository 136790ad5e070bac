"""Comparison tolerances: one table keyed by dtype.

``host``: a kernel against the reference (or another CPU kernel) after one pass. They differ by
rounding only: a few float32 ulps summed over short dot products, or float64's ~1e-16 grown by
the same sums. ``device``: the same comparison for results computed on a GPU, where cuBLAS
contracts to FMA and sums in another order and float32 flushes denormals to zero. ``scale``
widens an entry for comparisons after many passes (epochs, iterations), where rounding
differences feed into the next pass.
"""

import numpy as np
from numpy.testing import assert_allclose

TOLERANCE = {
    np.dtype(np.float32): {"host": {"rtol": 2e-4, "atol": 2e-5},
                           "device": {"rtol": 1e-3, "atol": 3e-4}},
    np.dtype(np.float64): {"host": {"rtol": 1e-9, "atol": 1e-12},
                           "device": {"rtol": 1e-9, "atol": 1e-9}},
}


def tolerance(dtype, where: str = "host", scale: float = 1.0) -> dict:
    """``{"rtol": ..., "atol": ...}`` for comparing arrays of ``dtype`` computed ``where``."""
    entry = TOLERANCE[np.dtype(dtype)][where]
    return {name: value * scale for name, value in entry.items()}


def assert_close(actual, desired, dtype=None, where: str = "host", scale: float = 1.0,
                 err_msg: str = ""):
    """``assert_allclose`` at the table's tolerance for ``dtype`` (default: ``desired``'s)."""
    dtype = np.asarray(desired).dtype if dtype is None else dtype
    assert_allclose(actual, desired, err_msg=err_msg, **tolerance(dtype, where, scale))


def assert_gradient_matches(f, param, grad, rng, n_points=6, h=1e-6):
    """Central differences of the scalar ``f()`` at ``n_points`` random entries of ``param``
    (float64, perturbed in place and restored) against the analytic ``grad`` (same shape).
    Truncation error ~h^2 and cancellation ~1e-16/h bound the agreement, not the dtype table."""
    for flat in rng.choice(param.size, size=min(n_points, param.size), replace=False):
        idx = np.unravel_index(flat, param.shape)
        old = param[idx]
        param[idx] = old + h
        up = f()
        param[idx] = old - h
        down = f()
        param[idx] = old
        assert_allclose(grad[idx], (up - down) / (2 * h), rtol=1e-5, atol=1e-8, err_msg=str(idx))
