"""CUDA NCF throughput (samples per second) in the same groups as bench_ncf.py, plus the
forward and backward passes and the optimiser steps on their own.

    python -m pytest benchmarks/bench_cuda_ncf.py --benchmark-group-by=group \
        --benchmark-json=benchmarks/results/cuda_ncf.json

Arrays stay on the device (CuPy, zero-copy); one warm-up round keeps NVRTC's first-use compile
out of the timings, and every timed call ends with a device synchronisation. The NCF groups are
bench_ncf.py's (a 50 000-sample epoch slice of GMF, MLP [64,32,16,8] and NeuMF at batch 256 and
2048; its group names carry FASTREC_BENCH_THREADS, which the GPU ignores). The pass groups
(``ncf-forward-*``, ``ncf-backward-*``) time one mini-batch of random pairs through the same
networks with MovieLens-1M's table sizes, with a Cython row (float32, FASTREC_BENCH_THREADS) for
the ratio. Skipped, with the reason, where no device is usable (the Cython rows too).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import cuda_backend, cuda_or_cpu_row  # benchmarks/
from ncf_report import CONFIGS, N_NEG, Problem, load_split  # benchmarks/

from fastrec._algorithms.ncf import OptimizerState, init_params

THREADS = int(os.environ.get("FASTREC_BENCH_THREADS", "2"))  # group names, Cython rows
SAMPLES = 50_000
ML1M_USERS, ML1M_ITEMS = 6040, 3706
ROWS = [("cuda", np.float32), ("cuda", np.float64), ("cython", np.float32)]
ROW_IDS = ["cuda-float32", "cuda-float64", "cython-float32"]


@pytest.fixture(scope="module")
def problem():
    cuda_backend()  # skip before loading the data
    train, _, _ = load_split()
    return Problem(train, SAMPLES)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [256, 2048])
@pytest.mark.parametrize("model", list(CONFIGS))
def test_cuda_ncf_train_throughput(benchmark, problem, model, batch, dtype):
    backend = cuda_backend()
    import cupy

    n_gmf, layers = CONFIGS[model]
    layers = np.array(layers, np.int64)
    benchmark.group = f"ncf-train-{model}-batch{batch}-{THREADS}threads"
    benchmark.name = f"cuda {np.dtype(dtype).name}"
    user_emb, item_emb, dense = init_params(problem.train.n_users, problem.train.n_items, n_gmf,
                                            layers, dtype, np.random.default_rng(0))
    state = OptimizerState.zeros(user_emb, item_emb, dense)
    data = [cupy.asarray(a) for a in (problem.users, problem.items,
                                      np.ones(problem.users.shape[0], dtype), problem.indptr,
                                      problem.indices, problem.order)]
    params = [cupy.asarray(a) for a in (user_emb, item_emb, dense)]
    states = [cupy.asarray(a) for a in (state.dense1, state.dense2, state.user1, state.user2,
                                        state.item1, state.item2)]

    def run():
        total = backend.ncf_train_epoch(*data, N_NEG, problem.seed, problem.epoch, *params,
                                        layers, n_gmf, 0, 0, 1e-3, 0.9, 0.999, 1e-8, 0, *states,
                                        batch)
        cupy.cuda.Device().synchronize()
        return total

    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info["samples_per_s"] = SAMPLES / benchmark.stats.stats.median
    benchmark.extra_info["device"] = backend.details.get("device", "")


SPARSE_CASES = [(10_000, 64, 4096), (100_000, 32, 65_536)]


def _sparse_step_setup(benchmark, group, n_rows, d, batch, dtype):
    """The cuda backend, cupy and a device table with a batch of Zipf-distributed rows (many
    duplicates) and their gradients; names the benchmark's group and row."""
    backend = cuda_backend()
    import cupy

    benchmark.group = f"{group} n_rows={n_rows} d={d} batch={batch}"
    benchmark.name = f"cuda {np.dtype(dtype).name}"
    rng = np.random.default_rng(0)
    table = cupy.asarray(rng.normal(0, 0.1, (n_rows, d)).astype(dtype))
    rows = cupy.asarray((np.minimum(rng.zipf(1.2, batch), n_rows) - 1).astype(np.int32))
    row_grads = cupy.asarray(rng.normal(0, 0.01, (batch, d)).astype(dtype))
    return backend, cupy, table, rows, row_grads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_rows, d, batch", SPARSE_CASES)
def test_cuda_sparse_adam_step(benchmark, n_rows, d, batch, dtype):
    """A lazy Adam step of a batch of Zipf-distributed rows (many duplicates)."""
    backend, cupy, table, rows, row_grads = _sparse_step_setup(benchmark, "sparse-adam", n_rows,
                                                               d, batch, dtype)
    m, v = cupy.zeros_like(table), cupy.zeros_like(table)
    step = [0]

    def run():
        step[0] += 1
        backend.sparse_adam_step(table, rows, row_grads, m, v, step[0], 1e-3)
        cupy.cuda.Device().synchronize()

    benchmark.pedantic(run, rounds=20, iterations=1, warmup_rounds=1)
    benchmark.extra_info["rows_per_s"] = batch / benchmark.stats.stats.median


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [100_000, 10_000_000])
def test_cuda_adam_step(benchmark, n, dtype):
    backend = cuda_backend()
    import cupy

    benchmark.group = f"adam n={n}"
    benchmark.name = f"cuda {np.dtype(dtype).name}"
    rng = np.random.default_rng(0)
    params = cupy.asarray(rng.normal(size=n).astype(dtype))
    grads = cupy.asarray(rng.normal(size=n).astype(dtype))
    m, v = cupy.zeros_like(params), cupy.zeros_like(params)
    step = [0]

    def run():
        step[0] += 1
        backend.adam_step(params, grads, m, v, step[0], 1e-3)
        cupy.cuda.Device().synchronize()

    benchmark.pedantic(run, rounds=20, iterations=1, warmup_rounds=1)
    benchmark.extra_info["params_per_s"] = n / benchmark.stats.stats.median


def _ncf_batch(xp, model, batch, dtype, n_users, n_items):
    """One mini-batch of random pairs through CONFIGS[model]'s network, every array made by
    ``xp``: the arguments of ``ncf_forward``/``ncf_backward`` by name (``layers`` on the host)."""
    n_gmf, layers = CONFIGS[model]
    layers = np.array(layers, np.int64)
    rng = np.random.default_rng(0)
    user_emb, item_emb, dense = init_params(n_users, n_items, n_gmf, layers, dtype, rng)
    d = user_emb.shape[1]
    host = {"users": rng.integers(0, n_users, batch).astype(np.int32),
            "items": rng.integers(0, n_items, batch).astype(np.int32),
            "targets": (rng.random(batch) < 0.2).astype(dtype),
            "user_emb": user_emb, "item_emb": item_emb, "dense": dense,
            "cache": np.zeros(batch * (n_gmf + int(layers.sum())), dtype),
            "logits": np.zeros(batch, dtype), "dense_grad": np.zeros_like(dense),
            "user_grads": np.zeros((batch, d), dtype), "item_grads": np.zeros((batch, d), dtype)}
    out = {name: xp.asarray(a) for name, a in host.items()}
    out.update(layers=layers, n_gmf=n_gmf)
    return out


def _pass_setup(benchmark, kind, model, batch, impl, dtype, n_users, n_items):
    """The row's backend, its synchronise and a batch for it; names the group and row."""
    backend, xp, synchronize = cuda_or_cpu_row(impl)
    benchmark.group = f"ncf-{kind}-{model}-batch{batch}"
    benchmark.name = f"{impl} {np.dtype(dtype).name}"
    return backend, synchronize, _ncf_batch(xp, model, batch, dtype, n_users, n_items)


def _pass_grid(test):
    """The forward and backward groups' grid: every model, two batch sizes, every row."""
    for mark in (pytest.mark.parametrize("model", list(CONFIGS)),
                 pytest.mark.parametrize("batch", [256, 2048]),
                 pytest.mark.parametrize(("impl", "dtype"), ROWS, ids=ROW_IDS)):
        test = mark(test)
    return test


def _forward_args(a):
    return (a["users"], a["items"], a["user_emb"], a["item_emb"], a["dense"], a["layers"],
            a["n_gmf"], a["cache"], a["logits"])


@_pass_grid
def test_cuda_ncf_forward(benchmark, model, batch, impl, dtype, n_users=ML1M_USERS,
                          n_items=ML1M_ITEMS):
    backend, synchronize, a = _pass_setup(benchmark, "forward", model, batch, impl, dtype,
                                          n_users, n_items)

    def run():
        backend.ncf_forward(*_forward_args(a), THREADS)
        synchronize()

    benchmark.pedantic(run, rounds=20, iterations=1, warmup_rounds=1)
    benchmark.extra_info["samples_per_s"] = batch / benchmark.stats.stats.median


@_pass_grid
def test_cuda_ncf_backward(benchmark, model, batch, impl, dtype, n_users=ML1M_USERS,
                           n_items=ML1M_ITEMS):
    """The backward pass alone (BCE), after one forward pass that filled the cache."""
    backend, synchronize, a = _pass_setup(benchmark, "backward", model, batch, impl, dtype,
                                          n_users, n_items)
    backend.ncf_forward(*_forward_args(a), THREADS)

    def run():
        loss = backend.ncf_backward(a["users"], a["items"], a["targets"], a["user_emb"],
                                    a["item_emb"], a["dense"], a["layers"], a["n_gmf"],
                                    a["cache"], a["logits"], 0, a["dense_grad"], a["user_grads"],
                                    a["item_grads"], THREADS)
        synchronize()
        return loss

    benchmark.pedantic(run, rounds=20, iterations=1, warmup_rounds=1)
    benchmark.extra_info["samples_per_s"] = batch / benchmark.stats.stats.median


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_rows, d, batch", SPARSE_CASES)
def test_cuda_sparse_adagrad_step(benchmark, n_rows, d, batch, dtype):
    """An Adagrad step of a batch of Zipf-distributed rows (GRU4Rec's sparse tables)."""
    backend, cupy, table, rows, row_grads = _sparse_step_setup(benchmark, "sparse-adagrad",
                                                               n_rows, d, batch, dtype)
    acc = cupy.zeros_like(table)

    def run():
        backend.sparse_adagrad_step(table, rows, row_grads, acc, 0.05)
        cupy.cuda.Device().synchronize()

    benchmark.pedantic(run, rounds=20, iterations=1, warmup_rounds=1)
    benchmark.extra_info["rows_per_s"] = batch / benchmark.stats.stats.median
