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
def topn_module(emulator):
    """``csrc/cuda/topn.cu`` in the emulator: what model-level tests need for recommend."""
    from fastrec.backends.cuda import _loader

    return emulator.EmulatedModule(_loader.kernel_path("topn"), _loader.compile_options(),
                                   _loader.NAME_EXPRESSIONS["topn"])


@pytest.fixture(scope="session")
def sgd_module(emulator):
    """``csrc/cuda/sgd.cu`` built in the emulator with the loader's options and names."""
    from fastrec.backends.cuda import _loader

    return emulator.EmulatedModule(_loader.kernel_path("sgd"), _loader.compile_options(),
                                   _loader.NAME_EXPRESSIONS["sgd"])
