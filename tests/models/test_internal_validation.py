"""Early stopping on an internal validation split (scikit-learn's ``validation_fraction``): each
family holds out data the way it is evaluated, seeded, trains on the rest and keeps the best
epoch; explicit ``validation_data`` replaces the split; ``early_stopping=False`` never splits."""

import dataclasses

import numpy as np
import pytest

from fastrec import GMF, MF, NMF, GRU4Rec, NeuMF, SVDpp
from fastrec.data import Sessions, synthetic_ratings, synthetic_sessions
from fastrec.data.interactions import Interactions
from fastrec.model_selection import LeaveLastOut, RatingSplit, SessionSplit
from tests.ncf._data import clustered_implicit


@pytest.fixture(scope="module")
def ratings():
    return synthetic_ratings(n_users=120, n_items=60, n_ratings=2_400, rank=3, noise_std=0.5,
                             seed=1).interactions


@pytest.fixture(scope="module")
def non_negative_ratings(ratings):
    return dataclasses.replace(ratings, values=np.abs(ratings.values))


@pytest.fixture(scope="module")
def implicit():
    return clustered_implicit()


@pytest.fixture(scope="module")
def sessions():
    return synthetic_sessions(n_sessions=300, n_items=30, random_state=0)


def _rating_split(data, fraction, seed):
    fit_rows, held = next(RatingSplit(1, fraction, seed).split(range(data.nnz)))
    return data.subset(fit_rows), data.subset(held)


def _latest_split(data, fraction, seed):
    fit_rows, held = next(LeaveLastOut().split(data))
    chosen = np.random.default_rng(seed).random(held.shape[0]) < fraction
    return data.subset(np.sort(np.r_[fit_rows, held[~chosen]])), data.subset(held[chosen])


def _session_split(frame, fraction, seed):
    data = Sessions.from_frame(frame)
    fit_sessions, held = next(SessionSplit(fraction).split(data))
    return data.subset(fit_sessions), data.subset(held)


def _maker(cls, **params):
    return lambda **kw: cls(**{**params, "n_threads": 1, "backend": "cython", **kw})


def _nmf_maker(**params):
    make = _maker(NMF, mode="observed", **params)
    return lambda n_epochs=None, **kw: make(**kw, **({} if n_epochs is None else
                                                     {"max_iter": n_epochs}))


# family -> (model overfitting quickly (keywords override), data fixture, the split the family
# should make, the fitted arrays compared, higher validation is better)
CASES = {
    "MF": (_maker(MF, n_factors=24, n_epochs=40, learning_rate=0.05, reg=0.0, lr_decay=0.0),
           "ratings", _rating_split, ("user_factors_", "item_factors_", "item_bias_"), False),
    "SVDpp": (_maker(SVDpp, n_factors=16, n_epochs=30, learning_rate=0.05, reg=0.0),
              "ratings", _rating_split, ("user_factors_", "implicit_factors_"), False),
    # NCF's refit (tested in tests/ncf) would replace the best epoch's weights compared here
    "NeuMF": (_maker(NeuMF, n_factors=8, layers=(16, 8), n_epochs=30, learning_rate=0.02,
                     n_eval_negatives=30, refit=False),
              "implicit", _latest_split, ("user_embeddings_", "dense_"), True),
    "GMF": (_maker(GMF, n_factors=8, n_epochs=30, learning_rate=0.05, n_eval_negatives=30,
                   refit=False),
            "implicit", _latest_split, ("user_embeddings_", "dense_"), True),
    "NMF": (_nmf_maker(n_components=12, max_iter=80, alpha_W=0.0, tol=0.0),
            "non_negative_ratings",
            _rating_split, ("user_factors_", "item_factors_"), False),
    "GRU4Rec": (_maker(GRU4Rec, hidden_size=16, n_epochs=30, learning_rate=0.5, batch_size=16,
                       n_sample=16),
                "sessions", _session_split, ("gru_weights_", "output_table_"), True),
}
FRACTION = {"MF": 0.2, "SVDpp": 0.2, "NMF": 0.2, "NeuMF": 0.5, "GMF": 1.0, "GRU4Rec": 0.2}


def _data(request, case):
    return request.getfixturevalue(CASES[case][1])


def _assert_same(a, b, names):
    for name in (*names, "validation_curve_", "loss_curve_"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.mark.parametrize("case", list(CASES))
def test_the_internal_split_is_the_familys_protocol_and_seeded(case, request):
    make, _, split, names, _ = CASES[case]
    data = _data(request, case)
    fraction = FRACTION[case]
    model = make(early_stopping=True, validation_fraction=fraction, n_iter_no_change=2,
                 random_state=3).fit(data)
    assert model.validation_curve_ and model.best_epoch_ is not None
    # the same fit, given the family's own split (made with the same seed) explicitly
    fit_part, held = split(data, fraction, 3)
    assert held.n_sessions if isinstance(held, Sessions) else held.nnz
    explicit = make(early_stopping=True, n_iter_no_change=2, random_state=3).fit(
        fit_part, validation_data=held)
    _assert_same(model, explicit, names)
    again = make(early_stopping=True, validation_fraction=fraction, n_iter_no_change=2,
                 random_state=3).fit(data)
    _assert_same(model, again, names)
    if isinstance(data, Interactions):
        # recommend skips the held-out pairs too (SVD++'s seen_ is its N(u): training only)
        assert model.seen_.nnz == (fit_part.nnz if case == "SVDpp" else data.nnz)


@pytest.mark.parametrize("case", ["MF", "NeuMF"])
def test_the_seed_draws_the_split(case, request):
    make, _, split, _, _ = CASES[case]
    data = _data(request, case)
    a, b = split(data, 0.5, 0)[1], split(data, 0.5, 1)[1]
    assert not (a.nnz == b.nnz and np.array_equal(a.users, b.users)
                and np.array_equal(a.items, b.items))
    curves = [make(early_stopping=True, validation_fraction=0.5, n_iter_no_change=2,
                   random_state=seed).fit(data).validation_curve_ for seed in (0, 1)]
    assert curves[0] != curves[1]


@pytest.mark.parametrize("case", list(CASES))
def test_the_best_epochs_weights_are_restored(case, request):
    make, _, split, _, higher = CASES[case]
    data = _data(request, case)
    model = make(early_stopping=True, validation_fraction=FRACTION[case], n_iter_no_change=2,
                 random_state=3).fit(data)
    curve = model.validation_curve_
    best = int(np.argmax(curve) if higher else np.argmin(curve))
    assert model.best_epoch_ == best + 1 < model.n_epochs_, "stopped at its best: nothing to do"
    held = split(data, FRACTION[case], 3)[1]
    # the fitted model scores the held-out part as the best epoch did (weights restored)
    if case == "GRU4Rec":
        assert model.evaluate(held, k=20)["recall"] == pytest.approx(curve[best])
    elif higher:
        from fastrec.evaluation import SampledRanking, evaluate_sampled

        fit_part = split(data, FRACTION[case], 3)[0]
        ranking = SampledRanking.build(fit_part, held, 30, seed=3)
        assert evaluate_sampled(model, ranking)["hr@10"] == pytest.approx(curve[best])
    else:
        assert -model.score(held) == pytest.approx(curve[best], rel=1e-6)


@pytest.mark.parametrize("case", list(CASES))
def test_without_early_stopping_nothing_is_held_out(case, request):
    make, _, _, names, _ = CASES[case]
    data = _data(request, case)
    plain = make(n_epochs=3, random_state=3, early_stopping=False).fit(data)
    # validation_fraction is unused: today's fit on all of the data, bit for bit
    other = make(n_epochs=3, random_state=3, early_stopping=False,
                 validation_fraction=0.5).fit(data)
    _assert_same(plain, other, names)
    assert plain.validation_curve_ == [] and plain.best_epoch_ is None
    assert plain.n_epochs_ == 3
    if case != "NMF":  # NMF measures its objective every 10 iterations, as scikit-learn's
        assert len(plain.loss_curve_) == 3
    if isinstance(data, Interactions):
        assert plain.seen_.nnz == data.nnz


def test_explicit_validation_data_replaces_the_split(ratings):
    fit_part, held = _rating_split(ratings, 0.3, 0)
    make = CASES["MF"][0]
    a = make(early_stopping=True, n_iter_no_change=2, random_state=0).fit(
        fit_part, validation_data=held)
    b = make(early_stopping=True, n_iter_no_change=2, random_state=0,
             validation_fraction=0.9).fit(fit_part, validation_data=held)
    _assert_same(a, b, CASES["MF"][3])


@pytest.mark.parametrize("make, bad", [
    (lambda f: MF(early_stopping=True, validation_fraction=f), (0.0, 1.0, True, "0.1")),
    (lambda f: GMF(early_stopping=True, validation_fraction=f), (0.0, 1.5)),
    (lambda f: GRU4Rec(early_stopping=True, validation_fraction=f), (0.0, 1.0)),
])
def test_bad_validation_fractions_are_refused(make, bad, ratings, sessions):
    for fraction in bad:
        data = sessions if isinstance(make(0.1), GRU4Rec) else ratings
        with pytest.raises(ValueError, match="validation_fraction"):
            make(fraction).fit(data)


def test_a_split_with_nothing_to_hold_out_says_so():
    # every user has one interaction: leave-latest-out holds nothing out
    lonely = Interactions.from_ids(np.arange(5), np.arange(5), np.ones(5))
    with pytest.raises(ValueError, match="validation_data"):
        GMF(early_stopping=True).fit(lonely)


def test_full_mode_nmf_asks_for_validation_data():
    # an entry held out of a full matrix would be a zero of it, not a missing value
    with pytest.raises(ValueError, match="needs validation_data in full mode"):
        NMF(2, early_stopping=True).fit(np.ones((6, 5)))
