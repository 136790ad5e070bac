"""Host (numpy) and device (CuPy) arrays behind one small interface.

CuPy is never imported here unless an array already is a CuPy array or a caller asks for the
device, so CPU-only installs never touch it.
"""

from __future__ import annotations

import types

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


def aligned_zeros(shape: tuple[int, ...], dtype) -> np.ndarray:
    """Host zeros whose first element sits on a 64-byte boundary, so rows of whole 64-byte
    vectors never straddle two cache lines (numpy itself only promises 16 bytes)."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    raw = np.zeros(n * dtype.itemsize + 64, dtype=np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start:start + n * dtype.itemsize].view(dtype).reshape(shape)
