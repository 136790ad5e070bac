"""The real csrc/cuda/ncf.cu (and optim.cu, which the epoch uses) run in the CUDA-semantics
emulator through the backend's own launchers (scratch buffers, views, grid shapes, argument
packing), with numpy's matmul standing in for cuBLAS. Every pass is compared with the numpy
reference under forward, reverse and random thread orders, in float32 and float64 with int32 and
int64 indices; results must not depend on the thread order."""

from __future__ import annotations

import numpy as np
import pytest

from fastrec._algorithms.ncf import cache_size
from fastrec.backends._contract import ContractError
from fastrec.backends.cuda import ncf
from fastrec.backends.reference import ncf as ref
from tests.cuda.ncf_helpers import (
    NETS,
    emulated_getter,
    emulated_modules,
    epoch_problem,
    passes,
    patch_cupy,
    random_batch,
)
from tests.tolerances import tolerance

ORDERS = ("forward", "reverse", "random")
TYPES = [(np.float32, np.int32), (np.float64, np.int64)]


@pytest.fixture(scope="module")
def modules(emulator):
    return emulated_modules(emulator)


def emulated_passes(modules, order, seed=0):
    """(forward, backward) with the contract's signatures, running the launchers emulated."""

    def forward(users, items, user_emb, item_emb, dense, layers, n_gmf, cache, logits):
        get_kernel = emulated_getter(modules, dense.dtype, users.dtype, order, seed)
        ncf.launch_ncf_forward(np, get_kernel, users, items, user_emb, item_emb, dense,
                               ncf.network_shape(layers, n_gmf), cache, logits)

    def backward(users, items, targets, user_emb, item_emb, dense, layers, n_gmf, cache, logits,
                 loss, dense_grad, user_grads, item_grads):
        get_kernel = emulated_getter(modules, dense.dtype, users.dtype, order, seed)
        row_loss = np.full(users.shape[0], np.nan)
        ncf.launch_ncf_backward(np, get_kernel, users, items, targets, user_emb, item_emb, dense,
                                ncf.network_shape(layers, n_gmf), cache, logits, loss,
                                dense_grad, user_grads, item_grads, row_loss)
        return float(row_loss.sum())

    return forward, backward


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("dtype, index_dtype", TYPES)
@pytest.mark.parametrize("n_gmf, layers", NETS)
@pytest.mark.parametrize("loss", [0, 1])
def test_forward_backward_match_reference(modules, order, dtype, index_dtype, n_gmf, layers,
                                          loss):
    args = random_batch(dtype, index_dtype, n_gmf, layers, seed=n_gmf)
    expected = passes(ref.ncf_forward, ref.ncf_backward, *args, n_gmf, loss)
    got = passes(*emulated_passes(modules, order, seed=len(layers)), *args, n_gmf, loss)
    names = ("cache", "logits", "loss", "dense_grad", "user_grads", "item_grads")
    for name, g, e in zip(names, got, expected, strict=True):
        np.testing.assert_allclose(g, e, **tolerance(dtype), err_msg=name)


def test_passes_are_bitwise_independent_of_thread_order(modules):
    args = random_batch(np.float32, np.int32, 33, [70, 40], batch=45, seed=1)
    runs = [passes(*emulated_passes(modules, order, seed=5), *args, 33, 0) for order in ORDERS]
    for run in runs[1:]:
        for a, b in zip(run, runs[0], strict=True):
            np.testing.assert_array_equal(a, b)


def run_epoch(modules, data, net, state, scalars, order="forward", seed=0, batch_size=16):
    """One emulated epoch; returns (total, [user_emb, item_emb, dense, *states])."""
    user_emb, item_emb, dense, layers = net
    n_negatives, rng_seed, epoch, loss, optimizer, lr, beta1, beta2, eps, step = scalars
    got = [a.copy() for a in (user_emb, item_emb, dense, state.dense1, state.dense2, state.user1,
                              state.user2, state.item1, state.item2)]
    row_loss = np.full(data["order"].shape[0], np.nan)
    get_kernel = emulated_getter(modules, dense.dtype, data["pos_users"].dtype, order, seed)
    ncf.launch_ncf_train_epoch(np, get_kernel, *data.values(), n_negatives, rng_seed, epoch,
                               *got[:3], ncf.network_shape(layers, net_n_gmf(net)), loss,
                               optimizer, lr, beta1, beta2, eps, step, *got[3:], batch_size,
                               row_loss)
    return float(row_loss.sum()), got


def net_n_gmf(net):
    user_emb, _, _, layers = net
    return user_emb.shape[1] - (int(layers[0]) // 2 if layers.shape[0] else 0)


def reference_epoch(data, net, state, scalars, batch_size=16):
    user_emb, item_emb, dense, layers = net
    n_negatives, rng_seed, epoch, loss, optimizer, lr, beta1, beta2, eps, step = scalars
    expected = [a.copy() for a in (user_emb, item_emb, dense, state.dense1, state.dense2,
                                   state.user1, state.user2, state.item1, state.item2)]
    total = ref.ncf_train_epoch(*data.values(), n_negatives, rng_seed, epoch, *expected[:3],
                                layers, net_n_gmf(net), loss, optimizer, lr, beta1, beta2, eps,
                                step, *expected[3:], batch_size)
    return total, expected


EPOCH_CASES = [  # (n_gmf, layers, optimizer, loss, dtype, index dtype, thread order)
    (4, [8, 6, 3], 0, 0, np.float32, np.int32, "random"),
    (4, [8, 6, 3], 1, 1, np.float64, np.int64, "forward"),
    (4, [8, 6, 3], 2, 0, np.float64, np.int32, "reverse"),
    (0, [6, 4], 0, 0, np.float64, np.int64, "reverse"),
    (0, [6, 4], 1, 0, np.float32, np.int32, "random"),
    (5, [], 0, 1, np.float64, np.int32, "random"),
    (5, [], 2, 0, np.float32, np.int64, "forward"),
    (3, [4], 0, 0, np.float64, np.int64, "forward"),
    (3, [4], 1, 0, np.float32, np.int32, "reverse"),
    (33, [70, 40], 0, 0, np.float32, np.int64, "random"),
    (33, [70, 40], 2, 1, np.float64, np.int32, "random"),
]


@pytest.mark.parametrize("n_gmf, layers, optimizer, loss, dtype, index_dtype, order", EPOCH_CASES)
def test_train_epoch_matches_reference(modules, n_gmf, layers, optimizer, loss, dtype,
                                       index_dtype, order):
    data, net, state = epoch_problem(dtype, index_dtype, n_gmf, layers, seed=n_gmf)
    scalars = (2, 123, 4, loss, optimizer, 0.01, 0.9, 0.999, 1e-8, 5)
    total, got = run_epoch(modules, data, net, state, scalars, order, seed=7)
    total_ref, expected = reference_epoch(data, net, state, scalars)
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(total, total_ref, rtol=rtol)
    names = ("user_emb", "item_emb", "dense", "dense_state1", "dense_state2", "user_state1",
             "user_state2", "item_state1", "item_state2")
    for name, g, e in zip(names, got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=rtol * 10, atol=rtol / 10, err_msg=name)


def test_epoch_is_bitwise_independent_of_thread_order_and_repeats(modules):
    data, net, state = epoch_problem(np.float32, np.int32, 4, [8, 6, 3], seed=2)
    scalars = (2, 9, 1, 0, 0, 0.01, 0.9, 0.999, 1e-8, 0)
    runs = [run_epoch(modules, data, net, state, scalars, order, seed=seed)
            for order, seed in (("forward", 0), ("reverse", 0), ("random", 1), ("random", 2))]
    for total, arrays in runs[1:]:
        assert total == runs[0][0]
        for a, b in zip(arrays, runs[0][1], strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_negatives_are_the_reference_draws(modules, index_dtype):
    """The warp-parallel rejection draw takes the sequential rule's item, including a user who
    has seen every item but one (long rejection runs) and one who has seen them all (the 64th
    candidate is kept)."""
    n_items, n_negatives = 40, 5
    seen = [np.arange(n_items), np.delete(np.arange(n_items), 17), np.array([], np.int64),
            np.arange(0, n_items, 2)]
    pos_users = np.repeat(np.arange(4), 3).astype(index_dtype)
    pos_items = np.zeros(12, index_dtype)
    indptr = np.concatenate([[0], np.cumsum([s.shape[0] for s in seen])]).astype(np.int64)
    indices = np.concatenate(seen).astype(index_dtype)
    slots = np.arange(12 * (n_negatives + 1), dtype=np.int64)
    user_emb = np.zeros((4, 3))
    item_emb = np.zeros((n_items, 3))
    b_users = np.zeros(slots.shape[0], index_dtype)
    b_items = np.zeros_like(b_users)
    b_targets = np.zeros(slots.shape[0])
    gmf = np.zeros((slots.shape[0], 3))
    get_kernel = emulated_getter(modules, np.float64, index_dtype, "random", 4)
    get_kernel("ncf_sample_gather")(
        (3,), (256,),
        (pos_users, pos_items, np.ones(12), indptr, indices, slots, np.int64(slots.shape[0]),
         np.int64(n_negatives), np.uint64(2**63 + 5), np.int64(3), user_emb, item_emb,
         np.int64(n_items), np.int64(3), np.int64(0), np.int64(3), np.int32(0), np.ones(12),
         np.float64(0), b_users, b_items, b_targets, b_targets, b_targets, gmf, gmf))
    drawn = ref.draw_negatives(pos_users, indptr, indices, n_items, n_negatives, 2**63 + 5, 3)
    expected = np.concatenate([pos_items[:, None], drawn], axis=1).ravel()
    np.testing.assert_array_equal(b_items, expected)
    np.testing.assert_array_equal(b_users, np.repeat(pos_users, n_negatives + 1))
    assert (b_items[18:36].reshape(3, 6)[:, 1:] == 17).any()  # user 1's one unseen item
    np.testing.assert_array_equal(b_targets, np.tile([1.0] + [0.0] * n_negatives, 12))


def test_partial_last_batch_and_one_sample_batches(modules):
    data, net, state = epoch_problem(np.float64, np.int32, 4, [8, 6, 3], seed=3)
    scalars = (2, 1, 0, 0, 0, 0.01, 0.9, 0.999, 1e-8, 0)
    n = data["order"].shape[0]
    for batch_size in (n - 1, n + 5):
        total, got = run_epoch(modules, data, net, state, scalars, batch_size=batch_size)
        total_ref, expected = reference_epoch(data, net, state, scalars, batch_size=batch_size)
        np.testing.assert_allclose(total, total_ref, rtol=1e-10)
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-12)
    small = {**data, "order": data["order"][:5]}
    total, got = run_epoch(modules, small, net, state, scalars, batch_size=1)
    total_ref, expected = reference_epoch(small, net, state, scalars, batch_size=1)
    np.testing.assert_allclose(total, total_ref, rtol=1e-10)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-12)


def test_empty_batch_and_empty_epoch_are_no_ops(modules):
    users, items, targets, user_emb, item_emb, dense, layers = random_batch(
        np.float64, np.int32, 4, [8, 6, 3], batch=0)
    got = passes(*emulated_passes(modules, "forward"), users, items, targets, user_emb,
                 item_emb, dense, layers, 4, 0)
    assert got[2] == 0.0 and (got[3] == 0).all()
    data, net, state = epoch_problem(np.float64, np.int32, 4, [8, 6, 3])
    data = {**data, "order": data["order"][:0]}
    total, arrays = run_epoch(modules, data, net, state, (2, 1, 0, 0, 0, 0.01, 0.9, 0.999,
                                                          1e-8, 0))
    assert total == 0.0
    np.testing.assert_array_equal(arrays[2], net[2])


@pytest.mark.parametrize("dtype, index_dtype", TYPES)
def test_public_functions_copy_host_arrays_back(modules, monkeypatch, dtype, index_dtype):
    """``ncf_forward``, ``ncf_backward`` and ``ncf_train_epoch`` themselves (device copies,
    kernel names, copy-back into numpy arguments) with CuPy replaced by host arrays and NVRTC by
    the emulator."""
    from fastrec.backends import cuda

    patch_cupy(monkeypatch, modules)
    args = random_batch(dtype, index_dtype, 4, [8, 6, 3])
    expected = passes(ref.ncf_forward, ref.ncf_backward, *args, 4, 0)
    got = passes(cuda.ncf_forward, cuda.ncf_backward, *args, 4, 0)
    for g, e in zip(got, expected, strict=True):
        assert type(g) in (np.ndarray, float)
        np.testing.assert_allclose(g, e, **tolerance(dtype))

    data, net, state = epoch_problem(dtype, index_dtype, 4, [8, 6, 3], seed=1)
    scalars = (2, 123, 4, 0, 0, 0.01, 0.9, 0.999, 1e-8, 5)
    total_ref, expected = reference_epoch(data, net, state, scalars)
    got = [a.copy() for a in (*net[:3], state.dense1, state.dense2, state.user1, state.user2,
                              state.item1, state.item2)]
    total = cuda.ncf_train_epoch(*data.values(), 2, 123, 4, *got[:3], net[3], 4, 0, 0, 0.01,
                                 0.9, 0.999, 1e-8, 5, *got[3:], 16)
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(total, total_ref, rtol=rtol)
    for g, e in zip(got, expected, strict=True):
        assert type(g) is np.ndarray
        np.testing.assert_allclose(g, e, rtol=rtol * 10, atol=rtol / 10)


@pytest.mark.parametrize("change, message", [
    (lambda a: {**a, "dense": a["dense"][:-1].copy()}, "dense must have shape"),
    (lambda a: {**a, "items": a["items"].astype(np.int64)}, "items must have dtype"),
    (lambda a: {**a, "layers": np.array([7, 3])}, "even layers"),
    (lambda a: {**a, "users": a["users"] + 100}, "user index out of range"),
    (lambda a: {**a, "cache": a["cache"][:-1].copy()}, "cache must have shape"),
    (lambda a: {**a, "user_emb": np.asfortranarray(a["user_emb"])}, "C-contiguous"),
])
def test_contract_errors_need_no_device(change, message):
    from fastrec.backends.cuda import ncf_forward

    users, items, _, user_emb, item_emb, dense, layers = random_batch(np.float64, np.int32, 4,
                                                                      [8, 6, 3], batch=10)
    args = {"users": users, "items": items, "user_emb": user_emb, "item_emb": item_emb,
            "dense": dense, "layers": layers, "n_gmf": 4,
            "cache": np.zeros(cache_size(10, layers, 4)), "logits": np.zeros(10)}
    with pytest.raises(ContractError, match=message):
        ncf_forward(**change(args))


def test_ncf_is_clean_under_address_and_undefined_behaviour_sanitizers(emulator):
    from tests.cuda.ncf_helpers import run_asan_script

    result = run_asan_script(emulator, "ncf")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "AddressSanitizer" not in result.stderr
    assert "asan run finished" in result.stdout


def test_the_tile_barrier_is_needed_and_caught(emulator, tmp_path):
    """ncf.cu with the column reduction's __syncthreads removed: thread (x, 0) then reads
    partial sums other threads have not written (the emulator's shared memory is garbage), and
    the comparison catches it. The check has teeth."""
    from fastrec.backends.cuda import _loader

    source = _loader.kernel_path("ncf").read_text()
    barrier = "  partial[threadIdx.y][threadIdx.x] = sum;\n  __syncthreads();\n"
    assert barrier in source
    mutated = tmp_path / "ncf_no_barrier.cu"
    mutated.write_text(source.replace(barrier, "  partial[threadIdx.y][threadIdx.x] = sum;\n"))
    expressions = tuple(f"fastrec::cuda::{name}<double>"
                        for name in ("ncf_relu_bias_grad", "ncf_column_sums"))
    module = emulator.EmulatedModule(mutated, _loader.compile_options(), expressions)
    rng = np.random.default_rng(0)
    y = rng.normal(size=(50, 40))
    expected = np.where(y > 0, 1.0, 0.0).sum(axis=0)
    mismatches = 0
    for order in ORDERS:
        dy, grad_b = np.ones_like(y), np.zeros(40)
        partial = np.zeros(ncf.n_chunks(50) * 40)

        def get_kernel(name, order=order):
            return module.get_function(f"fastrec::cuda::{name}<double>", order=order, seed=1)

        ncf._column_sums(get_kernel, "ncf_relu_bias_grad", (dy, y, np.int64(50), np.int64(40)),
                         50, grad_b, partial)
        mismatches += not np.allclose(grad_b, expected)
    assert mismatches > 0
