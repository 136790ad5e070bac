"""The joint model's rating term in the NCF kernels (every CPU backend against the reference,
finite differences of the reference) and the JointNeuMF estimator."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from fastrec import MF, JointNeuMF, NeuMF
from fastrec._algorithms.ncf import OptimizerState, epoch_order, init_params
from fastrec.backends import get_backend
from fastrec.data.interactions import Interactions
from tests.conftest import backend_or_skip
from tests.ncf.test_ncf_kernels import (
    assert_finite_differences,
    implicit_problem,
    random_batch,
    run_passes,
)
from tests.tolerances import tolerance

BACKENDS = ("cython", "numba")
NETS = [(4, [8, 6, 3]), (5, [])]  # NeuMF, GMF
N_RATING = [None, 2]  # the rating term over every GMF column, or the first two


def joint_batch(dtype, index_dtype, n_gmf, layers, batch=150, seed=0, n_rating=None):
    """random_batch with a rating bias column and each row's rating and weight (some 0), the
    rating term over the first ``n_rating`` GMF columns."""
    users, items, targets, user_emb, item_emb, dense, layers = random_batch(
        dtype, index_dtype, n_gmf, layers, batch, seed)
    rng = np.random.default_rng(seed + 1)
    user_emb, item_emb = (np.hstack([e, rng.normal(0, 0.3, (e.shape[0], 1)).astype(dtype)])
                          for e in (user_emb, item_emb))
    rating = {"ratings": rng.uniform(1, 5, batch).astype(dtype),
              "rating_weights": np.where(rng.random(batch) < 0.3, 0, 0.7).astype(dtype),
              "rating_mean": 3.2, "rating_reg": 0.05, "n_rating": n_rating}
    return (users, items, targets, user_emb, item_emb, dense, layers), rating


def joint_passes(kernels, args, n_gmf, rating):
    """run_passes with the rating term passed to the backward pass."""
    original = kernels.ncf_backward

    class WithRating:
        ncf_forward = kernels.ncf_forward

        @staticmethod
        def ncf_backward(*a):
            return original(*a, **rating)

    users, items, targets, user_emb, item_emb, dense, layers = args
    return run_passes(WithRating, users, items, targets, user_emb, item_emb, dense, layers,
                      n_gmf, 0)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype,index_dtype", [(np.float32, np.int32), (np.float64, np.int64)])
@pytest.mark.parametrize("n_gmf,layers", NETS)
@pytest.mark.parametrize("n_rating", N_RATING)
def test_joint_backward_matches_reference(name, dtype, index_dtype, n_gmf, layers, n_rating):
    backend = backend_or_skip(name, "ncf_forward", "ncf_backward")
    args, rating = joint_batch(dtype, index_dtype, n_gmf, layers, n_rating=n_rating)
    expected = joint_passes(get_backend("numpy"), args, n_gmf, rating)
    got = joint_passes(backend, args, n_gmf, rating)
    for e, g in zip(expected, got, strict=True):
        assert_allclose(g, e, **tolerance(dtype))


@pytest.mark.parametrize("n_gmf,layers", NETS)
@pytest.mark.parametrize("n_rating", N_RATING)
def test_reference_joint_backward_matches_finite_differences(n_gmf, layers, n_rating):
    """The gradient of the batch's mean (BCE + rating term) in every embedding column, the
    bias column's included, and in the dense weights."""
    args, rating = joint_batch(np.float64, np.int64, n_gmf, layers, batch=12, seed=3,
                               n_rating=n_rating)
    users, items, targets, user_emb, item_emb, dense, layers = args
    kernels = get_backend("numpy")
    _, _, dense_grad, user_grads, item_grads = joint_passes(kernels, args, n_gmf, rating)

    def mean_loss(u_emb, i_emb, d):
        return joint_passes(kernels, (users, items, targets, u_emb, i_emb, d, layers), n_gmf,
                            rating)[1] / users.shape[0]

    assert_finite_differences(mean_loss, users, items, user_emb, item_emb, dense, dense_grad,
                              user_grads, item_grads)


def joint_epochs(kernels, dtype, index_dtype, optimizer, n_threads, rating_weight=0.8,
                 nonnegative=False, bias_column=True, n_epochs=2, n_rating=None):
    """Two epochs of a NeuMF with the rating term; returns (losses, user_emb, item_emb, dense)."""
    users, items, indptr, indices, n_users, n_items = implicit_problem(index_dtype)
    layers = np.array([8, 6, 3], np.int64)
    user_emb, item_emb, dense = init_params(n_users, n_items, 4, layers, dtype,
                                            np.random.default_rng(1), 0.3)
    ratings = np.random.default_rng(2).uniform(1, 5, users.shape[0]).astype(dtype)
    if bias_column:
        user_emb, item_emb = (np.hstack([e, np.zeros((e.shape[0], 1), dtype)])
                              for e in (user_emb, item_emb))
    cols = 4 if n_rating is None else n_rating  # the rating term's (projected) columns
    if nonnegative:
        user_emb[:, :cols], item_emb[:, :cols] = (np.abs(user_emb[:, :cols]),
                                                  np.abs(item_emb[:, :cols]))
    rating = ({"ratings": ratings, "rating_weight": rating_weight, "rating_mean": 3.0,
               "rating_reg": 0.05, "n_rating": n_rating, "nonnegative": nonnegative}
              if bias_column else {})
    state = OptimizerState.zeros(user_emb, item_emb, dense, 0.1 if optimizer == 1 else 0.0)
    losses = []
    for epoch in range(n_epochs):
        order = epoch_order(users.shape[0], 3, np.random.default_rng(epoch))
        losses.append(kernels.ncf_train_epoch(
            users, items, np.ones(users.shape[0], dtype), indptr, indices, order, 3, 7, epoch,
            user_emb, item_emb, dense, layers, 4, 0, optimizer, 0.01, 0.9, 0.999,
            1e-8 if optimizer == 0 else 1e-10, epoch * 100, state.dense1, state.dense2,
            state.user1, state.user2, state.item1, state.item2, 37, n_threads, **rating))
    return np.array(losses), user_emb, item_emb, dense


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("optimizer", [0, 1, 2])
@pytest.mark.parametrize("nonnegative,n_rating",
                         [(False, None), (True, None), (False, 2), (True, 2)])
def test_joint_epoch_matches_reference(name, optimizer, nonnegative, n_rating):
    """float64: in float32, Adam's normalised steps amplify rounding differences between
    backends over two epochs of this noisy rating term beyond the float32 tolerance."""
    backend = backend_or_skip(name, "ncf_train_epoch")
    dtype = np.float64
    expected = joint_epochs(get_backend("numpy"), dtype, np.int32, optimizer, 1,
                            nonnegative=nonnegative, n_rating=n_rating)
    got = joint_epochs(backend, dtype, np.int32, optimizer, 2, nonnegative=nonnegative,
                       n_rating=n_rating)
    for e, g in zip(expected, got, strict=True):
        assert_allclose(g, e, **tolerance(dtype))
    cols = 4 if n_rating is None else n_rating
    if nonnegative:
        assert got[1][:, :cols].min() >= 0 and got[2][:, :cols].min() >= 0
        if cols < 4:  # the network's own GMF columns stay signed
            assert got[1][:, cols:4].min() < 0 and got[2][:, cols:4].min() < 0
    assert np.abs(got[1][:, -1]).max() > 0  # the biases learnt


@pytest.mark.parametrize("name", ("numpy", *BACKENDS))
def test_zero_rating_weight_is_plain_neumf(name):
    """With weight 0 the network's columns and weights are NeuMF's bit for bit; the biases
    stay 0."""
    backend = backend_or_skip(name, "ncf_train_epoch")
    joint = joint_epochs(backend, np.float32, np.int32, 0, 2, rating_weight=0.0)
    plain = joint_epochs(backend, np.float32, np.int32, 0, 2, bias_column=False)
    assert_allclose(joint[0], plain[0], rtol=0, atol=0)
    for j, p in zip(joint[1:3], plain[1:3], strict=True):
        np.testing.assert_array_equal(j[:, :-1], p)
        assert not j[:, -1].any()
    np.testing.assert_array_equal(joint[3], plain[3])


# -- the estimator ---------------------------------------------------------------------------

def planted_ratings(n_users=80, n_items=60, per_user=20, seed=0):
    """Ratings from biases and a rank-2 structure, clipped to [1, 5], with timestamps."""
    rng = np.random.default_rng(seed)
    p, q = rng.normal(0, 0.8, (n_users, 2)), rng.normal(0, 0.8, (n_items, 2))
    bu, bi = rng.normal(0, 0.5, n_users), rng.normal(0, 0.5, n_items)
    users = np.repeat(np.arange(n_users), per_user)
    items = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    ratings = np.clip(3.5 + bu[users] + bi[items] + np.sum(p[users] * q[items], axis=1), 1, 5)
    return Interactions.from_ids(users, items, ratings, timestamps=np.arange(users.shape[0]))


@pytest.mark.parametrize("name", BACKENDS)
def test_joint_model_ranks_and_predicts_ratings(name):
    backend_or_skip(name, "ncf_train_epoch")
    data = planted_ratings()
    model = JointNeuMF(n_factors=8, layers=(16, 8), rating_weight=1.0, n_epochs=15,
                       learning_rate=0.01, batch_size=64, mf_init=False, early_stopping=False,
                       backend=name, random_state=0, n_threads=2).fit(data)
    users, items = data.user_ids[data.users], data.item_ids[data.items]
    rmse = np.sqrt(np.mean((model.predict_rating(users, items) - data.values) ** 2))
    assert rmse < 0.6 * np.std(data.values)  # well below the global mean's error
    assert model.rating_mean_ == pytest.approx(float(np.mean(data.values)))
    assert model.user_embeddings_.shape[1] == 8 + 8 + 1
    assert model.n_rating_ == 8  # every GMF column: fewer than MF's default rank
    assert model.recommend(users[:3], n=5)[0].shape == (3, 5)


def test_rating_weight_changes_the_model():
    data = planted_ratings()
    fit = {w: JointNeuMF(n_factors=4, layers=(8,), rating_weight=w, n_epochs=2,
                         mf_init=False, early_stopping=False, random_state=0).fit(data)
           for w in (0.0, 1.0)}
    assert not np.array_equal(fit[0.0].user_embeddings_, fit[1.0].user_embeddings_)
    assert not fit[0.0].user_embeddings_[:, -1].any()  # no rating term: no biases


def test_mf_init_starts_the_rating_part_at_mf():
    data = planted_ratings()
    users, items = data.user_ids[data.users], data.item_ids[data.items]
    mf = MF(n_factors=4, random_state=0).fit(data)
    # a step too small to move the weights: the rating part is MF's solution
    joint = JointNeuMF(n_factors=6, rating_factors=4, layers=(8,), n_epochs=1,
                       learning_rate=1e-9, mf_init=True, early_stopping=False,
                       random_state=0).fit(data)
    assert_allclose(joint.predict_rating(users, items), mf.predict(users, items), atol=1e-4)
    assert_allclose(joint.user_embeddings_[:, :4], mf.user_factors_, atol=1e-6)
    cold = JointNeuMF(n_factors=4, layers=(8,), n_epochs=1, learning_rate=1e-9,
                      mf_init=False, early_stopping=False, random_state=0).fit(data)
    assert np.abs(cold.user_embeddings_[:, -1]).max() < 1e-6  # biases start at zero


@pytest.mark.parametrize("rating_factors", [None, 2])
def test_nonnegative_keeps_the_rating_factors_nonnegative(rating_factors):
    model = JointNeuMF(n_factors=4, layers=(8,), rating_factors=rating_factors,
                       nonnegative=True, n_epochs=2, early_stopping=False,
                       random_state=0).fit(planted_ratings())
    cols = model.n_rating_
    assert cols == (4 if rating_factors is None else 2)
    assert model.user_embeddings_[:, :cols].min() >= 0 <= model.item_embeddings_[:, :cols].min()
    if cols < 4:  # the network's own GMF columns stay signed
        assert model.user_embeddings_[:, cols:4].min() < 0 > model.item_embeddings_[:, cols:4].min()


def test_bad_input_errors():
    data = planted_ratings()
    users, items = data.user_ids[data.users], data.item_ids[data.items]
    with pytest.raises(ValueError, match="explicit ratings"):
        JointNeuMF(n_epochs=1).fit((users, items))
    bad = data.values.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        JointNeuMF(n_epochs=1).fit((users, items, bad))
    with pytest.raises(ValueError, match="loss must be 'bce'"):
        JointNeuMF(loss="squared", n_epochs=1).fit(data)
    with pytest.raises(ValueError, match="rating_weight"):
        JointNeuMF(rating_weight=-1.0, n_epochs=1).fit(data)
    with pytest.raises(ValueError, match="rating_reg"):
        JointNeuMF(rating_reg=float("nan"), n_epochs=1).fit(data)
    with pytest.raises(ValueError, match="nonnegative"):
        JointNeuMF(nonnegative="yes", n_epochs=1).fit(data)
    with pytest.raises(ValueError, match="mf_init"):
        JointNeuMF(mf_init="yes", n_epochs=1).fit(data)
    for bad_count in (0, 9, 2.5):
        with pytest.raises(ValueError, match="rating_factors"):
            JointNeuMF(n_factors=8, rating_factors=bad_count, n_epochs=1).fit(data)
    model = NeuMF(n_factors=4, layers=(8,), n_epochs=1, random_state=0).fit(data)
    assert not hasattr(model, "predict_rating")


def test_predict_rating_uses_the_first_rating_factors_columns():
    """predict_rating uses the first rating_factors GMF columns only (the kernels' gradients
    of that term are checked above against finite differences)."""
    data = planted_ratings()
    users, items = data.user_ids[data.users], data.item_ids[data.items]
    kw = {"n_factors": 6, "layers": (8,), "n_epochs": 2, "early_stopping": False,
          "mf_init": False, "random_state": 0}
    two = JointNeuMF(rating_factors=2, **kw).fit(data)
    assert two.n_rating_ == 2
    ids = two._ids()
    p = two.user_embeddings_[ids.user_index(users)]
    q = two.item_embeddings_[ids.item_index(items)]
    expected = two.rating_mean_ + p[:, -1] + q[:, -1] + np.sum(p[:, :2] * q[:, :2], axis=1)
    assert_allclose(two.predict_rating(users, items), expected, rtol=1e-5)
    every = JointNeuMF(rating_factors=6, **kw).fit(data)
    assert not np.array_equal(every.user_embeddings_, two.user_embeddings_)


def test_rating_factors_out_of_range_is_a_contract_error():
    from fastrec.backends._contract import ContractError

    args, rating = joint_batch(np.float64, np.int64, 4, [8, 6, 3], batch=8, n_rating=5)
    with pytest.raises(ContractError, match="n_rating"):
        joint_passes(get_backend("numpy"), args, 4, rating)
