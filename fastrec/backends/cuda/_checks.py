"""Contract checks of device arrays that need no device synchronisation (values and index
ranges are the caller's duty on the device, as for any CUDA kernel)."""

from __future__ import annotations

import numpy as np

from fastrec.backends._contract import ContractError


def check_like(name: str, arr, dtype, shape) -> None:
    """``arr`` has ``dtype``, ``shape`` and C order."""
    if arr.dtype != dtype:
        raise ContractError(f"{name} must have dtype {np.dtype(dtype)}, got {arr.dtype}")
    if tuple(arr.shape) != tuple(shape):
        raise ContractError(f"{name} must have shape {tuple(shape)}, got {arr.shape}")
    if not arr.flags.c_contiguous:
        raise ContractError(f"{name} must be C-contiguous")
