"""Shared fixtures: CPU backends as parameters that skip with the reason when unavailable."""

from pathlib import Path

import pytest

from fastrec.backends import _probe

CPU_BACKENDS = ("numpy", "cython", "numba")
COMPILED_BACKENDS = ("cython", "numba")
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def require_backend(name: str, *kernels: str):
    backend = _probe(name)
    if not backend.available:
        pytest.skip(f"backend {name} unavailable: {backend.reason}")
    missing = [k for k in kernels if k not in backend.kernels]
    if missing:
        pytest.skip(f"backend {name} has no kernel {missing}")
    return backend


@pytest.fixture(params=COMPILED_BACKENDS)
def compiled_backend(request):
    return request.param


@pytest.fixture(params=CPU_BACKENDS)
def cpu_backend(request):
    return request.param
