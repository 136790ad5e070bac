"""Fixtures for the CUDA backend tests: the real device, the emulator and the SGD kernels built
in it."""

from __future__ import annotations

import pytest

from tests.conftest import backend_or_skip


def _gxx_reason():
    import shutil

    return None if shutil.which("g++") else "g++ is not installed (the emulator needs it)"


@pytest.fixture(scope="module")
def cuda_backend(request):
    """The CUDA backend on a real device, with the kernels the test module lists in
    ``CUDA_KERNELS``; skips with the reason where there is none."""
    return backend_or_skip("cuda", *request.module.CUDA_KERNELS)


@pytest.fixture(scope="session")
def emulator():
    """The ``cuda_emulator`` helper module (skips when g++ is absent)."""
    reason = _gxx_reason()
    if reason:
        pytest.skip(reason)
    from tests.cuda.emulator import cuda_emulator

    return cuda_emulator


@pytest.fixture(scope="session")
def emulated_modules(emulator):
    """``module(name)``: ``csrc/cuda/<name>.cu`` built in the emulator with the loader's options
    and names, on first use, once per session."""
    from fastrec.backends.cuda import _loader

    built = {}

    def module(name):
        if name not in built:
            built[name] = emulator.EmulatedModule(_loader.kernel_path(name),
                                                  _loader.compile_options(),
                                                  _loader.NAME_EXPRESSIONS[name])
        return built[name]

    return module


@pytest.fixture(scope="session")
def topn_module(emulated_modules):
    """``csrc/cuda/topn.cu`` in the emulator: what model-level tests need for recommend."""
    return emulated_modules("topn")


@pytest.fixture(scope="session")
def sgd_module(emulated_modules):
    """``csrc/cuda/sgd.cu`` in the emulator."""
    return emulated_modules("sgd")


@pytest.fixture(params=["emulated", pytest.param("cupy", marks=pytest.mark.gpu)])
def cuda_run(request, monkeypatch):
    """Run the test body once per array module (:class:`tests.cuda.helpers.CudaRun`): with
    CuPy replaced by host stand-ins and NVRTC by the emulator (random thread order), the
    registry's ``cuda`` backend being the real launchers; and with real CuPy on a device,
    skipped with the reason where there is none."""
    from tests.cuda.helpers import (
        CudaRun,
        DeviceArray,
        FakeCupy,
        gpu_unavailable_reason,
        patch_cupy,
        register_emulated_cuda,
    )

    if request.param == "cupy":
        reason = gpu_unavailable_reason()
        if reason:
            pytest.skip(f"the real-CuPy run needs a CUDA device: {reason}")
        import cupy

        return CudaRun("cupy", cupy, cupy.ndarray, "device")
    modules = request.getfixturevalue("emulated_modules")
    patch_cupy(monkeypatch, lambda source, expression: modules(source).get_function(
        expression, order="random", seed=1))
    register_emulated_cuda(monkeypatch)
    return CudaRun("emulated", FakeCupy(), DeviceArray, "host")
