"""The CUDA backend on a real device (marked ``gpu``; skipped with the reason where there is
none), plus the parts that need no device: the unavailable-backend error, lazy probing and the
source hash."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from fastrec.backends import BackendUnavailable, get_backend
from fastrec.backends.cuda import _loader
from fastrec.backends.reference import sgd_epoch as reference_epoch
from tests.cuda.helpers import gpu_unavailable_reason, make_sgd_problem
from tests.tolerances import tolerance

CUDA_KERNELS = ("sgd_epoch",)


def test_unavailable_backend_says_why():
    reason = gpu_unavailable_reason()
    if reason is None:
        pytest.skip("a CUDA device is available here")
    with pytest.raises(BackendUnavailable, match=r"'cuda' is unavailable: .+fastrec\[cuda\]"):
        get_backend("cuda")


def test_import_fastrec_does_not_touch_cuda():
    code = "import sys, fastrec; assert 'cupy' not in sys.modules, 'cupy imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("change, message", [
    (lambda d, f: ({**d, "ratings": d["ratings"].astype(np.float32)}, f), "ratings must have"),
    (lambda d, f: ({**d, "items": d["items"].astype(np.int64)}, f), "items must have dtype int32"),
    (lambda d, f: (d, (f[0], f[1][:, :3].copy(), *f[2:])), "item_factors must have shape"),
    (lambda d, f: (d, (f[0], np.asfortranarray(f[1]), *f[2:])), "C-contiguous"),
    (lambda d, f: ({**d, "block_ptr": d["block_ptr"][:-2]}, f), "square G x G grid"),
])
def test_contract_errors_need_no_device(change, message):
    from fastrec.backends._contract import ContractError
    from fastrec.backends.cuda import sgd_epoch

    data, factors, scalars = make_sgd_problem(nnz=50, k=4)
    data, factors = change(data, factors)
    with pytest.raises(ContractError, match=message):
        sgd_epoch(*data.values(), *factors, *scalars, True, 1)


def test_source_hash_covers_headers(tmp_path, monkeypatch):
    copy = tmp_path / "csrc"
    shutil.copytree(_loader.source_root(), copy)
    monkeypatch.setattr(_loader, "source_root", lambda: copy)
    _loader.source_hash.cache_clear()
    try:
        before = _loader.source_hash()
        header = copy / "include" / "fastrec" / "sgd.h"
        header.write_text(header.read_text() + "\n// changed\n")
        _loader.source_hash.cache_clear()
        assert _loader.source_hash() != before
        assert f"-I{copy / 'include'}" in _loader.compile_options()
    finally:
        _loader.source_hash.cache_clear()


@pytest.mark.gpu
def test_probe_reports_the_device(cuda_backend):
    assert cuda_backend.available
    assert "cupy" in cuda_backend.version
    assert {"device", "compute_capability", "nvrtc"} <= set(cuda_backend.details)


@pytest.mark.gpu
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("order", ["dataflow", "strata"])
def test_numpy_arrays_match_reference(cuda_backend, order, dtype, index_dtype):
    data, factors, scalars = make_sgd_problem(dtype=dtype, index_dtype=index_dtype, nnz=2000,
                                              n_users=200, n_items=150, n_blocks=8)
    expected = [f.copy() for f in factors]
    sse_ref = reference_epoch(*data.values(), *expected, *scalars, True)
    got = [f.copy() for f in factors]
    sse = cuda_backend.sgd_epoch(*data.values(), *got, *scalars, True, 1, order=order)
    np.testing.assert_allclose(sse, sse_ref, rtol=tolerance(dtype, "device")["rtol"])
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, **tolerance(dtype, "device"))


@pytest.mark.gpu
@pytest.mark.parametrize("backend", [
    "numba",
    "cython",
])
def test_bitwise_equal_to_compiled_cpu_backend(cuda_backend, backend):
    """No FMA contraction (--fmad=false) and the CPU's summation order: the GPU reproduces the
    CPU kernel bit for bit in float64 (float32 too, barring denormals, which -ftz flushes)."""
    from tests.conftest import backend_or_skip

    cpu_epoch = backend_or_skip(backend, "sgd_epoch").sgd_epoch
    data, factors, scalars = make_sgd_problem(nnz=5000, n_users=400, n_items=300, n_blocks=16,
                                              k=70)
    expected = [f.copy() for f in factors]
    cpu_epoch(*data.values(), *expected, *scalars, True, 2)
    got = [f.copy() for f in factors]
    cuda_backend.sgd_epoch(*data.values(), *got, *scalars, True, 1)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g, e)


@pytest.mark.gpu
def test_cupy_arrays_are_updated_in_place_and_deterministic(cuda_backend):
    """Two dataflow runs and a strata run agree bit for bit: the order is the schedule's."""
    import cupy

    data, factors, scalars = make_sgd_problem(dtype=np.float32, nnz=20000, n_users=2000,
                                              n_items=1500, n_blocks=64)
    expected = [f.copy() for f in factors]
    reference_epoch(*data.values(), *expected, *scalars, False)
    runs = []
    for order in ("dataflow", "dataflow", "strata"):
        device_data = [cupy.asarray(a) for a in data.values()]
        device_factors = [cupy.asarray(f) for f in factors]
        pointers = [f.data.ptr for f in device_factors]
        cuda_backend.sgd_epoch(*device_data, *device_factors, *scalars, False, 1, order=order)
        assert [f.data.ptr for f in device_factors] == pointers
        runs.append([f.get() for f in device_factors])
    for a, b, c, e in zip(*runs, expected, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
        np.testing.assert_allclose(a, e, **tolerance(np.float32, "device"))
    np.testing.assert_array_equal(runs[0][2], factors[2])


@pytest.mark.gpu
def test_repeated_blocks_and_skipped_slots(cuda_backend):
    data, factors, scalars = make_sgd_problem(nnz=3000, n_users=300, n_items=200, n_blocks=8)
    schedule = np.full((80, 8), -1, dtype=np.int64)
    schedule[[0, 40, 79]] = data["schedule"][0]  # repeats 40 strata apart: SSE per slot, and
    schedule[[5, 45], ::2] = data["schedule"][1, ::2]  # predecessor searches past 32 strata
    data = {**data, "schedule": schedule}
    expected = [f.copy() for f in factors]
    sse_ref = reference_epoch(*data.values(), *expected, *scalars, True)
    got = [f.copy() for f in factors]
    sse = cuda_backend.sgd_epoch(*data.values(), *got, *scalars, True, 1)
    np.testing.assert_allclose(sse, sse_ref, rtol=1e-10)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, **tolerance(np.float64, "device"))


@pytest.mark.gpu
def test_no_ratings_is_a_no_op(cuda_backend):
    data, factors, scalars = make_sgd_problem(nnz=0)
    got = [f.copy() for f in factors]
    assert cuda_backend.sgd_epoch(*data.values(), *got, *scalars, True, 1) == 0.0
    for g, f in zip(got, factors, strict=True):
        np.testing.assert_array_equal(g, f)


@pytest.mark.parametrize("arch, nvrtc_major, message", [
    ("60", 13, "compute capability 6.0; fastrec's kernels need 7.0 or newer"),
    ("70", 13, "NVRTC 13 cannot compile for sm_70; use CUDA 12"),
    ("70", 12, None),
    ("86", 13, None),
])
def test_probe_checks_the_architecture(monkeypatch, arch, nvrtc_major, message):
    """The probe's device checks, with CuPy's device queries replaced (no GPU needed)."""
    cupy = pytest.importorskip("cupy")
    from cupy_backends.cuda.libs import nvrtc

    from fastrec.backends.cuda import probe

    class FakeDevice:
        id = 0
        compute_capability = arch

    monkeypatch.setattr(cupy.cuda.runtime, "getDeviceCount", lambda: 1)
    monkeypatch.setattr(cupy.cuda.runtime, "getDeviceProperties", lambda i: {"name": b"fake"})
    monkeypatch.setattr(cupy.cuda.runtime, "runtimeGetVersion", lambda: 13000)
    monkeypatch.setattr(cupy.cuda, "Device", FakeDevice)
    monkeypatch.setattr(nvrtc, "getVersion", lambda: (nvrtc_major, 0))
    if message is None:
        version, details = probe()
        assert details["compute_capability"] == arch and version.startswith("cupy")
    else:
        with pytest.raises(RuntimeError, match=message):
            probe()
