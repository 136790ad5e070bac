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
