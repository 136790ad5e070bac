"""Helpers shared by the CUDA tests and the AddressSanitizer script."""

from __future__ import annotations

import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

EMULATOR_DIR = Path(__file__).resolve().parent / "emulator"


def run_under_asan(emulator, script: str, *args: str, kernels=(), timeout: int = 400):
    """Build the sanitized emulator modules of the .cu ``kernels`` (here, where a compile error
    is readable), then run ``emulator/<script> *args`` with libasan preloaded (a sanitized
    library cannot be loaded into a normal Python); returns the CompletedProcess. Skips when
    g++ has no AddressSanitizer runtime."""
    import os
    import subprocess
    import sys

    import pytest

    from fastrec.backends.cuda import _loader

    found = subprocess.run(["g++", "-print-file-name=libasan.so"], capture_output=True,
                           text=True)
    library = found.stdout.strip()
    if found.returncode != 0 or not os.path.isabs(library):
        pytest.skip("g++ has no AddressSanitizer runtime (libasan)")
    for name in kernels:
        emulator.build(_loader.kernel_path(name), _loader.compile_options(),
                       _loader.NAME_EXPRESSIONS[name], asan=True)
    env = {**os.environ, "LD_PRELOAD": library, "ASAN_OPTIONS": "detect_leaks=0",
           "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(EMULATOR_DIR / script), *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


@dataclass(frozen=True)
class CudaRun:
    """The array module one run of a test body uses (the ``cuda_run`` fixture), in the spirit
    of ``cupy.testing.numpy_cupy_allclose``: ``"emulated"``, :class:`FakeCupy` (numpy arrays
    as :class:`DeviceArray`) with the kernels built in the emulator, or ``"cupy"``, real CuPy
    on a device. ``where`` picks the tolerance table's column: the emulator computes on the
    host, a GPU rounds as a device does."""

    name: str
    xp: object
    array_type: type
    where: str

    def asarray(self, a):
        """``a`` copied to the device."""
        return self.xp.asarray(a)

    def on_device(self, a) -> bool:
        return type(a) is self.array_type

    def tolerance(self, dtype, scale: float = 1.0) -> dict:
        from tests.tolerances import tolerance

        return tolerance(dtype, self.where, scale)


def gpu_unavailable_reason() -> str | None:
    """Why the real-device tests cannot run here, or None when a CUDA device is usable."""
    from fastrec.backends import BackendUnavailable, get_backend

    try:
        get_backend("cuda", require=("sgd_epoch",))
    except BackendUnavailable as exc:
        return str(exc)
    return None


def make_sgd_problem(seed=0, n_users=30, n_items=20, nnz=300, k=40, n_blocks=4,
                     dtype=np.float64, index_dtype=np.int32):
    """A blocked random problem: (arrays dict, factors tuple, scalars tuple)."""
    from fastrec._algorithms.sgd_schedule import BlockedRatings

    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, nnz).astype(index_dtype)
    items = rng.integers(0, n_items, nnz).astype(index_dtype)
    ratings = rng.uniform(1, 5, nnz).astype(dtype)
    blocked = BlockedRatings.build(users, items, ratings, n_users, n_items, n_blocks, rng)
    data = {"users": blocked.users, "items": blocked.items, "ratings": blocked.ratings,
            "block_ptr": blocked.block_ptr, "schedule": blocked.epoch_schedule(rng)}
    factors = (rng.normal(0, 0.1, (n_users, k)).astype(dtype),
               rng.normal(0, 0.1, (n_items, k)).astype(dtype),
               rng.normal(0, 0.1, n_users).astype(dtype),
               rng.normal(0, 0.1, n_items).astype(dtype))
    scalars = (3.0, 0.01, 0.02, 0.05, 0.01)
    return data, factors, scalars


def kernel_getter(module, data, factors, order="forward", seed=0):
    """``get_kernel(name)`` for ``launch_sgd_epoch``: the emulated kernels for the problem's
    dtypes, run in thread order ``order``."""
    from fastrec.backends.cuda import _loader

    dtype, index_dtype = factors[0].dtype, data["users"].dtype

    def get_kernel(name):
        if name == "sgd_dataflow_positions":
            expression = f"fastrec::cuda::{name}"
        else:
            expression = _loader.name_expression(name, dtype, index_dtype)
        return module.get_function(expression, order=order, seed=seed)

    return get_kernel


class DeviceArray(np.ndarray):
    """A host array standing in for a CuPy array: its own memory, ``get(out=...)``. Its
    ``__module__`` claims CuPy so that :func:`fastrec._array.is_device_array` treats it as device
    memory, as it would a real CuPy array."""

    def get(self, out=None):
        if out is None:
            return np.array(self)
        out[...] = self
        return out


DeviceArray.__module__ = "cupy.emulated"


# The emulated device's multiprocessors (what the SGD launcher sizes its CTAs by) and their
# resident threads (few, so that a launch can hold more warps than fit at once).
EMULATED_SMS = 4
EMULATED_THREADS_PER_SM = 64


class _FakeDevice:
    id = 0

    def synchronize(self) -> None:
        """The host stand-ins run synchronously."""


class FakeCupy:
    """numpy under CuPy's name: ``asarray`` makes device copies and every array a function
    returns is a :class:`DeviceArray` (so code under test cannot mix host and "device" arrays
    silently). ``cuda.Device().synchronize()`` is a no-op; the device has ``EMULATED_SMS``
    multiprocessors."""

    cuda = types.SimpleNamespace(
        Device=_FakeDevice,
        runtime=types.SimpleNamespace(
            getDeviceProperties=lambda device_id: {
                "multiProcessorCount": EMULATED_SMS,
                "maxThreadsPerMultiProcessor": EMULATED_THREADS_PER_SM}))

    @staticmethod
    def asarray(a, dtype=None):
        if isinstance(a, DeviceArray) and (dtype is None or a.dtype == dtype):
            return a
        return np.array(a, dtype=dtype).view(DeviceArray)

    def __getattr__(self, name):
        function = getattr(np, name)
        if not callable(function):
            return function

        def device(out):
            return out.view(DeviceArray) if isinstance(out, np.ndarray) else out

        def wrapped(*args, **kwargs):
            out = function(*args, **kwargs)
            return tuple(map(device, out)) if isinstance(out, tuple) else device(out)

        return wrapped


def _plain(a):
    """scipy-side view of a stand-in: DeviceArray -> ndarray, DeviceSparse -> its matrix,
    tuples element by element."""
    if isinstance(a, DeviceSparse):
        return a.matrix
    if isinstance(a, tuple):
        return tuple(_plain(b) for b in a)
    return a.view(np.ndarray) if isinstance(a, np.ndarray) else a


class DeviceSparse:
    """A cupyx.scipy.sparse matrix stand-in: a scipy matrix whose arrays come out as
    :class:`DeviceArray` views (writes go through), ``get()`` gives a scipy copy. Only the
    methods fastrec uses exist, so a code path reaching for another fails loudly."""

    def __init__(self, matrix):
        self.matrix = matrix

    def get(self, stream=None):
        return self.matrix.copy()

    format = property(lambda self: self.matrix.format)
    shape = property(lambda self: self.matrix.shape)
    nnz = property(lambda self: self.matrix.nnz)
    dtype = property(lambda self: self.matrix.dtype)
    has_canonical_format = property(lambda self: self.matrix.has_canonical_format)
    data = property(lambda self: self.matrix.data.view(DeviceArray))
    indices = property(lambda self: self.matrix.indices.view(DeviceArray))
    indptr = property(lambda self: self.matrix.indptr.view(DeviceArray))
    row = property(lambda self: self.matrix.row.view(DeviceArray))
    col = property(lambda self: self.matrix.col.view(DeviceArray))
    T = property(lambda self: DeviceSparse(self.matrix.T))

    def sum_duplicates(self):
        self.matrix.sum_duplicates()

    def sort_indices(self):
        self.matrix.sort_indices()

    def eliminate_zeros(self):
        self.matrix.eliminate_zeros()

    def tocsr(self):
        return DeviceSparse(self.matrix.tocsr())

    def tocoo(self):
        return DeviceSparse(self.matrix.tocoo())

    def astype(self, dtype):
        return DeviceSparse(self.matrix.astype(dtype))

    def toarray(self):
        return self.matrix.toarray().view(DeviceArray)

    def sum(self):
        return self.matrix.sum()

    def __matmul__(self, other):
        return np.asarray(self.matrix @ _plain(other)).view(DeviceArray)


DeviceSparse.__module__ = "cupyx.scipy.sparse.emulated"


def _sparse_constructor(kind):
    def construct(arg1, shape=None, dtype=None, copy=False):
        return DeviceSparse(kind(_plain(arg1), shape=shape, dtype=dtype, copy=copy))

    return construct


def fake_cupyx() -> dict[str, types.ModuleType]:
    """``cupyx``, ``cupyx.scipy`` and ``cupyx.scipy.sparse`` whose matrices are
    :class:`DeviceSparse` (for ``sys.modules``)."""
    sparse = types.ModuleType("cupyx.scipy.sparse")
    sparse.csr_matrix = _sparse_constructor(sp.csr_matrix)
    sparse.csc_matrix = _sparse_constructor(sp.csc_matrix)
    sparse.coo_matrix = _sparse_constructor(sp.coo_matrix)
    sparse.issparse = lambda a: isinstance(a, DeviceSparse)
    scipy_ = types.ModuleType("cupyx.scipy")
    scipy_.sparse = sparse
    cupyx = types.ModuleType("cupyx")
    cupyx.scipy = scipy_
    return {"cupyx": cupyx, "cupyx.scipy": scipy_, "cupyx.scipy.sparse": sparse}


def patch_cupy(monkeypatch, get_function) -> None:
    """``import cupy`` gives :class:`FakeCupy`, ``import cupyx.scipy.sparse`` the
    :func:`fake_cupyx` stand-in, and NVRTC kernels come from ``get_function(source,
    expression)`` (emulated modules)."""
    import sys

    monkeypatch.setitem(sys.modules, "cupy", FakeCupy())
    for name, module in fake_cupyx().items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(_loader_module(), "get_function", get_function)


def register_emulated_cuda(monkeypatch) -> None:
    """Make the registry report the ``cuda`` backend available with its real contract
    functions (which then run through :func:`patch_cupy`'s stand-ins)."""
    import fastrec.backends as registry
    import fastrec.backends.cuda as cuda_backend
    from fastrec.backends import Backend
    from fastrec.backends._contract import CONTRACT

    kernels = {k: getattr(cuda_backend, k) for k in CONTRACT if hasattr(cuda_backend, k)}
    monkeypatch.setitem(registry._CACHE, "cuda", Backend("cuda", True, "", "emulated", {},
                                                         kernels))


def _loader_module():
    from fastrec.backends.cuda import _loader

    return _loader
