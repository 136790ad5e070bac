"""fastrec.dask.NMF against the local fastrec.NMF: both modes, both losses, to the tolerance the
float64 reduction order allows (the W step is the local kernel; H's sums are reduced as a tree)."""

import inspect

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

pytest.importorskip("distributed")
dd = pytest.importorskip("dask.dataframe")
da = pytest.importorskip("dask.array")

import fastrec  # noqa: E402
import fastrec.dask  # noqa: E402
from tests.conftest import backend_or_skip  # noqa: E402

# Relative difference of the factors after 10 iterations: float64 sums in another order
# (observed ~1e-15); float32 (observed ~1e-6).
TOLERANCE = {"float64": 1e-9, "float32": 1e-4}


def _relative(a, b) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(a)))


@pytest.mark.parametrize("mode, beta_loss, biased, dtype", [
    ("full", "frobenius", False, "float64"),
    ("full", "kullback-leibler", False, "float32"),
    ("observed", "frobenius", True, "float64"),
    ("observed", "kullback-leibler", False, "float64"),
])
def test_matches_the_local_fit(client, mode, beta_loss, biased, dtype):
    backend_or_skip("cython", "nmf_update_full")
    rng = np.random.default_rng(2)
    params = dict(n_components=5, mode=mode, beta_loss=beta_loss, biased=biased, init="random",
                  max_iter=10, tol=0.0, alpha_W=0.01, random_state=0, dtype=dtype,
                  backend="cython")
    if mode == "full":
        X = sp.random(120, 50, density=0.2, random_state=1, format="csr") * 5
        model = fastrec.dask.NMF(client=client, **params).fit(
            da.from_array(X.toarray(), chunks=(35, 50)))
        local = fastrec.NMF(**params).fit(X)
    else:
        pairs = rng.choice(100 * 40, 1500, replace=False)  # distinct (user, item) pairs
        frame = pd.DataFrame({"user": pairs // 40, "item": pairs % 40,
                              "rating": rng.integers(1, 11, 1500) / 2.0})
        # pairs repeated in another partition, merged by the same policy as locally
        again = frame.iloc[::7].assign(rating=rng.integers(1, 11, 215) / 2.0)
        frame = pd.concat([frame, again], ignore_index=True)
        params["duplicates"] = "mean"
        model = fastrec.dask.NMF(client=client, **params).fit(
            dd.from_pandas(frame, npartitions=3), n_partitions=3)
        local = fastrec.NMF(**params).fit(frame)
    result = model.to_local()
    tol = TOLERANCE[dtype]
    assert _relative(local.user_factors_, result.user_factors_) < tol
    assert _relative(local.components_, result.components_) < tol
    if biased:
        assert _relative(local.item_bias_, result.item_bias_) < tol
        assert local.global_mean_ == result.global_mean_
    assert result.reconstruction_err_ == pytest.approx(local.reconstruction_err_, rel=tol)
    assert result.n_iter_ == local.n_iter_
    assert (local.seen_ != result.seen_).nnz == 0
    if mode == "observed":
        assert np.allclose(result.predict(local.user_ids_[:5], local.item_ids_[:5]),
                           local.predict(local.user_ids_[:5], local.item_ids_[:5]),
                           rtol=tol * 10)
    else:
        assert np.allclose(result.inverse_transform(result.user_factors_[:5]),
                           local.inverse_transform(local.user_factors_[:5]), rtol=tol * 10)


def test_stopping_test_and_bad_input(client):
    X = sp.random(60, 30, density=0.3, random_state=3, format="csr")
    params = dict(n_components=3, init="random", max_iter=200, tol=1e-2, random_state=0)
    model = fastrec.dask.NMF(client=client, **params).fit(da.from_array(X.toarray(),
                                                                        chunks=(20, 30)))
    assert model.n_iter_ == fastrec.NMF(**params).fit(X).n_iter_ < 200
    negative = -X.toarray()
    with pytest.raises(ValueError, match="negative entries"):
        fastrec.dask.NMF(client=client, init="random").fit(da.from_array(negative))
    with pytest.raises(ValueError, match="SVD"):
        fastrec.dask.NMF(client=client, init="nndsvd").fit(da.from_array(X.toarray()))
    with pytest.raises(ValueError, match="n_components"):
        fastrec.dask.NMF(client=client, n_components=31, init="random").fit(
            da.from_array(X.toarray()))


@pytest.mark.parametrize("name", ["MF", "NMF"])
def test_parameters_and_defaults_are_the_local_estimators(name):
    """The distributed estimators take the local ones' parameters with the same defaults,
    plus ``client``; get_params and to_local carry them."""
    local = inspect.signature(getattr(fastrec, name).__init__).parameters
    distributed = inspect.signature(getattr(fastrec.dask, name).__init__).parameters
    assert list(distributed) == [*local, "client"]
    assert all(distributed[k].default == local[k].default for k in local)
    model = getattr(fastrec.dask, name)(random_state=7, client="a client")
    assert model.get_params() == {**getattr(fastrec, name)(random_state=7).get_params(),
                                  "client": "a client"}
    with pytest.raises(TypeError):
        getattr(fastrec.dask, name)(no_such_parameter=1)
