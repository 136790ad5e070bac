"""Backend registry: lazy probing, auto choice with reasons, clear errors."""

import io
import subprocess
import sys

import pytest

from fastrec.backends import (
    AUTO_ORDER,
    BackendUnavailable,
    auto_choice,
    available_backends,
    get_backend,
    show_backends,
)
from fastrec.backends._contract import CONTRACT, KERNEL_MODULES


def test_import_probes_nothing():
    code = ("import fastrec, fastrec.backends as b; "
            "assert b._CACHE == {}, b._CACHE; "
            "import sys; assert 'cupy' not in sys.modules and 'numba' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_show_backends_reports_every_backend():
    out = io.StringIO()
    backends = show_backends(file=out)
    text = out.getvalue()
    assert [b.name for b in backends] == list(AUTO_ORDER)
    for b in backends:
        assert b.name in text
        if not b.available:
            assert b.reason and "needs" in b.reason
    assert "auto ->" in text
    assert "openmp=" in text or "cython  unavailable" in text


def test_numpy_reference_always_available():
    backend = get_backend("numpy", ("sgd_epoch",))
    assert backend.available and backend.has("sgd_epoch")


def test_every_backend_registers_the_whole_contract():
    assert sorted(n for names in KERNEL_MODULES.values() for n in names) == sorted(CONTRACT)
    backends = available_backends()
    assert "numpy" in backends
    for name in backends:
        assert sorted(get_backend(name).kernels) == sorted(CONTRACT), name


def test_auto_prefers_the_fastest_available():
    name, passed_over = auto_choice(("sgd_epoch",))
    assert AUTO_ORDER.index(name) == len(passed_over)
    for skipped, why in passed_over.items():
        assert why and skipped != name


def test_unknown_and_missing_kernels():
    with pytest.raises(ValueError, match="unknown backend"):
        get_backend("opencl")
    with pytest.raises(BackendUnavailable, match="has no kernel no_such_kernel"):
        get_backend("numpy", ("no_such_kernel",))


def test_missing_kernel_attribute_error():
    backend = get_backend("numpy")
    with pytest.raises(AttributeError, match="no kernel"):
        backend.no_such_kernel  # noqa: B018
