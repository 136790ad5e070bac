"""One device-input policy for every family, decided once at the fit boundary: on the CUDA
backend, CuPy input stays on the device (it is never copied to the host) and the kernels get
device arrays; host input is prepared on the host and its arrays go to the device once.

The backend here is a ``cuda`` whose kernels are the numpy reference's, run on the emulator's
device arrays after checking that every array argument is one (the kernels' own emulation is
tested in the other ``tests/cuda`` modules): what is under test is where the models put their
arrays, not the kernels.
"""

from __future__ import annotations

import collections
import sys

import numpy as np
import pytest

from tests.cuda.helpers import DeviceArray, FakeCupy, fake_cupyx


class PinnedDeviceArray(DeviceArray):
    """Input on the device that must stay there: copying it (or an array its own methods
    derive from it: slices, ``astype``) to the host fails the test."""

    def get(self, out=None):
        raise AssertionError("device input was copied to the host")


PinnedDeviceArray.__module__ = DeviceArray.__module__


def _pinned(a) -> PinnedDeviceArray:
    return np.array(a).view(PinnedDeviceArray)


# Arguments that describe shapes rather than hold data, read on the host by the launchers:
# NCF's layer widths.
HOST_METADATA = {"ncf_train_epoch": {12}, "ncf_forward": {5}}


@pytest.fixture
def device_backend(monkeypatch):
    """A ``cuda`` backend over the reference kernels that records the array arguments of every
    kernel call (``calls[name]``: one list of the arrays per call) and refuses host arrays."""
    import fastrec.backends as registry
    from fastrec.backends import Backend, get_backend

    monkeypatch.setitem(sys.modules, "cupy", FakeCupy())
    for name, module in fake_cupyx().items():
        monkeypatch.setitem(sys.modules, name, module)
    calls = collections.defaultdict(list)

    def on_device(name, kernel):
        metadata = HOST_METADATA.get(name, ())

        def run(*args, **kwargs):
            arrays = [a for a in args if isinstance(a, np.ndarray)]
            host = [j for j, a in enumerate(args) if j not in metadata
                    and isinstance(a, np.ndarray) and not isinstance(a, DeviceArray)]
            assert not host, f"{name} got host arrays at positions {host}"
            calls[name].append(arrays)
            return kernel(*args, **kwargs)

        return run

    kernels = {name: on_device(name, k) for name, k in get_backend("numpy").kernels.items()}
    monkeypatch.setitem(registry._CACHE, "cuda", Backend("cuda", True, "", "stub", {}, kernels))
    return calls


def _ratings(seed=0, n_users=14, n_items=11, nnz=70):
    rng = np.random.default_rng(seed)
    key = rng.choice(n_users * n_items, nnz, replace=False)
    return (key // n_items * 3 + 100, key % n_items * 7 + 5,
            rng.uniform(1, 5, nnz).round(1))


def _sessions(seed=0, n_sessions=30, n_items=9):
    """(session_ids, item_ids, timestamps) of sessions of 1-5 events, shuffled."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 6, n_sessions)
    sessions = np.repeat(rng.permutation(n_sessions) * 5 + 2, lengths)
    times = np.repeat(rng.uniform(0, 100, n_sessions), lengths) + np.concatenate(
        [np.arange(n) for n in lengths])
    shuffle = rng.permutation(sessions.shape[0])
    return (sessions[shuffle], rng.integers(0, n_items, sessions.shape[0])[shuffle] * 4 + 1,
            times[shuffle])


def _families():
    from fastrec import GMF, MF, NMF, GRU4Rec, SVDpp

    ratings = _ratings()
    dense = np.zeros((14, 11))
    dense[np.unique(ratings[0], return_inverse=True)[1],
          np.unique(ratings[1], return_inverse=True)[1]] = ratings[2]
    common = dict(random_state=0, dtype="float64")
    return {
        "MF": (lambda b: MF(n_factors=3, n_epochs=2, n_blocks=2, backend=b, **common),
               "fit", ratings, "sgd_epoch", "user_factors_"),
        "SVDpp": (lambda b: SVDpp(n_factors=3, n_epochs=2, n_blocks=2, backend=b, **common),
                  "fit", ratings, "svdpp_epoch", "implicit_factors_"),
        "NMF observed": (lambda b: NMF(2, mode="observed", max_iter=3, tol=0.0, backend=b,
                                       init="random", **common),
                         "fit_transform", ratings, "nmf_update_observed", "components_"),
        "NMF full": (lambda b: NMF(2, max_iter=3, tol=0.0, backend=b, init="random", **common),
                     "fit_transform", dense, "nmf_update_full", "components_"),
        "NCF": (lambda b: GMF(n_factors=3, n_epochs=2, batch_size=16, backend=b, **common),
                "fit", ratings[:2], "ncf_train_epoch", "user_embeddings_"),
        # early stopping's internal splits are made where the input is
        "MF split": (lambda b: MF(n_factors=3, n_epochs=3, n_blocks=2, early_stopping=True,
                                  validation_fraction=0.3, backend=b, **common),
                     "fit", ratings, "sgd_epoch", "user_factors_"),
        "NCF split": (lambda b: GMF(n_factors=3, n_epochs=3, batch_size=16, backend=b,
                                    validation_fraction=0.5, **common),
                      "fit", ratings[:2], "ncf_train_epoch", "user_embeddings_"),
        "GRU4Rec": (lambda b: GRU4Rec(hidden_size=4, n_epochs=2, batch_size=4, bptt=2,
                                      n_sample=3, backend=b, **common),
                    "fit", _sessions(), "gru4rec_train_epoch", "output_table_"),
    }


FAMILIES = list(_families())


@pytest.mark.parametrize("family", FAMILIES)
def test_device_input_stays_on_the_device(device_backend, family):
    make, method, X, kernel, fitted = _families()[family]
    device_X = _pinned(X) if isinstance(X, np.ndarray) else tuple(_pinned(a) for a in X)
    model = make("cuda")
    getattr(model, method)(device_X)
    assert device_backend[kernel], f"{kernel} never ran"
    assert model.device_ == "cuda" and isinstance(getattr(model, fitted), DeviceArray)
    expected = make("numpy")
    getattr(expected, method)(X)
    np.testing.assert_allclose(getattr(model, fitted), getattr(expected, fitted), rtol=1e-12,
                               atol=1e-14)


@pytest.mark.parametrize("family", FAMILIES)
def test_host_input_goes_to_the_device_once(device_backend, family):
    """Host input reaches the kernels as device arrays, the same ones at every call (copied
    once per training, not per epoch); NMF alternates between X and X^T, so two sets; NCF's
    early stopping refits on all the data, a second training with its own arrays."""
    make, method, X, kernel, _ = _families()[family]
    model = make("cuda")
    getattr(model, method)(X)
    calls = device_backend[kernel]
    assert len(calls) >= 2
    refitted = getattr(model, "refit", False) and model.early_stopping
    per_epoch = (2 if family.startswith("NMF") else 1) * (2 if refitted else 1)
    first_data_arrays = range(3)  # ratings/indices first in every contract function
    for position in first_data_arrays:
        assert len({id(arrays[position]) for arrays in calls}) <= per_epoch, position


@pytest.mark.parametrize("with_times", [True, False])
def test_sessions_grouped_on_the_device_equal_the_host_grouping(device_backend, with_times):
    """Ties in time keep the stored order, as the host grouping does."""
    from fastrec.data import Sessions

    sessions, items, times = _sessions(seed=3)
    times = np.floor(times / 3)  # ties inside sessions
    host_args = (sessions, items, times) if with_times else (sessions, items)
    expected = Sessions.from_arrays(*host_args)
    got = Sessions.from_arrays(*(_pinned(a) for a in host_args))
    assert isinstance(got.items, DeviceArray)
    np.testing.assert_array_equal(got.items, expected.items)
    assert got.items.dtype == expected.items.dtype
    for name in ("offsets", "item_ids", "session_ids", "start_times"):
        want, have = getattr(expected, name), getattr(got, name)
        assert (want is None) == (have is None), name
        if want is not None:
            assert type(have) is np.ndarray, name
            np.testing.assert_array_equal(have, want, err_msg=name)
