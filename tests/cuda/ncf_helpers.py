"""Helpers of the NCF and optimiser CUDA tests (emulated and on a device) and of the
AddressSanitizer script: the emulated modules, kernel getters and small random problems."""

from __future__ import annotations

import numpy as np

from fastrec._algorithms.ncf import OptimizerState, cache_size, epoch_order, init_params
from fastrec.backends._contract import OPT_ADAGRAD, OPT_ADAM
from tests.cuda import helpers

# (n_gmf, layers): NeuMF, MLP, GMF, NeuMF without hidden layers, widths past a warp / a tile
NETS = [(4, [8, 6, 3]), (0, [6, 4]), (5, []), (3, [4]), (33, [70, 40])]


def emulated_modules(emulator, asan=False) -> dict:
    """``csrc/cuda/ncf.cu`` and ``optim.cu`` built in the emulator with the loader's options."""
    from fastrec.backends.cuda import _loader

    return {name: emulator.EmulatedModule(_loader.kernel_path(name), _loader.compile_options(),
                                          _loader.NAME_EXPRESSIONS[name], asan=asan)
            for name in ("ncf", "optim")}


def emulated_getter(modules, dtype, index_dtype, order="forward", seed=0):
    """``get_kernel(name)`` for the NCF and optimiser launchers: the emulated kernels for the
    dtypes, run in thread order ``order``."""
    from fastrec.backends.cuda import ncf

    def get_kernel(name):
        return modules[ncf.kernel_source(name)].get_function(
            ncf.kernel_expression(name, dtype, index_dtype), order=order, seed=seed)

    return get_kernel


def random_net(n_gmf, layers, dtype, n_users=20, n_items=30, seed=0):
    """(user_emb, item_emb, dense, layers int64) with non-zero biases."""
    rng = np.random.default_rng(seed)
    layers = np.array(layers, np.int64)
    user_emb, item_emb, dense = init_params(n_users, n_items, n_gmf, layers, dtype, rng, 0.5)
    dense += rng.normal(0, 0.1, dense.shape).astype(dtype)
    return user_emb, item_emb, dense, layers


def random_batch(dtype, index_dtype, n_gmf, layers, batch=40, seed=0):
    """(users, items, targets, user_emb, item_emb, dense, layers)."""
    rng = np.random.default_rng(seed + 100)
    user_emb, item_emb, dense, layers = random_net(n_gmf, layers, dtype, seed=seed)
    users = rng.integers(0, user_emb.shape[0], batch).astype(index_dtype)
    items = rng.integers(0, item_emb.shape[0], batch).astype(index_dtype)
    targets = rng.integers(0, 2, batch).astype(dtype)
    return users, items, targets, user_emb, item_emb, dense, layers


def passes(forward, backward, users, items, targets, user_emb, item_emb, dense, layers, n_gmf,
           loss):
    """Forward then backward through callables with the contract's signatures; returns
    (cache, logits, total, dense_grad, user_grads, item_grads)."""
    dtype = dense.dtype
    batch = users.shape[0]
    cache = np.zeros(cache_size(batch, layers, n_gmf), dtype)
    logits = np.zeros(batch, dtype)
    forward(users, items, user_emb, item_emb, dense, layers, n_gmf, cache, logits)
    dense_grad = np.full_like(dense, np.nan)
    user_grads = np.full((batch, user_emb.shape[1]), np.nan, dtype)
    item_grads = np.full_like(user_grads, np.nan)
    total = backward(users, items, targets, user_emb, item_emb, dense, layers, n_gmf, cache,
                     logits, loss, dense_grad, user_grads, item_grads)
    return cache, logits, total, dense_grad, user_grads, item_grads


def epoch_problem(dtype, index_dtype, n_gmf, layers, n_users=12, n_items=15, per_user=4,
                  n_negatives=2, seed=0):
    """The arguments of ``ncf_train_epoch`` before the scalars, as a dict, plus the state."""
    rng = np.random.default_rng(seed)
    user_emb, item_emb, dense, layers = random_net(n_gmf, layers, dtype, n_users, n_items, seed)
    users, items = [], []
    for u in range(n_users):
        chosen = np.sort(rng.choice(n_items, per_user if u else n_items - 1, replace=False))
        users += [u] * chosen.shape[0]  # user 0 has seen all but one item: long rejections
        items += chosen.tolist()
    users = np.array(users, index_dtype)
    items = np.array(items, index_dtype)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=n_users))])
    data = {"pos_users": users, "pos_items": items,
            "pos_targets": rng.uniform(0.5, 1.0, users.shape[0]).astype(dtype),
            "seen_indptr": indptr.astype(np.int64), "seen_indices": items.copy(),
            "order": epoch_order(users.shape[0], n_negatives, rng)}
    state = OptimizerState.zeros(user_emb, item_emb, dense, 0.1)
    return data, (user_emb, item_emb, dense, layers), state


def patch_cupy(monkeypatch, modules) -> None:
    """Replace CuPy by the host stand-in and NVRTC by the emulated ``modules``."""
    helpers.patch_cupy(monkeypatch,
                       lambda source, expression: modules[source].get_function(expression))


def run_ncf_under_sanitizers(emulator) -> None:
    """NCF passes and epochs of several shapes in the sanitized build, against the reference
    (run by asan_run.py in a process with libasan preloaded)."""
    from fastrec.backends.cuda import ncf
    from fastrec.backends.reference import ncf as ref

    modules = emulated_modules(emulator, asan=True)
    cases = zip(NETS, ((np.float64, np.int32), (np.float32, np.int64)) * 3,
                ("forward", "reverse", "random") * 2, strict=False)
    for (n_gmf, layers), (dtype, index_dtype), order in cases:
        get_kernel = emulated_getter(modules, dtype, index_dtype, order, 7)
        args = random_batch(dtype, index_dtype, n_gmf, layers, batch=37)
        shape = ncf.network_shape(args[-1], n_gmf)

        def forward(u, i, ue, ie, dense, layers, g, cache, logits, get_kernel=get_kernel,
                    shape=shape):
            ncf.launch_ncf_forward(np, get_kernel, u, i, ue, ie, dense, shape, cache, logits)

        def backward(u, i, t, ue, ie, dense, layers, g, cache, logits, loss, dg, ug, ig,
                     get_kernel=get_kernel, shape=shape):
            row_loss = np.zeros(u.shape[0])
            ncf.launch_ncf_backward(np, get_kernel, u, i, t, ue, ie, dense, shape, cache,
                                    logits, loss, dg, ug, ig, row_loss)
            return float(row_loss.sum())

        got = passes(forward, backward, *args, n_gmf, 0)
        expected = passes(ref.ncf_forward, ref.ncf_backward, *args, n_gmf, 0)
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_allclose(g, e, rtol=2e-4, atol=2e-6)

        if n_gmf not in (4, 33):  # epochs are slow under the sanitizers: two networks
            continue
        data, (user_emb, item_emb, dense, layers), state = epoch_problem(
            dtype, index_dtype, n_gmf, layers, n_users=5, n_items=9, per_user=3, seed=n_gmf)
        arrays = [user_emb, item_emb, dense, state.dense1, state.dense2, state.user1,
                  state.user2, state.item1, state.item2]
        got, expected = [a.copy() for a in arrays], [a.copy() for a in arrays]
        row_loss = np.zeros(data["order"].shape[0])
        ncf.launch_ncf_train_epoch(np, get_kernel, *data.values(), 2, 5, 1, *got[:3], shape, 0,
                                   0, 0.01, 0.9, 0.999, 1e-8, 0, *got[3:], 16, row_loss)
        ref.ncf_train_epoch(*data.values(), 2, 5, 1, *expected[:3], layers, n_gmf, 0, 0, 0.01,
                            0.9, 0.999, 1e-8, 0, *expected[3:], 16)
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-5)


def run_optim_under_sanitizers(emulator) -> None:
    """Dense and sparse optimiser steps in the sanitized build, against the reference."""
    from fastrec.backends.cuda import optim
    from fastrec.backends.reference import optim as ref

    modules = emulated_modules(emulator, asan=True)
    rng = np.random.default_rng(0)
    for dtype, index_dtype, d, order in ((np.float64, np.int32, 33, "random"),
                                         (np.float32, np.int64, 3, "reverse")):
        get_kernel = emulated_getter(modules, dtype, index_dtype, order, 3)
        params, grads = rng.normal(size=(2, 77)).astype(dtype)
        m, v = rng.uniform(0.01, 0.1, (2, 77)).astype(dtype)
        got, expected = [params.copy(), m.copy(), v.copy()], [params.copy(), m.copy(), v.copy()]
        optim.launch_dense_step(get_kernel, OPT_ADAM, *got[:1], grads, *got[1:], 0.01,
                                0.9, 0.999, 1e-8, 2)
        ref.adam_step(expected[0], grads, expected[1], expected[2], 2, 0.01)
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-5)
        table = rng.normal(size=(20, d)).astype(dtype)
        rows = rng.integers(0, 20, 45).astype(index_dtype)
        row_grads = rng.normal(size=(45, d)).astype(dtype)
        s1, s2 = rng.uniform(0.01, 0.1, (2, 20, d)).astype(dtype)
        got, expected = [table.copy(), s1.copy(), s2.copy()], [table.copy(), s1.copy(), s2.copy()]
        optim.launch_sparse_step(np, get_kernel, OPT_ADAM, got[0], rows, row_grads, got[1],
                                 got[2], 0.01, 0.9, 0.999, 1e-8, 3)
        ref.sparse_adam_step(expected[0], rows, row_grads, expected[1], expected[2], 3, 0.01)
        optim.launch_sparse_step(np, get_kernel, OPT_ADAGRAD, got[0], rows, row_grads,
                                 got[1], got[1], 0.05, 0.0, 0.0, 1e-10, 1)
        ref.sparse_adagrad_step(expected[0], rows, row_grads, expected[1], 0.05, 1e-10)
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-5)


def run_asan_script(emulator, what: str):
    """``asan_run.py what`` over the sanitized NCF and optimiser modules (skips without
    libasan)."""
    from tests.cuda.helpers import run_under_asan

    return run_under_asan(emulator, "asan_run.py", what, kernels=("ncf", "optim"))
