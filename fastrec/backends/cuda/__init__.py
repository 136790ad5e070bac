"""CUDA backend slot: CuPy custom kernels compiled from csrc/cuda by NVRTC at first use.

Probed only when asked for; never at ``import fastrec``.
"""

__all__ = ["probe"]


def probe():
    import cupy

    n_devices = cupy.cuda.runtime.getDeviceCount()
    if n_devices < 1:
        raise RuntimeError("CuPy found no CUDA device")
    raise RuntimeError("the CUDA kernels are not built yet")
