"""The CUDA NCF passes and optimiser steps on a real device (marked ``gpu``; skipped with the
reason where there is none): kernel level against the reference, in place on CuPy arrays,
deterministic, and the GMF / MLP / NeuMF estimators with ``backend="cuda"`` (fitted arrays left on
the device). Plus the part that needs no device: the models' error when CUDA is unavailable."""

from __future__ import annotations

import numpy as np
import pytest

from fastrec.backends.reference import ncf as ref
from fastrec.backends.reference import optim as ref_optim
from tests.cuda.ncf_helpers import NETS, epoch_problem, passes, random_batch
from tests.tolerances import tolerance

CUDA_KERNELS = ("ncf_forward", "ncf_backward", "ncf_train_epoch", "adam_step", "sparse_adam_step",
           "sparse_adagrad_step")


def _epoch_arrays(net, state):
    return [a.copy() for a in (*net[:3], state.dense1, state.dense2, state.user1, state.user2,
                               state.item1, state.item2)]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, index_dtype", [(np.float32, np.int32), (np.float64, np.int64)])
@pytest.mark.parametrize("n_gmf, layers", NETS)
@pytest.mark.parametrize("loss", [0, 1])
def test_forward_backward_match_reference(cuda_backend, dtype, index_dtype, n_gmf, layers,
                                          loss):
    args = random_batch(dtype, index_dtype, n_gmf, layers, batch=3000, seed=n_gmf)
    expected = passes(ref.ncf_forward, ref.ncf_backward, *args, n_gmf, loss)
    got = passes(cuda_backend.ncf_forward, cuda_backend.ncf_backward, *args, n_gmf, loss)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, **tolerance(dtype, "device"))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, index_dtype", [(np.float32, np.int64), (np.float64, np.int32)])
@pytest.mark.parametrize("optimizer", [0, 1, 2])
@pytest.mark.parametrize("n_gmf, layers", NETS)
def test_train_epoch_matches_reference(cuda_backend, dtype, index_dtype, optimizer, n_gmf,
                                       layers):
    data, net, state = epoch_problem(dtype, index_dtype, n_gmf, layers, n_users=60, n_items=80,
                                     per_user=10, n_negatives=4, seed=n_gmf)
    scalars = (4, 77, 2, 0, optimizer, 0.01, 0.9, 0.999, 1e-8, 3)
    got, expected = _epoch_arrays(net, state), _epoch_arrays(net, state)
    total = cuda_backend.ncf_train_epoch(*data.values(), *scalars[:3], *got[:3], net[3], n_gmf,
                                         *scalars[3:], *got[3:], 64)
    total_ref = ref.ncf_train_epoch(*data.values(), *scalars[:3], *expected[:3], net[3], n_gmf,
                                    *scalars[3:], *expected[3:], 64)
    np.testing.assert_allclose(total, total_ref, rtol=tolerance(dtype, "device")["rtol"])
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=tolerance(dtype, "device")["rtol"] * 10,
                                   atol=tolerance(dtype, "device", 10)["atol"])


@pytest.mark.gpu
def test_cupy_arrays_are_updated_in_place_and_epochs_repeat_bitwise(cuda_backend):
    import cupy

    data, net, state = epoch_problem(np.float32, np.int32, 8, [32, 16, 8], n_users=200,
                                     n_items=300, per_user=20, n_negatives=4)
    device_data = [cupy.asarray(a) for a in data.values()]
    runs = []
    for _ in range(2):
        arrays = [cupy.asarray(a) for a in _epoch_arrays(net, state)]
        pointers = [a.data.ptr for a in arrays]
        total = cuda_backend.ncf_train_epoch(*device_data, 4, 5, 0, *arrays[:3], net[3], 8, 0, 0,
                                             0.001, 0.9, 0.999, 1e-8, 0, *arrays[3:], 256)
        assert [a.data.ptr for a in arrays] == pointers
        runs.append((total, [a.get() for a in arrays]))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1], strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(runs[0][1][2], net[2])


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_optimizer_steps_match_reference(cuda_backend, dtype):
    rng = np.random.default_rng(0)
    params, grads = rng.normal(size=(2, 5000)).astype(dtype)
    m, v = rng.uniform(0.01, 0.1, (2, 5000)).astype(dtype)
    got, expected = [params.copy(), m.copy(), v.copy()], [params.copy(), m.copy(), v.copy()]
    cuda_backend.adam_step(got[0], grads, got[1], got[2], 3, 0.01)
    ref_optim.adam_step(expected[0], grads, expected[1], expected[2], 3, 0.01)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, **tolerance(dtype, "device"))
    table = rng.normal(size=(500, 37)).astype(dtype)
    rows = rng.integers(0, 200, 3000).astype(np.int32)
    row_grads = rng.normal(size=(3000, 37)).astype(dtype)
    s1, s2 = rng.uniform(0.01, 0.1, (2, 500, 37)).astype(dtype)
    got, expected = [table.copy(), s1.copy(), s2.copy()], [table.copy(), s1.copy(), s2.copy()]
    cuda_backend.sparse_adam_step(got[0], rows, row_grads, got[1], got[2], 4, 0.01)
    ref_optim.sparse_adam_step(expected[0], rows, row_grads, expected[1], expected[2], 4, 0.01)
    cuda_backend.sparse_adagrad_step(got[0], rows, row_grads, got[1], 0.05)
    ref_optim.sparse_adagrad_step(expected[0], rows, row_grads, expected[1], 0.05)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, **tolerance(dtype, "device"))


@pytest.mark.gpu
def test_sparse_steps_bitwise_equal_to_cython(cuda_backend):
    """The row's gradients summed in position order by one warp, no FMA contraction: the GPU
    reproduces the CPU kernel bit for bit in float64."""
    from tests.conftest import backend_or_skip

    cython = backend_or_skip("cython", "sparse_adam_step")
    rng = np.random.default_rng(1)
    table = rng.normal(size=(400, 50))
    rows = rng.integers(0, 100, 2000).astype(np.int64)
    row_grads = rng.normal(size=(2000, 50))
    s1, s2 = rng.uniform(0.01, 0.1, (2, 400, 50))
    got, expected = [table.copy(), s1.copy(), s2.copy()], [table.copy(), s1.copy(), s2.copy()]
    cuda_backend.sparse_adam_step(got[0], rows, row_grads, got[1], got[2], 2, 0.01)
    cython.sparse_adam_step(expected[0], rows, row_grads, expected[1], expected[2], 2, 0.01)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g, e)


@pytest.mark.gpu
@pytest.mark.parametrize("cls_name", ["GMF", "MLP", "NeuMF"])
def test_models_with_backend_cuda(cuda_backend, cls_name):
    """float64: the same model as the reference backend (same samples, same negatives); float32:
    learns the planted structure as well as the CPU backends do."""
    import fastrec
    from fastrec.evaluation import SampledRanking, evaluate_sampled, leave_last_out
    from tests.ncf._data import clustered_implicit

    cls = getattr(fastrec, cls_name)
    kw = dict(n_epochs=8, learning_rate=0.01, batch_size=64, random_state=0)
    if cls_name != "GMF":
        kw["layers"] = (16, 8)
    if cls_name == "MLP":
        kw["init_std"] = 0.1
    train, test = leave_last_out(clustered_implicit())
    model = cls(backend="cuda", dtype="float64", **{**kw, "n_epochs": 2}).fit(train)
    expected = cls(backend="numpy", dtype="float64", **{**kw, "n_epochs": 2}).fit(train)
    assert model.backend_ == "cuda"
    host = model.to_numpy()
    for name in ("user_embeddings_", "item_embeddings_", "dense_"):
        np.testing.assert_allclose(getattr(host, name), getattr(expected, name), rtol=1e-7,
                                   atol=1e-10, err_msg=name)
    model = cls(backend="cuda", **kw).fit(train)
    ranking = SampledRanking.build(train, test, 50, seed=0)
    assert evaluate_sampled(model, ranking)["hr@10"] >= 0.7
    assert model.loss_curve_[-1] < model.loss_curve_[0]
