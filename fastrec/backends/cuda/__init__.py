"""CUDA backend: CuPy custom kernels from ``csrc/cuda``, compiled by NVRTC at first use.

Probed only when asked for, never at ``import fastrec``. Kernels: ``sgd_epoch`` (see
:mod:`fastrec.backends.cuda.sgd` for the thread mapping and its determinism promise);
``svdpp_epoch`` (:mod:`.svdpp`); the NMF
updates and losses (:mod:`.nmf`); ``gru_forward``, ``gru_backward``, ``gru4rec_output_loss``,
``gru4rec_train_epoch`` (:mod:`.gru`); the NCF passes ``ncf_forward``, ``ncf_backward`` and
``ncf_train_epoch`` (:mod:`.ncf`); the optimiser steps ``adam_step``, ``sparse_adam_step`` and
``sparse_adagrad_step`` (:mod:`.optim`); ``default_n_blocks``, the SGD grid side sized to the
device (the registry's ``Backend.default_n_blocks``). Contract functions accept CuPy arrays
(zero-copy) or numpy arrays (copied to the device and back).
"""

from fastrec.backends._contract import export_kernels
from fastrec.backends.cuda._loader import LAST_NVRTC_FOR_ARCH, SUPPORTED_ARCHS
from fastrec.backends.cuda.sgd import default_n_blocks

__all__ = ["default_n_blocks", "probe", *export_kernels(globals(), __name__)]


def probe():
    """Return ``(version, details)``; raise with the reason when CUDA cannot run here."""
    try:
        import cupy
    except ImportError as exc:
        raise RuntimeError(f"CuPy is not installed ({exc}): pip install 'fastrec[cuda]'") from exc
    try:
        n_devices = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError as exc:
        if not _have_driver() or exc.status == _CUDA_ERROR_NO_DEVICE:
            # without libcuda the runtime reports "driver version is insufficient", which
            # sends a user without any GPU looking for a driver update
            raise RuntimeError("no NVIDIA driver or GPU found") from exc
        raise RuntimeError(f"no usable CUDA device or driver ({exc})") from exc
    if n_devices < 1:
        raise RuntimeError("CuPy found no CUDA device")
    try:
        from cupy_backends.cuda.libs import nvrtc

        nvrtc_major, nvrtc_minor = nvrtc.getVersion()
    except Exception as exc:  # noqa: BLE001 - a missing libnvrtc surfaces as various errors
        raise RuntimeError(f"NVRTC cannot be loaded ({exc}): pip install "
                           "'nvidia-cuda-nvrtc==13.*' (match CuPy's CUDA major)") from exc
    device = cupy.cuda.Device()
    arch = device.compute_capability
    if int(arch) < int(SUPPORTED_ARCHS[0]):
        raise RuntimeError(f"the GPU has compute capability {arch[:-1]}.{arch[-1]}; fastrec's "
                           f"kernels need {SUPPORTED_ARCHS[0][0]}.{SUPPORTED_ARCHS[0][1]} or newer")
    if nvrtc_major > LAST_NVRTC_FOR_ARCH.get(arch, nvrtc_major):
        raise RuntimeError(f"NVRTC {nvrtc_major} cannot compile for sm_{arch}; use CUDA "
                           f"{LAST_NVRTC_FOR_ARCH[arch]}: pip install 'fastrec[cuda12]'")
    nvrtc_version = f"{nvrtc_major}.{nvrtc_minor}"
    props = cupy.cuda.runtime.getDeviceProperties(device.id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    runtime = cupy.cuda.runtime.runtimeGetVersion()
    details = {"devices": n_devices, "device": name,
               "compute_capability": arch, "nvrtc": nvrtc_version}
    version = f"cupy {cupy.__version__}, CUDA runtime {runtime // 1000}.{runtime % 1000 // 10}"
    return version, details


_CUDA_ERROR_NO_DEVICE = 100  # cudaErrorNoDevice


def _have_driver() -> bool:
    """Whether the NVIDIA driver's user-space library (libcuda / nvcuda.dll) can be loaded."""
    import ctypes
    import sys

    try:
        ctypes.CDLL("nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1")
    except OSError:
        return False
    return True
