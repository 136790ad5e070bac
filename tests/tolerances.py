"""Comparison tolerances, one table keyed by dtype.

A kernel compared with the reference after one pass differs by rounding only: a few float32
ulps summed over short dot products, or float64's ~1e-16 grown by the same sums. ``scale``
widens the entry for comparisons after many passes (epochs, iterations), where rounding
differences feed back into the next pass.
"""

import numpy as np
from numpy.testing import assert_allclose

TOLERANCE = {
    np.dtype(np.float32): {"rtol": 2e-4, "atol": 2e-5},
    np.dtype(np.float64): {"rtol": 1e-9, "atol": 1e-12},
}


def tolerance(dtype, scale: float = 1.0) -> dict:
    """``{"rtol": ..., "atol": ...}`` for comparing arrays of ``dtype``."""
    entry = TOLERANCE[np.dtype(dtype)]
    return {name: value * scale for name, value in entry.items()}


def assert_close(actual, desired, dtype=None, scale: float = 1.0, err_msg: str = ""):
    """``assert_allclose`` at the table's tolerance for ``dtype`` (default: ``desired``'s)."""
    dtype = np.asarray(desired).dtype if dtype is None else dtype
    assert_allclose(actual, desired, err_msg=err_msg, **tolerance(dtype, scale))
