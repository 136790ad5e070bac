"""Host (numpy) and device (CuPy) arrays behind one small interface.

CuPy is never imported here unless an array already is a CuPy array or a caller asks for the
device, so CPU-only installs never touch it.
"""

from __future__ import annotations

import types
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp


def is_device_array(a) -> bool:
    """True for CuPy arrays (and cupyx.scipy.sparse matrices)."""
    return type(a).__module__.split(".", 1)[0] in ("cupy", "cupyx")


def array_module(a) -> types.ModuleType:
    """``cupy`` for a CuPy array, ``numpy`` otherwise."""
    if is_device_array(a):
        import cupy

        return cupy
    return np


def sparse_module(a) -> types.ModuleType:
    """``cupyx.scipy.sparse`` for device arrays and matrices, ``scipy.sparse`` otherwise: the
    sparse constructors of the array module :func:`array_module` gives."""
    if is_device_array(a):
        import cupyx.scipy.sparse

        return cupyx.scipy.sparse
    return sp


def to_host(a):
    """numpy copy of a CuPy array (scipy.sparse for cupyx.scipy.sparse); anything else as is."""
    return a.get() if is_device_array(a) else a


def to_device(a):
    """CuPy copy of a numpy array (CuPy arrays are returned as they are)."""
    import cupy

    return cupy.asarray(a)


def host_data(data):
    """Training or validation input with its CuPy arrays and cupyx.scipy.sparse matrices copied
    to the host (tuples and lists element by element, as ``(user_ids, item_ids[, values])``);
    anything else as is."""
    if isinstance(data, (tuple, list)):
        return type(data)(to_host(a) for a in data)
    return to_host(data)


class Placement(NamedTuple):
    """Where one fit's (or one call's) arrays live, decided once, at the estimator's boundary,
    from its backend (:attr:`fastrec.backends.Backend.on_device`); the layers below work on
    arrays of whatever module they are given and never move them.

    On the device (CUDA): CuPy arrays and cupyx.scipy.sparse input stay there and are prepared
    there; host input is prepared on the host (the same layout and random draws as every
    backend) and :meth:`move` copies the prepared arrays to the device once. On the host:
    :meth:`inputs` copies device input to the host once, and :meth:`move` leaves arrays be.
    """

    device: bool

    def inputs(self, data):
        """User input (an array, a sparse matrix, a tuple of arrays, anything else) where this
        placement prepares it."""
        return data if self.device else host_data(data)

    def move(self, a):
        """A prepared array (or a fitted one) where the kernels read it."""
        return to_device(a) if self.device else to_host(a)


def aligned_zeros(shape: tuple[int, ...], dtype) -> np.ndarray:
    """Host zeros whose first element sits on a 64-byte boundary, so rows of whole 64-byte
    vectors never straddle two cache lines (numpy itself only promises 16 bytes)."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    raw = np.zeros(n * dtype.itemsize + 64, dtype=np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start:start + n * dtype.itemsize].view(dtype).reshape(shape)
