"""NCF forward/backward/epoch kernels of every backend against the numpy reference, and the
reference's backward pass against finite differences."""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose

from fastrec._algorithms.ncf import OptimizerState, cache_size, epoch_order, init_params
from fastrec._algorithms.sampling import draw_negatives
from fastrec.backends import get_backend
from fastrec.backends._contract import ContractError, check_ncf_batch, check_ncf_net
from tests.conftest import backend_or_skip
from tests.tolerances import tolerance

BACKENDS = ("numpy", "cython", "numba")
# (n_gmf, layers): NeuMF, MLP, GMF, NeuMF without hidden layers
NETS = [(4, [8, 6, 3]), (0, [6, 4]), (5, []), (3, [4])]


def random_batch(dtype, index_dtype, n_gmf, layers, batch=150, seed=0):
    rng = np.random.default_rng(seed)
    layers = np.array(layers, np.int64)
    user_emb, item_emb, dense = init_params(20, 30, n_gmf, layers, dtype, rng, 0.5)
    dense += rng.normal(0, 0.1, dense.shape).astype(dtype)  # non-zero biases
    users = rng.integers(0, 20, batch).astype(index_dtype)
    items = rng.integers(0, 30, batch).astype(index_dtype)
    targets = rng.integers(0, 2, batch).astype(dtype)
    return users, items, targets, user_emb, item_emb, dense, layers


def run_passes(kernels, users, items, targets, user_emb, item_emb, dense, layers, n_gmf, loss,
               n_threads=2):
    dtype = dense.dtype
    batch = users.shape[0]
    cache = np.zeros(cache_size(batch, layers, n_gmf), dtype)
    logits = np.zeros(batch, dtype)
    kernels.ncf_forward(users, items, user_emb, item_emb, dense, layers, n_gmf, cache, logits,
                        n_threads)
    dense_grad = np.zeros_like(dense)
    user_grads = np.zeros((batch, user_emb.shape[1]), dtype)
    item_grads = np.zeros_like(user_grads)
    total = kernels.ncf_backward(users, items, targets, user_emb, item_emb, dense, layers, n_gmf,
                                 cache, logits, loss, dense_grad, user_grads, item_grads,
                                 n_threads)
    return logits, total, dense_grad, user_grads, item_grads


@pytest.mark.parametrize("name", BACKENDS[1:])
@pytest.mark.parametrize("dtype,index_dtype", [(np.float32, np.int32), (np.float64, np.int64)])
@pytest.mark.parametrize("n_gmf,layers", NETS)
@pytest.mark.parametrize("loss", [0, 1])
def test_forward_backward_match_reference(name, dtype, index_dtype, n_gmf, layers, loss):
    backend = backend_or_skip(name, "ncf_forward", "ncf_backward")
    args = random_batch(dtype, index_dtype, n_gmf, layers)
    users, items, targets, user_emb, item_emb, dense, layers = args
    expected = run_passes(get_backend("numpy"), users, items, targets, user_emb, item_emb, dense,
                          layers, n_gmf, loss)
    got = run_passes(backend, users, items, targets, user_emb, item_emb, dense, layers, n_gmf,
                     loss)
    for e, g in zip(expected, got, strict=True):
        assert_allclose(g, e, **tolerance(dtype))


@pytest.mark.parametrize("n_gmf,layers", NETS)
@pytest.mark.parametrize("loss", [0, 1])
def test_reference_backward_matches_finite_differences(n_gmf, layers, loss):
    users, items, targets, user_emb, item_emb, dense, layers = random_batch(
        np.float64, np.int64, n_gmf, layers, batch=12, seed=3)
    targets = targets * 0.8 + 0.1  # soft labels exercise the whole BCE formula
    kernels = get_backend("numpy")
    _, _, dense_grad, user_grads, item_grads = run_passes(kernels, users, items, targets,
                                                          user_emb, item_emb, dense, layers,
                                                          n_gmf, loss)

    def mean_loss(u_emb, i_emb, d):
        return run_passes(kernels, users, items, targets, u_emb, i_emb, d, layers, n_gmf,
                          loss)[1] / users.shape[0]

    assert_finite_differences(mean_loss, users, items, user_emb, item_emb, dense, dense_grad,
                              user_grads, item_grads)


def assert_finite_differences(mean_loss, users, items, user_emb, item_emb, dense, dense_grad,
                              user_grads, item_grads, h=1e-6):
    """Central differences of ``mean_loss(user_emb, item_emb, dense)`` equal the analytic
    gradients: every dense weight, and every column of a few embedding rows, whose gradient is
    the sum over the batch positions that use the row."""
    for j in range(dense.shape[0]):
        plus, minus = dense.copy(), dense.copy()
        plus[j] += h
        minus[j] -= h
        numeric = mean_loss(user_emb, item_emb, plus) - mean_loss(user_emb, item_emb, minus)
        assert numeric / (2 * h) == pytest.approx(dense_grad[j], rel=1e-5, abs=1e-8)
    for is_user, table, rows, grads in ((True, user_emb, users, user_grads),
                                        (False, item_emb, items, item_grads)):
        expected = np.zeros_like(table)
        np.add.at(expected, rows, grads)
        for row in np.unique(rows)[:4]:
            for col in range(table.shape[1]):
                plus, minus = table.copy(), table.copy()
                plus[row, col] += h
                minus[row, col] -= h
                if is_user:
                    numeric = mean_loss(plus, item_emb, dense) - mean_loss(minus, item_emb, dense)
                else:
                    numeric = mean_loss(user_emb, plus, dense) - mean_loss(user_emb, minus, dense)
                assert numeric / (2 * h) == pytest.approx(expected[row, col], rel=1e-5,
                                                          abs=1e-8)


def implicit_problem(index_dtype, seed=0):
    rng = np.random.default_rng(seed)
    n_users, n_items = 40, 60
    pairs = np.unique(rng.integers(0, n_users * n_items, 300))
    users = (pairs // n_items).astype(index_dtype)
    items = (pairs % n_items).astype(index_dtype)
    seen = sp.csr_matrix((np.ones(pairs.shape[0]), (users, items)), shape=(n_users, n_items))
    seen.sort_indices()
    return (users, items, seen.indptr.astype(np.int64), seen.indices.astype(index_dtype),
            n_users, n_items)


def run_epochs(kernels, dtype, index_dtype, n_gmf, layers, optimizer, n_threads, n_epochs=2,
               loss=0):
    users, items, indptr, indices, n_users, n_items = implicit_problem(index_dtype)
    layers = np.array(layers, np.int64)
    user_emb, item_emb, dense = init_params(n_users, n_items, n_gmf, layers, dtype,
                                            np.random.default_rng(1), 0.3)
    state = OptimizerState.zeros(user_emb, item_emb, dense, 0.1 if optimizer == 1 else 0.0)
    targets = np.ones(users.shape[0], dtype)
    losses = []
    for epoch in range(n_epochs):
        order = epoch_order(users.shape[0], 3, np.random.default_rng(epoch))
        losses.append(kernels.ncf_train_epoch(
            users, items, targets, indptr, indices, order, 3, 7, epoch, user_emb, item_emb,
            dense, layers, n_gmf, loss, optimizer, 0.01, 0.9, 0.999,
            1e-8 if optimizer == 0 else 1e-10, epoch * 100, state.dense1, state.dense2,
            state.user1, state.user2, state.item1, state.item2, 37, n_threads))
    return np.array(losses), user_emb, item_emb, dense


@pytest.mark.parametrize("name", BACKENDS[1:])
@pytest.mark.parametrize("optimizer", [0, 1, 2])
@pytest.mark.parametrize("dtype,index_dtype", [(np.float32, np.int32), (np.float64, np.int64)])
def test_train_epoch_matches_reference(name, optimizer, dtype, index_dtype):
    """Same negatives (counter RNG), same batches, same steps: the models agree to rounding."""
    backend = backend_or_skip(name, "ncf_train_epoch")
    expected = run_epochs(get_backend("numpy"), dtype, index_dtype, 4, [8, 6, 3], optimizer, 1)
    got = run_epochs(backend, dtype, index_dtype, 4, [8, 6, 3], optimizer, 2)
    for e, g in zip(expected, got, strict=True):
        assert_allclose(g, e, **tolerance(dtype))


@pytest.mark.parametrize("name", BACKENDS[1:])
def test_train_epoch_independent_of_threads(name):
    backend = backend_or_skip(name, "ncf_train_epoch")
    one = run_epochs(backend, np.float32, np.int32, 4, [8, 6, 3], 0, 1)
    two = run_epochs(backend, np.float32, np.int32, 4, [8, 6, 3], 0, 2)
    for a, b in zip(one, two, strict=True):
        assert_allclose(a, b, rtol=0, atol=0)


def test_negatives_are_unseen_and_uniform():
    users, items, indptr, indices, n_users, n_items = implicit_problem(np.int64)
    negatives = draw_negatives(users, indptr, indices, n_items, 50, 3, 0)
    seen = set(zip(users.tolist(), items.tolist(), strict=True))
    drawn = [(int(u), int(i)) for u, row in zip(users, negatives, strict=True) for i in row]
    assert not any(pair in seen for pair in drawn)
    counts = np.bincount(negatives.ravel(), minlength=n_items)
    assert counts.min() > 0.5 * counts.mean() and counts.max() < 1.5 * counts.mean()
    other_epoch = draw_negatives(users, indptr, indices, n_items, 50, 3, 1)
    assert np.mean(other_epoch == negatives) < 0.1


def test_contract_checks():
    users, items, _, user_emb, item_emb, dense, layers = random_batch(np.float32, np.int32, 4,
                                                                      [8, 6, 3])
    check_ncf_net(user_emb, item_emb, dense, layers, 4)
    check_ncf_batch(users, items, user_emb, item_emb)
    with pytest.raises(ContractError, match="shape|columns"):
        check_ncf_net(user_emb, item_emb, dense, layers, 3)
    with pytest.raises(ContractError, match="shape"):
        check_ncf_net(user_emb, item_emb, dense[:-1], layers, 4)
    with pytest.raises(ContractError, match="even"):
        check_ncf_net(user_emb, item_emb, dense, np.array([7, 3], np.int64), 4)
    with pytest.raises(ContractError, match="out of range"):
        check_ncf_batch(users, items + 100, user_emb, item_emb)
    with pytest.raises(ContractError, match="dtype"):
        check_ncf_batch(users, items.astype(np.int64), user_emb, item_emb)
