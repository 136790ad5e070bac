"""The shared fit loop seen through every family: early stopping keeps the best epoch, callbacks
stop the fit, divergence is caught and named, and a failed refit leaves the model as it was."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from fastrec import GMF, MF, NMF, DivergenceError, GRU4Rec, ModelFileError, NotFittedError
from fastrec.data import synthetic_ratings, synthetic_sessions
from fastrec.data.splits import random_split


@pytest.fixture(scope="module")
def ratings():
    data = synthetic_ratings(n_users=150, n_items=80, n_ratings=3_000, rank=3, noise_std=0.5,
                             seed=1).interactions
    return random_split(data, test_size=0.25, random_state=0)


@pytest.fixture(scope="module")
def sessions():
    frame = synthetic_sessions(n_sessions=300, n_items=30, random_state=0)
    last = frame["session_id"] >= 240
    return frame[~last], frame[last]


def _nonneg(data):
    return (data.user_ids[data.users], data.item_ids[data.items],
            np.abs(data.values).astype(np.float32))


# Each case: a model that overfits quickly, its training input, its validation input, and the
# validation metric of the fitted model (as the loop records it).
def _cases(ratings, sessions):
    train, test = ratings
    rmse = lambda m: -m.score(test)  # noqa: E731
    nmf_train, nmf_test = _nonneg(train), _nonneg(test)
    return {
        "MF": (MF(n_factors=24, n_epochs=60, learning_rate=0.05, reg=0.0, lr_decay=0.0,
                  random_state=0, n_threads=1), train, test, rmse),
        "NMF": (NMF(24, mode="observed", max_iter=300, tol=1e-3, alpha_W=0.0, random_state=0),
                nmf_train, nmf_test, lambda m: -m.score(nmf_test)),
        "GMF": (GMF(n_factors=16, n_epochs=40, learning_rate=0.05, random_state=0,
                    n_eval_negatives=30), train, test, None),
        "GRU4Rec": (GRU4Rec(hidden_size=16, n_epochs=30, learning_rate=0.5, batch_size=16,
                            n_sample=16, random_state=0), sessions[0], sessions[1],
                    lambda m: m.evaluate(sessions[1], k=20)["recall"]),
    }


@pytest.mark.parametrize("family", ["MF", "NMF", "GMF", "GRU4Rec"])
def test_early_stopping_keeps_the_best_epoch(family, ratings, sessions):
    model, train, val, metric = _cases(ratings, sessions)[family]
    model.set_params(early_stopping=True, n_iter_no_change=2)
    model.fit(train, validation_data=val)
    curve = model.validation_curve_
    assert len(curve) == model.n_epochs_
    if family != "NMF":  # NMF measures its objective every 10 iterations (scikit-learn's test)
        assert len(model.loss_curve_) == model.n_epochs_
    higher_is_better = family in ("GMF", "GRU4Rec")
    best = int(np.argmax(curve) if higher_is_better else np.argmin(curve))
    assert best < model.n_epochs_ - 1, "stopped at its best epoch: nothing to restore"
    assert model.best_epoch_ == best + 1
    if metric is not None:
        assert metric(model) == pytest.approx(curve[best], rel=1e-6)
    else:  # GMF: the loop's HR on its own sampled negatives, recomputed from the weights
        from fastrec.evaluation import SampledRanking, evaluate_sampled

        ranking = SampledRanking.build(ratings[0], ratings[1], 30, seed=0)
        assert evaluate_sampled(model, ranking)["hr@10"] == pytest.approx(curve[best])


@pytest.mark.parametrize("family", ["MF", "NMF", "GMF", "GRU4Rec"])
def test_a_callback_stops_the_fit(family, ratings, sessions):
    model, train, _, _ = _cases(ratings, sessions)[family]
    seen = []
    model.set_params(callbacks=[lambda epoch, metrics: seen.append((epoch, metrics)) or
                                epoch == 3])
    model.fit(train)
    assert model.n_epochs_ == 3 and [e for e, _ in seen] == [1, 2, 3]
    assert set(model.timings_) == {"prepare", "train"}
    assert model.fit_time_ >= model.timings_["train"] > 0


def _fitted_state(model):
    return {name: np.copy(value) if isinstance(value, np.ndarray) else value
            for name, value in vars(model).items() if name.endswith("_")}


def _assert_same_state(before, model):
    after = _fitted_state(model)
    assert before.keys() == after.keys()
    for name, value in before.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(after[name], value, err_msg=name)


@pytest.mark.parametrize("family", ["MF", "NMF", "GMF", "GRU4Rec"])
def test_a_failed_refit_leaves_the_model_as_it_was(family, ratings, sessions):
    model, train, val, _ = _cases(ratings, sessions)[family]
    model.set_params(n_epochs=2) if family != "NMF" else model.set_params(max_iter=5)
    model.fit(train)
    before = _fitted_state(model)
    # an impossible internal split is refused
    with pytest.raises(ValueError, match="validation_fraction"):
        model.set_params(early_stopping=True, validation_fraction=0.0).fit(train)
    _assert_same_state(before, model)
    model.set_params(early_stopping=False, validation_fraction=0.1)
    with pytest.raises((ValueError, TypeError)):
        model.fit(train, validation_data="not data")
    _assert_same_state(before, model)


def test_a_failed_nmf_refit_keeps_ids_and_factors_together(ratings):
    model = NMF(8, mode="observed", max_iter=5, random_state=0).fit(_nonneg(ratings[0]))
    before = _fitted_state(model)
    tiny = (np.array(["a", "b"]), np.array(["x", "y"]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="n_components"):
        model.fit(tiny)
    _assert_same_state(before, model)
    assert model.recommend(model.user_ids_[:2], n=3)[0].shape == (2, 3)


@pytest.mark.parametrize("make, fit_input", [
    (lambda: GMF(learning_rate=1e6, n_epochs=5, random_state=0), "ratings"),
    (lambda: GRU4Rec(hidden_size=8, learning_rate=1e6, n_epochs=5, batch_size=16, n_sample=8,
                     loss="cross-entropy", random_state=0), "sessions"),
])
def test_exploding_training_is_caught(make, fit_input, ratings, sessions):
    data = ratings[0] if fit_input == "ratings" else sessions[0]
    model = make()
    with pytest.raises(DivergenceError, match="learning_rate"):
        model.fit(data)
    # the last good epoch of the new fit is kept and usable
    assert all(np.isfinite(v).all() for v in vars(model).values() if isinstance(v, np.ndarray)
               and v.dtype.kind == "f")


def test_input_scale_is_blamed_when_its_squares_overflow(ratings):
    users, items, values = _nonneg(ratings[0])
    with pytest.raises(DivergenceError, match="rescale the input"):
        MF(n_epochs=3, random_state=0).fit((users, items, values * 1e30))
    x = sp.random(60, 40, density=0.2, random_state=0, format="csr", dtype=np.float32) * 1e30
    with pytest.raises(DivergenceError, match="rescale the input"):
        NMF(4, max_iter=30, random_state=0).fit(x)


def test_nmf_warns_when_it_stops_at_max_iter():
    x = sp.random(60, 40, density=0.3, random_state=0, format="csr")
    with pytest.warns(Warning, match="max_iter"):
        NMF(4, max_iter=10, tol=1e-12, random_state=0).fit(x)


@pytest.mark.parametrize("family", ["MF", "NMF", "GMF", "GRU4Rec"])
def test_files_round_trip_metadata_and_refuse_inconsistent_arrays(family, ratings, sessions,
                                                                  tmp_path):
    model, train, _, _ = _cases(ratings, sessions)[family]
    model.set_params(n_epochs=2) if family != "NMF" else model.set_params(max_iter=5)
    model.fit(train)
    path = model.save(tmp_path / "model")  # the suffix is added ...
    assert path.suffix == ".npz"
    loaded = type(model).load(tmp_path / "model")  # ... and found again
    for name in ("backend_", "n_epochs_", "loss_curve_", "fit_time_"):
        assert getattr(loaded, name) == getattr(model, name), name
    assert (path.stat().st_mode & 0o777) == 0o666 & ~_umask()
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temp file left
    with np.load(path) as archive:
        arrays = dict(archive)
    name = max((n for n in type(model)._ARRAYS if arrays[n].ndim >= 1 and arrays[n].size > 1
                and arrays[n].dtype.kind == "f"), key=lambda n: arrays[n].size)
    arrays[name] = arrays[name][:-1]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ModelFileError, match="inconsistent"):
        type(model).load(tmp_path / "bad.npz")


def test_seen_indices_out_of_range_are_refused(ratings, tmp_path):
    path = MF(n_epochs=1, random_state=0).fit(ratings[0]).save(tmp_path / "m.npz")
    with np.load(path) as archive:
        arrays = dict(archive)
    arrays["seen_indices"] = arrays["seen_indices"] + 10_000
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ModelFileError, match="out of range"):
        MF.load(tmp_path / "bad.npz")


@pytest.mark.parametrize("make", [MF, lambda: NMF(mode="observed"), GMF, GRU4Rec])
def test_not_fitted_errors_are_uniform(make):
    model = make()
    for call in (lambda: model.save("never.npz"), lambda: model.score(pd.DataFrame())):
        with pytest.raises(NotFittedError, match="not fitted"):
            call()


def test_top_n_width_is_capped_and_padding_is_never_a_real_id():
    users = np.repeat(np.arange(5), 3)
    items = np.array([-1, 0, 1] * 5)  # -1 is a real item id
    model = MF(n_factors=2, n_epochs=2, random_state=0).fit((users, items, np.ones(15)))
    ids, scores = model.recommend([0, 1], n=10**9, filter_seen=True)
    assert ids.shape == scores.shape == (2, 3)  # capped at the number of items
    assert np.isneginf(scores).all() and (ids == model.padding_id_).all()
    assert model.padding_id_ not in model.item_ids_


def _umask():
    from fastrec.io import _umask

    return _umask()


@pytest.mark.parametrize("make", [lambda **kw: MF(n_epochs=1, **kw),
                                  lambda **kw: NMF(2, mode="observed", max_iter=2, **kw),
                                  lambda **kw: GMF(n_epochs=1, **kw)])
def test_estimators_pass_the_duplicates_policy_through(make):
    users, items = np.array([0, 0, 1, 1, 2]), np.array([0, 0, 1, 2, 0])
    ratings = np.array([4.0, 5.0, 3.0, 2.0, 1.0])
    with pytest.raises(ValueError, match="repeated|duplicate"):
        make().fit((users, items, ratings))
    model = make(duplicates="mean").fit((users, items, ratings))
    assert model.seen_.nnz == 4
