"""GRU4Rec estimator behaviour on every backend: learns planted transitions, determinism,
live-session recommendations, files, data loaders and splits, and clear errors on bad input."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from fastrec import GRU4Rec, ModelFileError, NotFittedError
from fastrec.backends import _probe
from fastrec.data import (
    Sessions,
    load_diginetica,
    load_sasrec_sequences,
    split_last_days,
    split_last_item,
    synthetic_sessions,
)
from tests.conftest import backend_or_skip

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
SMALL = dict(hidden_size=24, n_sample=16, batch_size=16, n_epochs=4, learning_rate=0.1,
             random_state=0, dtype="float64", early_stopping=False)


@pytest.fixture(scope="module")
def planted():
    frame = synthetic_sessions(n_sessions=400, n_items=40, random_state=0)
    return frame[frame.session_id < 340], frame[frame.session_id >= 340]


@pytest.mark.parametrize("name", ["numpy", "cython", "numba"])
@pytest.mark.parametrize("loss", ["cross-entropy", "bpr-max"])
def test_learns_planted_transitions(planted, name, loss):
    train, test = planted
    model = GRU4Rec(loss=loss, backend=backend_or_skip(name).name, **SMALL)
    assert model.fit(train) is model
    assert model.backend_ == name
    assert model.loss_curve_[-1] < model.loss_curve_[0]
    result = model.evaluate(test, k=20)
    # successor followed with probability 0.8, so Recall@20 of a learned model is about 0.85;
    # popularity would give about 0.5 with 40 items
    assert result["recall"] > 0.75
    assert result["mrr"] > 0.6


def test_backends_agree_and_seed_determines_the_model(planted):
    train, _ = planted
    names = [n for n in ("cython", "numba") if _probe(n).available]
    models = [GRU4Rec(backend=n, **{**SMALL, "n_epochs": 1}).fit(train) for n in names]
    again = GRU4Rec(backend=names[0], **{**SMALL, "n_epochs": 1}).fit(train)
    assert np.array_equal(models[0].output_table_, again.output_table_)
    for other in models[1:]:
        assert_allclose(other.output_table_, models[0].output_table_, rtol=1e-8, atol=1e-10)
    seeded = GRU4Rec(backend=names[0], **{**SMALL, "n_epochs": 1, "random_state": 1}).fit(train)
    assert not np.allclose(seeded.output_table_, models[0].output_table_)


def test_parameters_change_the_model(planted):
    train, _ = planted
    base = GRU4Rec(backend="cython", **{**SMALL, "n_epochs": 1}).fit(train)
    for change in ({"n_sample": 4}, {"momentum": 0.5}, {"dropout_hidden": 0.3},
                   {"optimizer": "adam", "learning_rate": 0.01}, {"embedding_size": 8},
                   {"bptt": 2}, {"loss": "top1-max"}):
        other = GRU4Rec(backend="cython", **{**SMALL, "n_epochs": 1, **change}).fit(train)
        assert other.loss_curve_[0] != base.loss_curve_[0], change


def test_recommend_next_carries_state(planted):
    train, test = planted
    model = GRU4Rec(backend="cython", **SMALL).fit(train)
    clicks = test.item_id.to_numpy()[:4]
    ids_all, scores_all, state_all = model.recommend_next(clicks, n=5)
    state = None
    for click in clicks:
        ids, scores, state = model.recommend_next([click], n=5, state=state)
    assert np.array_equal(ids, ids_all)
    assert_allclose(scores, scores_all)
    assert_allclose(state, state_all)
    assert np.all(np.diff(scores) <= 0)
    # the planted successor of the last click (the most frequent next item in training) is
    # the top recommendation for most items
    pairs = train.assign(next=train.groupby("session_id").item_id.shift(-1)).dropna()
    successor = pairs.groupby("item_id").next.agg(lambda s: s.value_counts().index[0])
    top = [model.recommend_next([item], n=1)[0][0] for item in successor.index]
    assert np.mean(np.asarray(top) == successor.to_numpy()) > 0.8
    with pytest.raises(ValueError, match="unseen"):
        model.recommend_next([10_000], unknown="raise")
    with pytest.raises(ValueError, match="no known item"):
        model.recommend_next([10_000])
    with pytest.raises(ValueError, match="no known item"):
        model.recommend_next([])
    with pytest.raises(ValueError, match="state"):
        model.recommend_next(clicks, state=np.zeros(3))


def test_save_load_round_trip(planted, tmp_path):
    train, test = planted
    model = GRU4Rec(backend="cython", embedding_size=6, n_layers=2,
                    **{k: v for k, v in SMALL.items()}).fit(train)
    path = model.save(tmp_path / "gru")
    loaded = GRU4Rec.load(path)
    assert loaded.get_params() == model.get_params()
    assert loaded.evaluate(test) == model.evaluate(test)
    clicks = test.item_id.to_numpy()[:3]
    assert np.array_equal(loaded.recommend_next(clicks)[0], model.recommend_next(clicks)[0])
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros(2))
    with pytest.raises(ModelFileError):
        GRU4Rec.load(bad)


def test_unsorted_events_are_sorted_by_time(planted):
    train, _ = planted
    shuffled = train.sample(frac=1.0, random_state=3)
    a = GRU4Rec(backend="cython", **{**SMALL, "n_epochs": 1}).fit(train)
    b = GRU4Rec(backend="cython", **{**SMALL, "n_epochs": 1}).fit(shuffled)
    assert np.array_equal(a.output_table_, b.output_table_)


def test_bad_input_gets_clear_errors(planted):
    train, test = planted
    with pytest.raises(NotFittedError):
        GRU4Rec().recommend_next([1])
    with pytest.raises(ValueError, match="two or more events"):
        GRU4Rec(**SMALL).fit(pd.DataFrame({"session_id": [1, 2], "item_id": [3, 4]}))
    with pytest.raises(ValueError, match="two or more events"):
        GRU4Rec(**SMALL).fit(pd.DataFrame({"session_id": [], "item_id": []}))
    with pytest.raises(ValueError, match="batch_size"):
        GRU4Rec(**{**SMALL, "batch_size": 1000}).fit(train)
    with pytest.raises(ValueError, match="loss"):
        GRU4Rec(loss="hinge").fit(train)
    with pytest.raises(ValueError, match="dropout_hidden"):
        GRU4Rec(dropout_hidden=1.0).fit(train)
    with pytest.raises(ValueError, match="dropout_embed needs"):
        GRU4Rec(dropout_embed=0.2).fit(train)
    with pytest.raises(ValueError, match="missing"):
        GRU4Rec(**SMALL).fit(pd.DataFrame({"session_id": [1, 1], "item_id": [3, None]}))
    with pytest.raises(TypeError):
        GRU4Rec(**SMALL).fit([1, 2, 3])
    # length-1 sessions are skipped; test items unseen in training are dropped
    with_singletons = pd.concat([train, pd.DataFrame(
        {"session_id": [10_000], "item_id": [0], "timestamp": [0.0]})])
    model = GRU4Rec(backend="cython", **SMALL).fit(with_singletons)
    unseen = test.copy()
    unseen.loc[unseen.index[:5], "item_id"] = 99_999
    assert model.evaluate(unseen)["n_events"] < model.evaluate(test)["n_events"]


def test_sessions_from_arrays_and_splits():
    s = Sessions.from_arrays([2, 1, 2, 1], ["b", "a", "a", "c"], [5.0, 1.0, 4.0, 2.0])
    assert s.n_sessions == 2 and s.offsets.tolist() == [0, 2, 4]
    assert s.item_ids[s.items].tolist() == ["a", "c", "a", "b"]
    frame = synthetic_sessions(50, 10, random_state=1)
    split = split_last_item(frame)
    last = frame.groupby("session_id").tail(1)
    assert len(split.train) == len(frame) - len(last)
    assert set(split.test.session_id) <= set(frame.session_id)
    frame["timestamp"] = frame["session_id"] * 86400.0 / 10
    days = split_last_days(frame, n_days=1.0)
    assert days.train.timestamp.max() < days.test.timestamp.min()
    assert set(days.test.item_id) <= set(days.train.item_id)


@pytest.mark.parametrize("loader, folder, n_rows, n_sessions, n_items", [
    (load_diginetica, "sessions-diginetica-sample", 12391, 2986, 7139),
    (load_sasrec_sequences, "sequences-sasrec-video", 287107, 31013, 23715),
])
def test_load_shared_session_data(loader, folder, n_rows, n_sessions, n_items):
    if not (DATA / folder).is_dir():
        pytest.skip(f"shared data {folder} not present")
    frame = loader(DATA / folder)
    assert len(frame) == n_rows
    assert frame.session_id.nunique() == n_sessions and frame.item_id.nunique() == n_items
