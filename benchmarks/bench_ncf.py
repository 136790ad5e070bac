"""pytest-benchmark groups for NCF training: one epoch slice (positives + 4 negatives each) of
GMF, MLP [64,32,16,8] and NeuMF (32 factors) at batch 256 and 2048, fastrec's Cython and Numba
kernels against the same network in PyTorch (dense Adam, and sparse embeddings + SparseAdam).

    pytest benchmarks/bench_ncf.py --benchmark-group-by=group --benchmark-columns=median,ops

``extra_info["samples_per_s"]`` holds the throughput. Thread count: env FASTREC_BENCH_THREADS
(default 2), the same for every implementation. Not part of the test suite (torch is a bench
extra: pip install torch==2.13.0).
"""

from __future__ import annotations

import os

os.environ.setdefault("GOMP_SPINCOUNT", "20000")  # as fastrec sets it; torch shares libgomp

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from ncf_report import CONFIGS, N_NEG, Problem, load_split  # noqa: E402  (benchmarks/)

from fastrec._algorithms.ncf import OptimizerState, init_params  # noqa: E402
from fastrec.backends import _probe  # noqa: E402

THREADS = int(os.environ.get("FASTREC_BENCH_THREADS", "2"))
SAMPLES = 50_000


@pytest.fixture(scope="module")
def problem():
    train, _, _ = load_split()
    return Problem(train, SAMPLES)


def fastrec_epoch(name, problem, n_gmf, layers, batch):
    backend = _probe(name)
    if not backend.available:
        pytest.skip(f"backend {name} unavailable: {backend.reason}")
    user_emb, item_emb, dense = init_params(problem.train.n_users, problem.train.n_items, n_gmf,
                                            layers, np.float32, np.random.default_rng(0))
    state = OptimizerState.zeros(user_emb, item_emb, dense)
    targets = np.ones(problem.users.shape[0], np.float32)

    def run():
        backend.ncf_train_epoch(problem.users, problem.items, targets, problem.indptr,
                                problem.indices, problem.order, N_NEG, problem.seed,
                                problem.epoch, user_emb, item_emb, dense, layers, n_gmf, 0, 0,
                                1e-3, 0.9, 0.999, 1e-8, 0, state.dense1, state.dense2,
                                state.user1, state.user2, state.item1, state.item2, batch,
                                THREADS)
    return run


def torch_epoch(sparse, problem, n_gmf, layers, batch):
    torch = pytest.importorskip("torch", reason="torch is a bench extra")
    from ncf_torch import TorchNCF, train_epoch

    torch.set_num_threads(THREADS)
    user_emb, item_emb, dense = init_params(problem.train.n_users, problem.train.n_items, n_gmf,
                                            layers, np.float32, np.random.default_rng(0))
    model = TorchNCF(user_emb, item_emb, dense, layers, n_gmf, sparse)
    optimizers = model.optimizers(1e-3, sparse)
    users, items, targets = problem.samples()
    u = torch.from_numpy(users.astype(np.int64))
    i = torch.from_numpy(items.astype(np.int64))
    y = torch.from_numpy(targets)
    return lambda: train_epoch(model, optimizers, u, i, y, batch)


@pytest.mark.parametrize("impl", ["cython", "numba", "torch", "torch_sparse"])
@pytest.mark.parametrize("batch", [256, 2048])
@pytest.mark.parametrize("model", list(CONFIGS))
def test_ncf_train_throughput(benchmark, problem, model, batch, impl):
    n_gmf, layers = CONFIGS[model]
    layers = np.array(layers, np.int64)
    benchmark.group = f"ncf-train-{model}-batch{batch}-{THREADS}threads"
    if impl.startswith("torch"):
        run = torch_epoch(impl == "torch_sparse", problem, n_gmf, layers, batch)
    else:
        run = fastrec_epoch(impl, problem, n_gmf, layers, batch)
    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    benchmark.extra_info["samples_per_s"] = SAMPLES / benchmark.stats.stats.median
