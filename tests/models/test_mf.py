"""MF behaviour battery, run on every CPU backend, plus parameter sensitivity and bad input."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import fastrec
from fastrec import MF, DivergenceError
from fastrec.backends import BackendUnavailable
from fastrec.data import synthetic_ratings
from fastrec.io import ModelFileError
from tests.conftest import CPU_BACKENDS, backend_or_skip, planted_split

# Dense enough that the planted rank-4 signal is recoverable: the noise floor is 0.3, and a
# model that learned the signal gets within 25% of it on held-out ratings.
NOISE = 0.3
MARGIN = 1.25


@pytest.fixture(scope="module")
def planted():
    return planted_split(400, 150, 24_000, 4, NOISE, seed=3)


def small_model(backend="cython", **kw):
    params = dict(n_factors=8, n_epochs=40, learning_rate=0.03, reg=0.03, lr_decay=0.02,
                  random_state=0, backend=backend)
    params.update(kw)
    return MF(**params)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_learns_planted_signal(backend, planted):
    backend_or_skip(backend, "sgd_epoch")
    train, test = planted
    if backend == "numpy":  # the reference is a Python loop: a smaller planted problem
        train, test = planted_split(120, 60, 3_000, 2, NOISE, seed=5)
        model = small_model(backend, n_factors=4, n_epochs=30, learning_rate=0.05)
    else:
        model = small_model(backend)
    model.fit(train, validation_data=test)
    assert model.backend_ == backend
    rmse = -model.score(test)
    assert rmse < MARGIN * NOISE, f"test RMSE {rmse:.3f} vs noise floor {NOISE}"
    assert model.validation_curve_[-1] == pytest.approx(rmse, rel=1e-5)
    baseline = np.sqrt(np.mean((test.values - train.values.mean()) ** 2))
    assert rmse < 0.5 * baseline


def test_backends_agree(planted):
    backend_or_skip("cython", "sgd_epoch")
    backend_or_skip("numba", "sgd_epoch")
    train, _ = planted
    a = small_model("cython", n_epochs=5, dtype="float64").fit(train)
    b = small_model("numba", n_epochs=5, dtype="float64").fit(train)
    np.testing.assert_allclose(a.user_factors_, b.user_factors_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(a.item_bias_, b.item_bias_, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("backend", ("cython", "numba"))
def test_deterministic_and_thread_count_free(backend, planted):
    backend_or_skip(backend, "sgd_epoch")
    train, _ = planted
    a = small_model(backend, n_epochs=5, n_threads=1).fit(train)
    b = small_model(backend, n_epochs=5, n_threads=2).fit(train)
    c = small_model(backend, n_epochs=5, n_threads=2).fit(train)
    for name in ("user_factors_", "item_factors_", "user_bias_", "item_bias_"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
        assert np.array_equal(getattr(b, name), getattr(c, name))
    d = small_model(backend, n_epochs=5, random_state=1).fit(train)
    assert not np.array_equal(a.user_factors_, d.user_factors_)


@pytest.mark.parametrize("param, value", [("reg", 0.3), ("learning_rate", 0.01),
                                          ("reg_bias", 1.0), ("lr_bias", 0.001),
                                          ("n_factors", 4), ("init_std", 0.3),
                                          ("lr_schedule", "constant"), ("biased", False)])
def test_parameter_sensitivity(param, value, planted):
    backend_or_skip("cython", "sgd_epoch")
    train, _ = planted
    base = small_model(n_epochs=3).fit(train)
    changed = small_model(n_epochs=3, **{param: value}).fit(train)
    assert base.get_params()[param] != value
    differs = base.user_factors_.shape != changed.user_factors_.shape or not np.allclose(
        base.user_factors_, changed.user_factors_) or not np.allclose(
        base.item_bias_, changed.item_bias_)
    assert differs, f"changing {param} did not change the model"


def test_estimator_conventions():
    model = MF(n_factors=3, reg=0.5)
    assert model.get_params()["reg"] == 0.5 and model.set_params(reg=0.2) is model
    assert "reg=0.2" in repr(model)
    assert not hasattr(model, "user_factors_")
    with pytest.raises(ValueError, match="invalid parameter"):
        model.set_params(nope=1)
    with pytest.raises(fastrec.NotFittedError, match="not fitted"):
        model.predict([0], [0])


def test_input_kinds_and_id_maps():
    backend_or_skip("cython", "sgd_epoch")
    frame = pd.DataFrame({"userId": ["ann", "bob", "bob", "cy", "ann", "cy"],
                          "movieId": [10, 20, 10, 30, 30, 20],
                          "rating": [5, 3, 4, 2, 1, 4.5]})
    model = MF(n_factors=2, n_epochs=5, random_state=0).fit(frame)
    assert list(model.user_ids_) == ["ann", "bob", "cy"]
    assert list(model.item_ids_) == [10, 20, 30]
    tuple_model = MF(n_factors=2, n_epochs=5, random_state=0).fit(
        (frame.userId.to_numpy(), frame.movieId.to_numpy(), frame.rating.to_numpy()))
    np.testing.assert_array_equal(model.user_factors_, tuple_model.user_factors_)
    pred = model.predict(["ann", "cy"], [20, 10])
    assert pred.shape == (2,) and np.all(np.isfinite(pred))
    with pytest.raises(ValueError, match="unknown"):
        model.predict(["zed"], [10])
    assert model.predict(["zed"], [10], unknown="baseline")[0] == pytest.approx(
        model.global_mean_ + model.item_bias_[0])
    items, scores = model.recommend(["ann"], n=3)
    assert items[0].tolist() == [20, -1, -1]  # ann rated 10 and 30: only 20 is left
    assert np.isneginf(scores[0, 1:]).all()

    matrix = sp.random(30, 20, density=0.3, random_state=1, format="csr") * 5
    coo_model = MF(n_factors=2, n_epochs=3, random_state=0).fit(matrix.tocoo())
    csr_model = MF(n_factors=2, n_epochs=3, random_state=0).fit(matrix)
    np.testing.assert_array_equal(coo_model.item_factors_, csr_model.item_factors_)
    assert csr_model.n_users_ == 30 and csr_model.n_items_ == 20
    with pytest.raises(ValueError, match="out-of-range"):
        csr_model.predict([30], [0])
    with pytest.raises(ValueError, match="out-of-range"):
        csr_model.predict([-1], [0])


def test_recommend_and_similar_items(planted):
    backend_or_skip("cython", "sgd_epoch")
    train, _ = planted
    model = small_model().fit(train)
    users = np.arange(50)
    items, scores = model.recommend(users, n=7)
    assert items.shape == (50, 7) and scores.shape == (50, 7)
    assert np.all(np.diff(scores, axis=1) <= 0)
    seen = model.seen_
    for row, u in zip(items, users, strict=True):
        assert not set(row.tolist()) & set(seen[u].indices.tolist())
    # scores are the model's predictions
    np.testing.assert_allclose(scores[:, 0], model.predict(users, items[:, 0]), rtol=1e-5)
    full = model._score_users(np.array([0]))[0]
    full[seen[0].indices] = -np.inf
    assert items[0, 0] == int(np.argmax(full))
    restricted, _ = model.recommend([0], n=3, items=[1, 2, 3, 4], filter_seen=False)
    assert set(restricted[0].tolist()) <= {1, 2, 3, 4}
    similar, sims = model.similar_items([0, 5], n=4)
    assert similar.shape == (2, 4) and 0 not in similar[0] and 5 not in similar[1]
    assert np.all(sims <= 1 + 1e-5) and np.all(np.diff(sims, axis=1) <= 0)


def test_fold_in_recovers_a_trained_user(planted):
    backend_or_skip("cython", "sgd_epoch")
    train, test = planted
    model = small_model().fit(train)
    user = 7
    rows = train.users == user
    bias, factors = model.fold_in(train.items[rows], train.values[rows])
    folded = model.global_mean_ + bias + model.item_bias_ + model.item_factors_ @ factors
    fitted = model._score_users(np.array([user]))[0]
    assert np.corrcoef(folded, fitted)[0, 1] > 0.9
    held = test.users == user
    pred_rmse = np.sqrt(np.mean((folded[test.items[held]] - test.values[held]) ** 2))
    assert pred_rmse < 2 * NOISE + 0.3
    ids, scores = model.recommend_from_ratings(train.items[rows], train.values[rows], n=5)
    assert ids.shape == (5,) and not set(ids.tolist()) & set(train.items[rows].tolist())


def test_save_load_round_trip(tmp_path, planted):
    backend_or_skip("cython", "sgd_epoch")
    train, _ = planted
    model = small_model(n_epochs=3).fit(train)
    path = model.save(tmp_path / "model.npz")
    loaded = MF.load(path)
    assert loaded.get_params() == model.get_params()
    for name in ("user_factors_", "item_factors_", "user_bias_", "item_bias_", "user_ids_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name))
    assert loaded.global_mean_ == model.global_mean_
    np.testing.assert_array_equal(loaded.recommend([1, 2], n=5)[0], model.recommend([1, 2], n=5)[0])
    frame_model = MF(n_factors=2, n_epochs=2).fit(
        pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"], "rating": [1.0, 2.0]}))
    again = MF.load(frame_model.save(tmp_path / "strings"))
    assert list(again.user_ids_) == ["a", "b"]


def test_load_refuses_files_that_are_not_models(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(ModelFileError, match="not an npz"):
        MF.load(text)
    plain = tmp_path / "plain.npz"
    np.savez(plain, a=np.arange(3))
    with pytest.raises(ModelFileError, match="not a fastrec model"):
        MF.load(plain)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, __fastrec_format__=np.array([1]), x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ModelFileError, match="unpickling"):
        MF.load(pickled)
    with pytest.raises(FileNotFoundError):
        MF.load(tmp_path / "missing.npz")


@pytest.mark.parametrize("data, message", [
    ((np.array([0, 1]), np.array([0, 1]), np.array([1.0, np.nan])), "NaN or inf"),
    ((np.array([0, 1]), np.array([0, 1]), np.array([1.0, np.inf])), "NaN or inf"),
    ((np.array([0, 1, 2]), np.array([0, 1]), np.array([1.0, 2.0])), "same length"),
    ((np.array([], int), np.array([], int), np.array([])), "empty"),
    ((np.array([0, 1]), np.array([0, 1]), np.array(["a", "b"])), "numeric"),
    ("ratings.csv", "expected a scipy.sparse"),
])
def test_bad_input_is_refused(data, message):
    with pytest.raises((ValueError, TypeError), match=message):
        MF(n_epochs=1).fit(data)


def test_out_of_range_indices_refused():
    with pytest.raises(ValueError, match="out of range"):
        fastrec.Interactions.from_indices([0, 5], [0, 1], [1.0, 2.0], shape=(3, 3))
    with pytest.raises(ValueError, match="out of range"):
        fastrec.Interactions.from_indices([0, -1], [0, 1], [1.0, 2.0], shape=(3, 3))


def test_integer_ratings_are_cast_not_corrupted():
    model = MF(n_factors=2, n_epochs=2, random_state=0).fit(
        (np.array([0, 1, 1]), np.array([0, 0, 1]), np.array([5, 3, 4], dtype=np.int64)))
    assert model.user_factors_.dtype == np.float32
    assert model.global_mean_ == pytest.approx(4.0)


@pytest.mark.parametrize("param, value", [("n_factors", 0), ("n_epochs", -1),
                                          ("learning_rate", 0), ("reg", -0.1),
                                          ("lr_schedule", "cosine"), ("dtype", "int32"),
                                          ("n_threads", 0), ("n_factors", 2.5)])
def test_bad_parameters_are_refused(param, value, planted):
    with pytest.raises(ValueError, match=param if param != "dtype" else "dtype"):
        MF(**{param: value}).fit(planted[0])


def test_divergence_is_detected_and_state_kept(planted):
    backend_or_skip("cython", "sgd_epoch")
    train, _ = planted
    model = small_model(learning_rate=5.0, n_epochs=10)
    with pytest.raises(DivergenceError, match="learning_rate=5.0"):
        model.fit(train)
    assert np.isfinite(model.user_factors_).all() and np.isfinite(model.item_factors_).all()
    assert model.n_epochs_ < 10


def test_early_stopping_keeps_best_epoch(planted):
    backend_or_skip("cython", "sgd_epoch")
    train, test = planted
    model = small_model(n_epochs=200, learning_rate=0.05, reg=0.0, lr_schedule="constant",
                        early_stopping=True, n_iter_no_change=2, n_factors=32)
    model.fit(train, validation_data=test)
    assert model.n_epochs_ < 200
    best = min(model.validation_curve_)
    assert -model.score(test) == pytest.approx(best, rel=1e-5)
    with pytest.raises(ValueError, match="validation_fraction"):
        small_model(early_stopping=True, validation_fraction=1.0).fit(train)


def test_unavailable_backend_says_why(planted):
    with pytest.raises(BackendUnavailable, match="cuda"):
        MF(backend="cuda").fit(planted[0]) if not fastrec.backends._probe("cuda").available \
            else pytest.skip("a CUDA device is present")
    with pytest.raises(ValueError, match="unknown backend"):
        MF(backend="fortran").fit(planted[0])


def test_concurrent_recommend_is_consistent(planted):
    """A service calls predict/recommend from many threads: results equal the serial ones."""
    from concurrent.futures import ThreadPoolExecutor

    backend_or_skip("cython", "sgd_epoch")
    model = small_model(n_epochs=3).fit(planted[0])
    users = [np.arange(i, i + 40) for i in range(0, 360, 40)]
    serial = [model.recommend(u, n=10)[0] for u in users]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda u: model.recommend(u, n=10)[0], users))
        preds = list(pool.map(lambda u: model.predict(u, u % model.n_items_), users))
    for a, b in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(a, b)
    for u, p in zip(users, preds, strict=True):
        np.testing.assert_array_equal(p, model.predict(u, u % model.n_items_))


def test_device_moves_on_a_cpu_model():
    """A CPU fit lives on the CPU; to("cpu") is a no-op, to_numpy() a copy, to("cuda") without a
    usable GPU says why, and unknown devices are refused."""
    from tests.cuda.helpers import gpu_unavailable_reason

    data = synthetic_ratings(50, 40, 800, seed=0).interactions
    model = MF(n_factors=4, n_epochs=2, backend="numpy", random_state=0).fit(
        (data.users, data.items, data.values))
    assert model.device_ == "cpu" and model.to("cpu") is model
    copy = model.to_numpy()
    assert copy is not model
    np.testing.assert_array_equal(copy.user_factors_, model.user_factors_)
    with pytest.raises(ValueError, match="device"):
        model.to("tpu")
    if gpu_unavailable_reason():
        with pytest.raises(BackendUnavailable):
            model.to("cuda")
        assert model.device_ == "cpu"
