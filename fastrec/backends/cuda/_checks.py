"""When the CUDA contract functions let the shared validators read array contents."""

from __future__ import annotations

from fastrec._array import is_device_array


def host_values(*arrays) -> bool:
    """True when no argument is a device array: the validators' ``values`` (index ranges, row
    pointers) are then read on the host, as the CPU backends' callers do; on the device they
    would cost a reduction and a synchronisation per launch (see ``_contract.VALUES``)."""
    return not any(is_device_array(a) for a in arrays)
