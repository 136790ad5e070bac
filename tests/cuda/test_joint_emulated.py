"""The joint model's rating term in the real csrc/cuda/ncf.cu, run in the CUDA-semantics
emulator through the backend's launchers: the backward pass and whole epochs (with the
non-negative projection) against the numpy reference, under several thread orders."""

from __future__ import annotations

import numpy as np
import pytest

from fastrec.backends.cuda import ncf
from fastrec.backends.reference import ncf as ref
from tests.cuda.ncf_helpers import emulated_getter, emulated_modules, epoch_problem, passes
from tests.cuda.ncf_helpers import random_batch as plain_batch
from tests.tolerances import tolerance


@pytest.fixture(scope="module")
def modules(emulator):
    return emulated_modules(emulator)


def with_bias(dtype, emb, rng):
    return np.hstack([emb, rng.normal(0, 0.3, (emb.shape[0], 1)).astype(dtype)])


@pytest.mark.parametrize("order", ("forward", "random"))
@pytest.mark.parametrize("dtype, index_dtype", [(np.float32, np.int32), (np.float64, np.int64)])
@pytest.mark.parametrize("n_gmf, layers, n_rating", [(4, [8, 6, 3], 4), (33, [70, 40], 33),
                                                     (33, [70, 40], 20), (5, [], 2)])
def test_joint_backward_matches_reference(modules, order, dtype, index_dtype, n_gmf, layers,
                                          n_rating):
    users, items, targets, user_emb, item_emb, dense, layers = plain_batch(
        dtype, index_dtype, n_gmf, layers, seed=n_gmf)
    rng = np.random.default_rng(1)
    user_emb, item_emb = with_bias(dtype, user_emb, rng), with_bias(dtype, item_emb, rng)
    ratings = rng.uniform(1, 5, users.shape[0]).astype(dtype)
    weights = np.where(rng.random(users.shape[0]) < 0.3, 0, 0.7).astype(dtype)
    shape = ncf.network_shape(layers, n_gmf, user_emb.shape[1])
    get_kernel = emulated_getter(modules, dtype, index_dtype, order, 3)

    def forward(u, i, ue, ie, d, lay, g, cache, logits):
        ncf.launch_ncf_forward(np, get_kernel, u, i, ue, ie, d, shape, cache, logits)

    def backward(u, i, t, ue, ie, d, lay, g, cache, logits, loss, dg, ug, ig):
        row_loss = np.full(u.shape[0], np.nan)
        ncf.launch_ncf_backward(np, get_kernel, u, i, t, ue, ie, d, shape, cache, logits, loss,
                                dg, ug, ig, row_loss,
                                ncf.Rating(ratings, weights, 3.1, 0.05, n_rating))
        return float(row_loss.sum())

    def ref_backward(*args):
        return ref.ncf_backward(*args, ratings=ratings, rating_weights=weights, rating_mean=3.1,
                                rating_reg=0.05, n_rating=n_rating)

    args = (users, items, targets, user_emb, item_emb, dense, layers, n_gmf, 0)
    got = passes(forward, backward, *args)
    expected = passes(ref.ncf_forward, ref_backward, *args)
    names = ("cache", "logits", "loss", "dense_grad", "user_grads", "item_grads")
    for name, g, e in zip(names, got, expected, strict=True):
        np.testing.assert_allclose(g, e, **tolerance(dtype), err_msg=name)


@pytest.mark.parametrize("optimizer, nonnegative, order, n_rating", [(0, True, "random", None),
                                                                     (1, False, "reverse", 3),
                                                                     (2, True, "forward", 2)])
def test_joint_epoch_matches_reference(modules, optimizer, nonnegative, order, n_rating):
    dtype, index_dtype, n_gmf = np.float64, np.int32, 4
    data, (user_emb, item_emb, dense, layers), state = epoch_problem(
        dtype, index_dtype, n_gmf, [8, 6, 3], seed=2)
    rng = np.random.default_rng(5)
    user_emb, item_emb = with_bias(dtype, user_emb, rng), with_bias(dtype, item_emb, rng)
    cols = n_gmf if n_rating is None else n_rating  # the rating term's (projected) columns
    if nonnegative:
        user_emb[:, :cols], item_emb[:, :cols] = (np.abs(user_emb[:, :cols]),
                                                  np.abs(item_emb[:, :cols]))
    ratings = rng.uniform(1, 5, data["pos_users"].shape[0]).astype(dtype)
    states = [np.full_like(a, 0.1) for a in (dense, dense, user_emb, user_emb, item_emb,
                                             item_emb)]
    arrays = [user_emb, item_emb, dense, *states]
    got, expected = [a.copy() for a in arrays], [a.copy() for a in arrays]
    row_loss = np.full(data["order"].shape[0], np.nan)
    scalars = (optimizer, 0.01, 0.9, 0.999, 1e-8 if optimizer == 0 else 1e-10, 3)
    ncf.launch_ncf_train_epoch(
        np, emulated_getter(modules, dtype, index_dtype, order, 1), *data.values(), 2, 5, 1,
        *got[:3], ncf.network_shape(layers, n_gmf, user_emb.shape[1]), 0, *scalars, *got[3:],
        16, row_loss, ratings, 0.6, 3.2, 0.05, n_rating, nonnegative)
    total = ref.ncf_train_epoch(*data.values(), 2, 5, 1, *expected[:3], layers, n_gmf, 0,
                                *scalars, *expected[3:], 16, ratings=ratings, rating_weight=0.6,
                                rating_mean=3.2, rating_reg=0.05, n_rating=n_rating,
                                nonnegative=nonnegative)
    np.testing.assert_allclose(row_loss.sum(), total, **tolerance(dtype))
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, **tolerance(dtype))
    if nonnegative:
        assert got[0][:, :cols].min() >= 0 and got[1][:, :cols].min() >= 0
        if cols < n_gmf:  # the network's own GMF columns stay signed
            assert got[0][:, cols:n_gmf].min() < 0 and got[1][:, cols:n_gmf].min() < 0
    assert not np.array_equal(got[0][:, -1], user_emb[:, -1])  # the biases learnt
