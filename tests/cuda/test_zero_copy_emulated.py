"""Device input to GPU fits stays on the device: MF and NMF with ``backend="cuda"``, fitted on
CuPy arrays or cupyx.scipy.sparse matrices, validate, map and lay out the data with the device
array module, and never copy the data to the host.

CuPy is replaced by host stand-ins (tests/cuda/helpers.py: ``DeviceArray``, ``DeviceSparse``)
and the kernels by the emulated .cu files. Every explicit device-to-host copy (``get()``, which
``fastrec._array.to_host`` and ``host_data`` call) is recorded; a fit may fetch scalars and the
id maps, never an array as long as the data (nnz entries). The copies ``sgd_epoch`` makes into
the numpy arguments it was given are an artefact of the stand-ins (a ``DeviceArray`` is a numpy
array) and are not counted. The stand-ins are numpy underneath, so the same code path on host
and device input gives the same model bit for bit, which is what the tests check.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_array_equal

from tests.cuda.helpers import (
    DeviceArray,
    DeviceSparse,
    FakeCupy,
    patch_cupy,
    register_emulated_cuda,
)

N_USERS, N_ITEMS, NNZ = 40, 30, 900


@pytest.fixture(scope="module")
def nmf_module(emulator):
    from fastrec.backends.cuda import _loader

    return emulator.EmulatedModule(_loader.kernel_path("nmf"), _loader.compile_options(),
                                   _loader.NAME_EXPRESSIONS["nmf"])


@pytest.fixture
def emulated_cuda(sgd_module, nmf_module, monkeypatch):
    """The registry's ``cuda`` backend, running the emulated SGD and NMF kernels."""
    modules = {"sgd": sgd_module, "nmf": nmf_module}
    patch_cupy(monkeypatch, lambda source, expression: modules[source].get_function(expression))
    register_emulated_cuda(monkeypatch)


@pytest.fixture
def host_copies(monkeypatch):
    """Sizes of the device arrays and matrices copied to the host during the test."""
    sizes = []
    array_get, sparse_get = DeviceArray.get, DeviceSparse.get

    def recorded_array_get(self, out=None):
        if out is not self:
            sizes.append(self.size)
        return array_get(self, out)

    def recorded_sparse_get(self, stream=None):
        sizes.append(self.nnz)
        return sparse_get(self, stream)

    monkeypatch.setattr(DeviceArray, "get", recorded_array_get)
    monkeypatch.setattr(DeviceSparse, "get", recorded_sparse_get)
    return sizes


def _ratings(seed=0):
    """NNZ distinct (user, item) pairs with ratings in [1, 5], as a scipy CSR."""
    rng = np.random.default_rng(seed)
    cells = rng.choice(N_USERS * N_ITEMS, NNZ, replace=False)
    return sp.csr_matrix((rng.uniform(1, 5, NNZ), (cells // N_ITEMS, cells % N_ITEMS)),
                         shape=(N_USERS, N_ITEMS))


def _triple(x, wrap):
    coo = x.tocoo()
    return tuple(wrap(a) for a in (coo.row, coo.col, coo.data))


def _device(x):
    return DeviceSparse(x.copy())


def _assert_same_model(got, expected, names):
    for name in names:
        a, b = getattr(got, name), getattr(expected, name)
        if isinstance(a, (list, float)):
            assert a == b, name
        else:
            assert type(a) is type(b) is DeviceArray, name
            assert_array_equal(a, b, err_msg=name)


def _assert_no_bulk_copies(host_copies):
    assert all(size < NNZ for size in host_copies), sorted(host_copies)[-5:]


MF_ARRAYS = ("user_factors_", "item_factors_", "user_bias_", "item_bias_", "loss_curve_",
             "global_mean_")


@pytest.mark.parametrize("kind", ["triple", "csr"])
def test_mf_fits_device_input_on_the_device(emulated_cuda, host_copies, monkeypatch, kind):
    """The ratings reach ``sgd_epoch`` as device arrays made on the device, nothing of their
    size comes to the host, and the model is the one fitted from the same data on the host."""
    from fastrec import MF
    from fastrec.backends import _CACHE

    launched = []
    sgd_epoch = _CACHE["cuda"].kernels["sgd_epoch"]

    def recording_sgd_epoch(*args, **kwargs):
        launched.append(args[:3])
        return sgd_epoch(*args, **kwargs)

    monkeypatch.setitem(_CACHE["cuda"].kernels, "sgd_epoch", recording_sgd_epoch)
    x = _ratings(seed=1)
    host = _triple(x, np.asarray) if kind == "triple" else x
    device = _triple(x, FakeCupy.asarray) if kind == "triple" else _device(x)
    params = dict(n_factors=3, n_epochs=3, n_blocks=4, random_state=0, backend="cuda",
                  dtype="float64")
    expected = MF(**params).fit(host)
    host_copies.clear()
    launched.clear()
    got = MF(**params).fit(device)
    _assert_no_bulk_copies(host_copies)
    assert launched and all(isinstance(a, DeviceArray) for args in launched for a in args)
    _assert_same_model(got, expected, MF_ARRAYS)
    assert_array_equal(got.user_ids_, expected.user_ids_)
    assert_array_equal(got.item_ids_, expected.item_ids_)
    seen, expected_seen = got.to_numpy().seen_, expected.seen_
    assert_array_equal(seen.indptr, expected_seen.indptr)
    assert_array_equal(seen.indices, expected_seen.indices)


def test_mf_device_input_is_validated_on_the_device(emulated_cuda, host_copies):
    from fastrec import MF

    users, items, ratings = _triple(_ratings(), FakeCupy.asarray)
    bad = ratings.copy()
    bad[7] = np.nan
    with pytest.raises(ValueError, match="1 ratings are NaN or inf"):
        MF(backend="cuda").fit((users, items, bad))
    with pytest.raises(ValueError, match="same length"):
        MF(backend="cuda").fit((users, items[:-1], ratings))
    _assert_no_bulk_copies(host_copies)


NMF_ARRAYS = ("user_factors_", "item_factors_", "components_", "user_bias_", "item_bias_",
              "loss_curve_", "reconstruction_err_", "rating_mean_")


@pytest.mark.parametrize("init", ["random", "custom", "nndsvda"])
@pytest.mark.parametrize("layout", ["csr", "csc"])
def test_nmf_full_mode_uses_a_device_matrix_where_it_is(emulated_cuda, host_copies,
                                                        monkeypatch, layout, init):
    """A cupyx CSR or CSC X is validated, laid out (X^T transposed on the device) and
    factorised without a host copy; the model is the one fitted from the scipy matrix. NNDSVD's
    truncated SVD runs from products with X on the device (forced here by a zero dense-SVD
    limit; the dense SVD of a small X reads it on the host), bit for bit the host's."""
    from fastrec import NMF
    from fastrec._algorithms import nmf_mu

    monkeypatch.setattr(nmf_mu, "DENSE_SVD_MAX", 0)
    x = _ratings(seed=2).asformat(layout)
    rng = np.random.default_rng(3)
    w0, h0 = rng.uniform(0.1, 1, (N_USERS, 3)), rng.uniform(0.1, 1, (3, N_ITEMS))
    params = dict(n_components=3, max_iter=12, tol=1e-9, init=init, random_state=0,
                  backend="cuda", dtype="float64")
    custom = dict(W=w0, H=h0) if init == "custom" else {}
    expected = NMF(**params)
    w_expected = expected.fit_transform(x, **custom)
    host_copies.clear()
    got = NMF(**params)
    w = got.fit_transform(_device(x), **custom)
    _assert_no_bulk_copies(host_copies)
    assert isinstance(w, DeviceArray)
    assert_array_equal(w, w_expected)
    _assert_same_model(got, expected, NMF_ARRAYS)
    rows = expected.transform(x[:5])
    host_copies.clear()
    assert_array_equal(got.transform(_device(x[:5])), rows)
    assert not host_copies


def test_nmf_observed_mode_maps_device_ratings_on_the_device(emulated_cuda, host_copies):
    from fastrec import NMF

    x = _ratings(seed=5)
    params = dict(n_components=3, mode="observed", biased=True, max_iter=12, tol=1e-9,
                  init="random", random_state=0, backend="cuda", dtype="float64",
                  alpha_W=0.02)
    expected = NMF(**params).fit(_triple(x, np.asarray))
    host_copies.clear()
    got = NMF(**params).fit(_triple(x, FakeCupy.asarray))
    _assert_no_bulk_copies(host_copies)
    _assert_same_model(got, expected, NMF_ARRAYS + ("global_mean_",))
    users, items = np.arange(6), np.arange(6)
    assert_array_equal(got.predict(users, items), expected.predict(users, items))
