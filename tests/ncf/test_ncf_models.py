"""Behaviour of GMF, MLP and NeuMF: they learn a planted structure on every backend, are
deterministic, round-trip through files, pretrain NeuMF, and refuse bad input clearly."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from fastrec import GMF, MF, MLP, NMF, DivergenceError, ModelFileError, NeuMF, NotFittedError
from fastrec.evaluation import SampledRanking, evaluate_full, evaluate_sampled, leave_last_out
from tests.conftest import backend_or_skip
from tests.ncf._data import clustered_implicit
from tests.tolerances import tolerance

BACKENDS = ("numpy", "cython", "numba")
# early stopping (on by default) is tested where it is the subject; here the epochs are fixed
SMALL = dict(n_epochs=8, learning_rate=0.01, batch_size=64, random_state=0, n_threads=2,
             early_stopping=False)


@pytest.fixture(scope="module")
def split():
    data = clustered_implicit()
    train, test = leave_last_out(data)
    return train, test, SampledRanking.build(train, test, 50, seed=0)


class Popularity:
    """Scores every item by its training count: the baseline a model must beat."""

    def __init__(self, train):
        self.counts = np.bincount(train.items, minlength=train.n_items).astype(float)

    def _predict_indices(self, users, items):
        return self.counts[items]


def make(cls, backend, **extra):
    kw = dict(SMALL, backend=backend, **extra)
    if cls is not GMF:
        kw.setdefault("layers", (16, 8))
    if cls is NeuMF:
        kw.setdefault("n_factors", 8)  # sized for the small planted data
    if cls is MLP:
        kw["init_std"] = 0.1
    return cls(**kw)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cls", [GMF, MLP, NeuMF])
def test_learns_planted_structure(split, backend, cls):
    backend_or_skip(backend, "ncf_train_epoch", "ncf_forward")
    train, test, ranking = split
    popularity = evaluate_sampled(Popularity(train), ranking)["hr@10"]
    model = make(cls, backend).fit(train)
    hr = evaluate_sampled(model, ranking)["hr@10"]
    assert popularity < 0.35
    assert hr >= 0.7, f"{cls.__name__} on {backend}: HR@10 {hr:.3f} (popularity {popularity:.3f})"
    assert model.loss_curve_[-1] < model.loss_curve_[0]
    assert evaluate_full(model, train, test)["hr@10"] > 0.5


@pytest.mark.parametrize("backend", ["cython", "numba"])
def test_backends_agree_with_reference_model(split, backend):
    backend_or_skip(backend, "ncf_train_epoch")
    train = split[0]
    reference = make(NeuMF, "numpy", n_epochs=2, dtype="float64").fit(train)
    model = make(NeuMF, backend, n_epochs=2, dtype="float64").fit(train)
    assert_allclose(model.dense_, reference.dense_, **tolerance(np.float64))
    assert_allclose(model.loss_curve_, reference.loss_curve_, **tolerance(np.float64))


def test_fit_returns_self_predict_recommend(split):
    train = split[0]
    model = make(NeuMF, "auto", n_epochs=2)
    assert model.fit(train) is model
    users = train.user_ids[train.users[:5]]
    items = train.item_ids[train.items[:5]]
    p = model.predict(users, items)
    assert p.shape == (5,) and np.all((p > 0) & (p < 1))
    ids, scores = model.recommend(users[:3], n=5)
    assert ids.shape == (3, 5) and np.all(np.diff(scores, axis=1) <= 0)
    seen = set(zip(train.users.tolist(), train.items.tolist(), strict=True))
    index = {v: k for k, v in enumerate(train.item_ids.tolist())}
    for u, row in zip(train.users[:3], ids, strict=True):
        assert not any((int(u), index[i]) in seen for i in row.tolist())
    ids_all, _ = model.recommend(users[:1], n=1000, filter_seen=False)
    assert (ids_all >= 0).sum() == train.n_items
    restricted, _ = model.recommend(users[:1], n=2, items=train.item_ids[:3], filter_seen=False)
    assert set(restricted[0].tolist()) <= set(train.item_ids[:3].tolist())


def test_save_load_round_trip(split, tmp_path):
    train = split[0]
    for cls in (GMF, MLP, NeuMF):
        model = make(cls, "auto", n_epochs=1).fit(train)
        path = model.save(tmp_path / cls.__name__)
        loaded = cls.load(path)
        expected = model.get_params()
        if "layers" in expected:
            expected["layers"] = list(expected["layers"])
        assert loaded.get_params() == expected
        users, items = train.user_ids[train.users[:20]], train.item_ids[train.items[:20]]
        assert_allclose(loaded.predict(users, items), model.predict(users, items), rtol=0)
        with pytest.raises(ModelFileError):
            (MLP if cls is GMF else GMF).load(path)
    (tmp_path / "junk.npz").write_bytes(b"not a model")
    with pytest.raises(ModelFileError):
        NeuMF.load(tmp_path / "junk.npz")


def test_neumf_pretraining_from_gmf_mlp_and_mf(split):
    train, _, ranking = split
    gmf = make(GMF, "auto", n_factors=8).fit(train)
    mlp = make(MLP, "auto").fit(train)
    fused = make(NeuMF, "auto", n_factors=8, n_epochs=1, learning_rate=1e-9)
    fused.fit(train, gmf=gmf, mlp=mlp)
    # with a vanishing learning rate the fused model is the pretrained one: alpha * z_gmf +
    # (1 - alpha) * z_mlp
    u, i = ranking.users[:30], ranking.items[:30]
    expected = 0.5 * gmf._logits(u, i) + 0.5 * mlp._logits(u, i)
    assert_allclose(fused._logits(u, i), expected, **tolerance(np.float32))
    assert evaluate_sampled(fused, ranking)["hr@10"] >= 0.7
    mf = MF(n_factors=8, n_epochs=5, random_state=0).fit(train)
    seeded = make(NeuMF, "auto", n_factors=8, n_epochs=1, learning_rate=1e-9).fit(train, mf=mf)
    assert_allclose(seeded.user_embeddings_[:, :8], mf.user_factors_, rtol=0, atol=1e-6)
    nmf = NMF(8, mode="observed", max_iter=20, random_state=0).fit(train)
    from_nmf = make(NeuMF, "auto", n_factors=8, n_epochs=1, learning_rate=1e-9).fit(train, mf=nmf)
    assert_allclose(from_nmf.user_embeddings_[:, :8], nmf.user_factors_, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="n_factors"):
        make(NeuMF, "auto", n_factors=4).fit(train, gmf=gmf)
    with pytest.raises(ValueError, match="layers"):
        make(NeuMF, "auto", layers=(8, 4)).fit(train, mlp=mlp)
    with pytest.raises(TypeError, match="pretrained"):
        make(GMF, "auto").fit(train, mlp=mlp)


def test_early_stopping_keeps_best_epoch(split):
    train, test, _ = split
    model = make(GMF, "auto", n_epochs=30, learning_rate=0.05, early_stopping=True,
                 n_iter_no_change=2, n_eval_negatives=50)
    model.fit(train, validation_data=test)
    assert len(model.validation_curve_) == model.n_epochs_
    assert model.n_epochs_ < 30
    best = max(model.validation_curve_)
    ranking = SampledRanking.build(train, test, 50, seed=0)
    assert evaluate_sampled(model, ranking)["hr@10"] == pytest.approx(best)


@pytest.mark.parametrize("cls", [GMF, NeuMF])
def test_refit_retrains_on_all_data_for_the_best_epochs(cls):
    data = clustered_implicit()
    params = dict(n_epochs=30, learning_rate=0.05, n_iter_no_change=2, n_eval_negatives=30,
                  n_threads=1, backend="cython", random_state=3,
                  **({"n_factors": 8, "layers": (16, 8)} if cls is NeuMF else {}))
    chosen = cls(refit=False, **params).fit(data)
    model = cls(**params).fit(data)
    # the epoch choice is the held-out fit's, the weights those of a plain fit on all the data
    assert model.best_epoch_ == chosen.best_epoch_ < model.n_epochs_ == chosen.n_epochs_
    assert model.validation_curve_ == chosen.validation_curve_
    plain = cls(**{**params, "n_epochs": chosen.best_epoch_}, early_stopping=False).fit(data)
    for name in ("user_embeddings_", "item_embeddings_", "dense_"):
        np.testing.assert_array_equal(getattr(model, name), getattr(plain, name), err_msg=name)
        assert not np.array_equal(getattr(model, name), getattr(chosen, name))
    assert model.seen_.nnz == data.nnz
    # explicit validation data: the caller chose what to train on, nothing is refitted
    train, held = leave_last_out(data)
    explicit = cls(**params).fit(train, validation_data=held)
    same = cls(refit=False, **params).fit(train, validation_data=held)
    np.testing.assert_array_equal(explicit.dense_, same.dense_)
    with pytest.raises(ValueError, match="refit"):
        cls(refit="yes").fit(data)


def test_explicit_ratings_with_squared_loss():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(60), 10)
    # Ten distinct items per user: repeated (user, item) pairs are an input error.
    items = np.concatenate([rng.choice(40, 10, replace=False) for _ in range(60)])
    ratings = 1.0 + 4.0 * ((users % 2) == (items % 2))  # planted: parity match rates 5, else 1
    model = GMF(n_factors=4, loss="squared", n_negatives=0, n_epochs=30, learning_rate=0.02,
                batch_size=32, random_state=0).fit((users, items, ratings),
                                                   validation_data=(users, items, ratings))
    assert model.validation_curve_[-1] < 0.5
    pred = model.predict(users[:50], items[:50])
    assert np.corrcoef(pred, ratings[:50])[0, 1] > 0.9


def test_bad_input(split):
    train = split[0]
    with pytest.raises(ValueError, match="n_negatives"):
        GMF(n_negatives=0).fit(train)
    with pytest.raises(ValueError, match="even"):
        MLP(layers=(7, 4)).fit(train)
    with pytest.raises(ValueError, match="positive"):
        MLP(layers=(8, 0)).fit(train)
    with pytest.raises(ValueError, match="MLP layers"):
        MLP(layers=()).fit(train)
    with pytest.raises(ValueError, match="loss"):
        GMF(loss="hinge").fit(train)
    with pytest.raises(ValueError, match="optimizer"):
        GMF(optimizer="rmsprop").fit(train)
    with pytest.raises(ValueError, match="batch_size"):
        GMF(batch_size=0).fit(train)
    with pytest.raises(ValueError, match="learning_rate"):
        GMF(learning_rate=-1).fit(train)
    with pytest.raises(ValueError, match="dtype"):
        GMF(dtype="int8").fit(train)
    with pytest.raises(ValueError, match="empty"):
        GMF().fit((np.array([], int), np.array([], int)))
    with pytest.raises(ValueError, match="validation_fraction"):
        GMF(early_stopping=True, validation_fraction=0).fit(train)
    with pytest.raises(NotFittedError, match="not fitted"):
        GMF().predict([0], [0])
    model = make(GMF, "auto", n_epochs=1).fit(train)
    with pytest.raises(ValueError, match="unknown"):
        model.predict([10**6], [0])
    with pytest.raises(ValueError, match="same length"):
        model.predict([0, 1], [0])
    with pytest.raises(DivergenceError, match="learning_rate"):
        GMF(loss="squared", n_negatives=0, learning_rate=1e30, optimizer="sgd", n_epochs=3,
            random_state=0).fit((np.arange(50) % 10, np.arange(50) // 10, np.full(50, 5.0)))


def test_leave_last_out_protocol():
    data = clustered_implicit(n_users=10, n_items=20, per_user=5)
    train, test = leave_last_out(data)
    assert test.nnz == 10 and train.nnz + test.nnz == data.nnz
    for u in range(10):
        rows = np.flatnonzero(data.users == u)
        latest = rows[np.argmax(data.timestamps[rows])]
        assert test.items[test.users == u][0] == data.items[latest]
    keep = np.r_[np.flatnonzero(data.users != 3), np.flatnonzero(data.users == 3)[:1]]
    lonely = data.subset(keep)
    with pytest.raises(ValueError, match="single interaction"):
        leave_last_out(lonely)
    train2, test2 = leave_last_out(lonely, single="train")
    assert 3 not in test2.users and 3 in train2.users
    with pytest.raises(ValueError, match="n_negatives"):
        SampledRanking.build(train, test, 0)


def test_string_ids_and_padding():
    users = np.array(["ann", "ann", "bob", "bob", "cy", "cy"])
    items = np.array(["x", "y", "y", "z", "x", "z"])
    model = GMF(n_factors=2, n_epochs=2, random_state=0, early_stopping=False).fit((users, items))
    ids, scores = model.recommend(["ann"], n=3)
    assert ids[0, 0] == "z" and ids[0, 1] == "" and np.isneginf(scores[0, 1])
    assert model.predict(["bob"], ["x"]).shape == (1,)
