"""Helpers of the NCF and optimiser CUDA tests (emulated and on a device) and of the
AddressSanitizer script: the emulated modules, kernel getters and small random problems."""

from __future__ import annotations

import numpy as np

from fastrec._algorithms.ncf import OptimizerState, cache_size, epoch_order, init_params

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


class DeviceArray(np.ndarray):
    """A host array standing in for a CuPy array: its own memory, ``get(out=...)``."""

    def get(self, out=None):
        if out is None:
            return np.array(self)
        out[...] = self
        return out


class FakeCupy:
    """The CuPy calls the NCF and optimiser contract functions make, on host memory (so the
    public functions run in the emulator: device copies, kernel names, copy-back)."""

    @staticmethod
    def asarray(a):
        return a if isinstance(a, DeviceArray) else np.array(a).view(DeviceArray)

    def __getattr__(self, name):
        function = getattr(np, name)  # zeros, empty, empty_like, matmul, argsort, ...

        def wrapped(*args, **kwargs):
            out = function(*args, **kwargs)
            return out.view(DeviceArray) if isinstance(out, np.ndarray) else out

        return wrapped


def patch_cupy(monkeypatch, modules) -> None:
    """Replace CuPy by :class:`FakeCupy` and NVRTC by the emulated ``modules``."""
    import sys

    from fastrec.backends.cuda import _loader

    monkeypatch.setitem(sys.modules, "cupy", FakeCupy())
    monkeypatch.setattr(_loader, "get_function",
                        lambda source, expression: modules[source].get_function(expression))
