"""MF and NMF fitted on CuPy / cupyx.scipy.sparse input equal the same models fitted on the
host copies of that input.

``DeviceArray`` (tests/cuda/helpers.py) is a numpy subclass, so ``np.asarray`` would read it
silently; the stand-ins here behave as CuPy does towards numpy (implicit conversion raises
``TypeError``, ``get()`` copies to the host), so a code path that forgets ``to_host`` fails.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.sparse as sp

from fastrec.data import Interactions
from tests.cuda.helpers import DeviceArray, FakeCupy


class StrictDeviceArray:
    """A CuPy array as numpy sees one: shape, dtype, ``get()``, no implicit conversion."""

    def __init__(self, a):
        self._host = np.array(a)
        self.shape, self.dtype, self.ndim = self._host.shape, self._host.dtype, self._host.ndim

    def __len__(self):
        return self.shape[0]

    def get(self, out=None):
        return self._host.copy()

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use "
                        "`.get()` to construct a NumPy array explicitly.")


class StrictDeviceCSR:
    """A cupyx.scipy.sparse.csr_matrix as scipy sees one: ``get()`` gives the scipy matrix."""

    def __init__(self, matrix):
        self._host = sp.csr_matrix(matrix, copy=True)
        self.shape, self.dtype, self.nnz = self._host.shape, self._host.dtype, self._host.nnz

    def get(self, stream=None):
        return self._host.copy()


StrictDeviceArray.__module__ = "cupy._core.core"
StrictDeviceCSR.__module__ = "cupyx.scipy.sparse._csr"


@pytest.fixture
def fake_cupy(monkeypatch):
    """``import cupy`` gives the host stand-in (array results for device input go there)."""
    monkeypatch.setitem(sys.modules, "cupy", FakeCupy())


def _ratings(seed=0, n_users=15, n_items=12, nnz=80):
    rng = np.random.default_rng(seed)
    x = sp.coo_matrix((rng.uniform(1, 5, nnz), (rng.integers(0, n_users, nnz),
                                                 rng.integers(0, n_items, nnz))),
                      shape=(n_users, n_items)).tocsr()
    x.sum_duplicates()
    return x


def _triple(x, wrap):
    coo = x.tocoo()
    return tuple(wrap(a) for a in (coo.row, coo.col, coo.data))


def test_interactions_copy_device_input_to_the_host():
    x = _ratings()
    for host, device in ((x, StrictDeviceCSR(x)),
                         (_triple(x, np.asarray), _triple(x, StrictDeviceArray))):
        expected = Interactions.from_any(host, dtype=np.float64)
        got = Interactions.from_any(device, dtype=np.float64)
        for name in ("users", "items", "values", "user_ids", "item_ids"):
            assert type(getattr(got, name)) is np.ndarray, name
            np.testing.assert_array_equal(getattr(got, name), getattr(expected, name))


def test_mf_accepts_device_input():
    from fastrec import MF

    x = _ratings(seed=1)
    params = dict(n_factors=4, n_epochs=2, n_blocks=2, random_state=0, backend="numpy",
                  dtype="float64")
    expected = MF(**params).fit(_triple(x, np.asarray), validation_data=x)
    for X in (_triple(x, StrictDeviceArray), StrictDeviceCSR(x)):
        got = MF(**params).fit(X, validation_data=StrictDeviceCSR(x))
        np.testing.assert_array_equal(got.user_factors_, expected.user_factors_)
        assert got.validation_curve_ == expected.validation_curve_
        assert got.score(StrictDeviceCSR(x)) == expected.score(x)


@pytest.mark.parametrize("mode", ["full", "observed"])
def test_nmf_accepts_device_input(fake_cupy, mode):
    """Fit, fit_transform, transform and score on device input give the host input's model;
    array results come back as device arrays."""
    from fastrec import NMF

    x = _ratings(seed=2)
    rng = np.random.default_rng(3)
    w0, h0 = rng.uniform(0.1, 1, (15, 3)), rng.uniform(0.1, 1, (3, 12))
    params = dict(n_components=3, mode=mode, max_iter=5, tol=0.0, init="custom",
                  backend="numpy", dtype="float64")
    host_inputs = [x] if mode == "observed" else [x, x.toarray()]
    device_inputs = [StrictDeviceCSR(x)] if mode == "observed" else [
        StrictDeviceCSR(x), StrictDeviceArray(x.toarray())]
    expected_model = NMF(**params)
    expected = expected_model.fit_transform(host_inputs[0], W=w0, H=h0)
    for X in device_inputs:
        model = NMF(**params)
        w = model.fit_transform(X, W=StrictDeviceArray(w0), H=StrictDeviceArray(h0))
        assert isinstance(w, DeviceArray)
        np.testing.assert_array_equal(w, expected)
        np.testing.assert_array_equal(model.components_, expected_model.components_)
        assert model.device_ == "cpu"
        got = model.transform(X)
        assert isinstance(got, DeviceArray)
        np.testing.assert_array_equal(got, expected_model.transform(host_inputs[0]))
        if mode == "observed":
            assert model.score(X) == expected_model.score(x)
