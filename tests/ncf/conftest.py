import pytest

from fastrec.backends import _probe


def backend_or_skip(name, *kernels):
    backend = _probe(name)
    if not backend.available:
        pytest.skip(f"backend {name} unavailable: {backend.reason}")
    missing = [k for k in kernels if k not in backend.kernels]
    if missing:
        pytest.skip(f"backend {name} has no kernel {missing}")
    return backend
