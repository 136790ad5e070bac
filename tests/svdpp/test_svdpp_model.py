"""fastrec.SVDpp: learns a planted signal, is deterministic at any thread count, agrees across
backends, predicts as its formula says, saves and loads."""

import numpy as np
import pytest

from fastrec import MF, SVDpp
from tests.conftest import CPU_BACKENDS, backend_or_skip, planted_split

NOISE = 0.3


@pytest.fixture(scope="module")
def planted():
    return planted_split(300, 120, 12_000, 3, NOISE, seed=3)


def small_model(backend="cython", **kw):
    params = dict(n_factors=8, n_epochs=30, learning_rate=0.02, reg=0.03, reg_implicit=10.0,
                  random_state=0, backend=backend)
    params.update(kw)
    return SVDpp(**params)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_learns_planted_signal(backend, planted):
    backend_or_skip(backend, "svdpp_epoch")
    train, test = planted
    if backend == "numpy":  # the reference loops in Python: a smaller problem
        train, test = planted_split(120, 60, 3_000, 2, NOISE, seed=5)
        model = small_model(backend, n_factors=4, n_epochs=30, learning_rate=0.05)
    else:
        model = small_model(backend)
    model.fit(train, validation_data=test)
    assert model.backend_ == backend
    rmse = -model.score(test)
    assert model.validation_curve_[-1] == pytest.approx(rmse, rel=1e-5)
    baseline = np.sqrt(np.mean((test.values - train.values.mean()) ** 2))
    assert rmse < 0.6 * baseline, f"test RMSE {rmse:.3f}, mean-rating baseline {baseline:.3f}"
    assert model.loss_curve_[-1] < model.loss_curve_[0]


@pytest.mark.parametrize("backend", ["cython", "numba"])
def test_deterministic_at_any_thread_count(backend, planted):
    backend_or_skip(backend, "svdpp_epoch")
    train, _ = planted
    one = small_model(backend, n_epochs=4, n_threads=1).fit(train)
    two = small_model(backend, n_epochs=4, n_threads=2).fit(train)
    again = small_model(backend, n_epochs=4, n_threads=2).fit(train)
    for name in ("user_factors_", "item_factors_", "implicit_factors_", "user_implicit_",
                 "user_bias_", "item_bias_"):
        np.testing.assert_array_equal(getattr(one, name), getattr(two, name), err_msg=name)
        np.testing.assert_array_equal(getattr(two, name), getattr(again, name), err_msg=name)
    other_seed = small_model(backend, n_epochs=4, random_state=1).fit(train)
    assert not np.array_equal(other_seed.user_factors_, one.user_factors_)


def test_cython_and_numba_fit_the_same_model(planted):
    backend_or_skip("cython", "svdpp_epoch")
    backend_or_skip("numba", "svdpp_epoch")
    train, _ = planted
    by_cython = small_model("cython", n_epochs=3).fit(train)
    by_numba = small_model("numba", n_epochs=3).fit(train)
    np.testing.assert_array_equal(by_cython.implicit_factors_, by_numba.implicit_factors_)
    np.testing.assert_array_equal(by_cython.user_factors_, by_numba.user_factors_)


def test_predictions_follow_the_svdpp_formula(planted):
    backend_or_skip("cython", "svdpp_epoch")
    train, test = planted
    model = small_model(n_epochs=3).fit(train)
    seen = model.seen_.tocsr()
    u = model._user_index(train.user_ids[test.users[:50]])
    i = model._item_index(train.item_ids[test.items[:50]])
    counts = np.diff(seen.indptr)[u]
    z = np.stack([model.implicit_factors_[seen.indices[seen.indptr[a]:seen.indptr[a + 1]]].sum(0)
                  for a in u]) / np.sqrt(counts)[:, None]
    expected = (model.global_mean_ + model.user_bias_[u] + model.item_bias_[i]
                + np.sum((model.user_factors_[u] + z) * model.item_factors_[i], axis=1))
    got = model.predict(train.user_ids[test.users[:50]], train.item_ids[test.items[:50]])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    top, scores = model.recommend(train.user_ids[test.users[:3]], n=5)
    best = model._item_index(top[0])
    assert not model.seen_[u[0]].toarray()[0, best].any()
    user_id = train.user_ids[test.users[0]]
    np.testing.assert_allclose(scores[0], model.predict(np.full(5, user_id), top[0]), rtol=1e-5)


def test_implicit_penalty_changes_the_model(planted):
    backend_or_skip("cython", "svdpp_epoch")
    train, _ = planted
    loose = small_model(n_epochs=3, reg_implicit=0.0).fit(train)
    tight = small_model(n_epochs=3, reg_implicit=50.0).fit(train)
    assert np.abs(tight.implicit_factors_).mean() < 0.5 * np.abs(loose.implicit_factors_).mean()


def test_fold_in_of_a_trained_user_predicts_like_the_model(planted):
    backend_or_skip("cython", "svdpp_epoch")
    train, _ = planted
    model = small_model().fit(train)
    user = 0
    rows = train.users == user
    items, ratings = train.item_ids[train.items[rows]], train.values[rows]
    bias, vector = model.fold_in(items, ratings)
    folded = model.global_mean_ + bias + model.item_bias_ + model.item_factors_ @ vector
    fitted = model._score_users(np.array([model._user_index(train.user_ids[[user]])[0]]))[0]
    assert np.corrcoef(folded, fitted)[0, 1] > 0.9


def test_save_load_round_trip(tmp_path, planted):
    backend_or_skip("cython", "svdpp_epoch")
    train, test = planted
    model = small_model(n_epochs=3).fit(train)
    loaded = SVDpp.load(model.save(tmp_path / "svdpp.npz"))
    assert loaded.get_params() == model.get_params()
    for name in ("implicit_factors_", "user_implicit_", "user_factors_", "item_factors_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name))
    assert loaded.score(test) == model.score(test)
    with pytest.raises(Exception, match="SVDpp|MF"):
        MF.load(tmp_path / "svdpp.npz")


def test_early_stopping_and_bad_parameters(planted):
    backend_or_skip("cython", "svdpp_epoch")
    train, test = planted
    model = small_model(n_epochs=40, early_stopping=True, n_iter_no_change=2,
                        learning_rate=0.05).fit(train, validation_data=test)
    assert model.n_epochs_ <= 40
    best = int(np.argmin(model.validation_curve_))
    assert -model.score(test) == pytest.approx(model.validation_curve_[best], rel=1e-5)
    with pytest.raises(ValueError, match="reg_implicit"):
        SVDpp(reg_implicit=-1.0).fit(train)
    with pytest.raises(ValueError, match="validation_fraction"):
        SVDpp(early_stopping=True, validation_fraction=-0.1).fit(train)
