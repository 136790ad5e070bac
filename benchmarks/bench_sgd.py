"""SGD MF epoch throughput (rating updates per second): fastrec backends vs Surprise and LIBMF.

    python -m pytest benchmarks/bench_sgd.py --benchmark-json=benchmarks/results/sgd.json
    python benchmarks/report.py benchmarks/results/sgd.json

Every case times one epoch over the same synthetic ratings (power-law popularity, planted
rank-8 signal); ``extra_info["updates_per_s"]`` is nnz / median epoch time. Peers' set-up work
(LIBMF's grid construction, Surprise's trainset) is kept out of their per-epoch figure.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import require_shared  # noqa: E402  (benchmarks/conftest.py)

from fastrec._algorithms.sgd_schedule import BlockedRatings, choose_n_blocks
from fastrec.backends import _probe
from fastrec.data import synthetic_ratings

SIZES = {"1M": (50_000, 10_000, 1_000_000), "5M": (100_000, 20_000, 5_000_000)}
_CACHE: dict = {}


def ratings(size: str):
    if size not in _CACHE:
        if size == "ml-latest-small":
            from fastrec.data.loaders import load_movielens

            _CACHE[size] = load_movielens(require_shared("ml-latest-small"))
        else:
            n_users, n_items, nnz = SIZES[size]
            _CACHE[size] = synthetic_ratings(n_users, n_items, nnz, seed=0).interactions
    return _CACHE[size]


def epoch_case(backend_name: str, size: str, k: int):
    backend = _probe(backend_name)
    if not backend.available:
        pytest.skip(f"{backend_name}: {backend.reason}")
    data = ratings(size)
    rng = np.random.default_rng(0)
    blocked = BlockedRatings.build(data.users, data.items, data.values, data.n_users,
                                   data.n_items, choose_n_blocks(data.n_users, data.n_items), rng)
    P = rng.normal(0, 0.1, (data.n_users, k)).astype(np.float32)
    Q = rng.normal(0, 0.1, (data.n_items, k)).astype(np.float32)
    bu, bi = np.zeros(data.n_users, np.float32), np.zeros(data.n_items, np.float32)
    mu = float(data.values.mean())
    return backend, blocked, (P, Q, bu, bi), mu, rng


def record(benchmark, nnz: int, seconds_per_epoch: float | None = None):
    seconds = seconds_per_epoch or benchmark.stats.stats.median
    benchmark.extra_info["updates_per_s"] = nnz / seconds
    benchmark.extra_info["nnz"] = nnz


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("k", [32, 100])
@pytest.mark.parametrize("size", ["1M", "5M", "ml-latest-small"])
@pytest.mark.parametrize("backend_name", ["cython", "numba"])
def test_sgd_epoch(benchmark, backend_name, size, k, threads):
    benchmark.group = f"sgd-epoch {size} k={k}"
    benchmark.name = f"{backend_name} {threads}t"
    backend, blocked, state, mu, rng = epoch_case(backend_name, size, k)
    schedules = [blocked.epoch_schedule(rng) for _ in range(4)]

    calls = iter(range(10**9))

    def epoch():
        return backend.sgd_epoch(blocked.users, blocked.items, blocked.ratings,
                                 blocked.block_ptr, schedules[next(calls) % 4], *state, mu, 0.005,
                                 0.005, 0.02, 0.02, True, threads)

    benchmark.pedantic(epoch, rounds=7, warmup_rounds=1)  # warm-up excludes Numba's compile
    record(benchmark, blocked.users.shape[0])


@pytest.mark.parametrize("k", [32])
def test_sgd_epoch_reference(benchmark, k):
    """The numpy reference is a Python loop: timed on 20k ratings only."""
    benchmark.group = f"sgd-epoch 20k k={k} (reference)"
    data = synthetic_ratings(2_000, 500, 20_000, seed=0).interactions
    backend = _probe("numpy")
    rng = np.random.default_rng(0)
    blocked = BlockedRatings.build(data.users, data.items, data.values, data.n_users,
                                   data.n_items, 8, rng)
    P = rng.normal(0, 0.1, (data.n_users, k)).astype(np.float32)
    Q = rng.normal(0, 0.1, (data.n_items, k)).astype(np.float32)
    bu, bi = np.zeros(data.n_users, np.float32), np.zeros(data.n_items, np.float32)
    schedule = blocked.epoch_schedule(rng)
    benchmark.pedantic(backend.sgd_epoch, args=(blocked.users, blocked.items, blocked.ratings,
                       blocked.block_ptr, schedule, P, Q, bu, bi, 3.5, 0.005, 0.005, 0.02, 0.02,
                       True, 1), rounds=1)
    record(benchmark, data.nnz)


@pytest.mark.parametrize("k", [32, 100])
@pytest.mark.parametrize("size", ["1M"])
def test_surprise_svd_epoch(benchmark, size, k):
    surprise = pytest.importorskip("surprise")
    import pandas as pd

    benchmark.group = f"sgd-epoch {size} k={k}"
    benchmark.name = "surprise 1t"
    data = ratings(size)
    frame = pd.DataFrame({"u": data.users, "i": data.items, "r": data.values})
    reader = surprise.Reader(rating_scale=(float(data.values.min()), float(data.values.max())))
    trainset = surprise.Dataset.load_from_df(frame, reader).build_full_trainset()

    def fit_one_epoch():
        surprise.SVD(n_factors=k, n_epochs=1, random_state=0).fit(trainset)

    benchmark.pedantic(fit_one_epoch, rounds=3, warmup_rounds=0)
    record(benchmark, data.nnz)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("k", [32, 100])
@pytest.mark.parametrize("size", ["1M", "5M"])
def test_libmf_epoch(benchmark, size, k, threads):
    libmf = pytest.importorskip("libmf.mf")
    benchmark.group = f"sgd-epoch {size} k={k}"
    benchmark.name = f"libmf {threads}t"
    data = ratings(size)
    triples = np.column_stack([data.users, data.items, data.values]).astype(np.float32)

    def fit(iters):
        model = libmf.MF(k=k, nr_threads=threads, nr_iters=iters, quiet=True)
        start = time.perf_counter()
        model.fit(triples)
        return time.perf_counter() - start

    fit(1)
    per_epoch = []

    def run():  # set-up cancels out: (time of 6 iterations - time of 1) / 5
        per_epoch.append((fit(6) - fit(1)) / 5)

    benchmark.pedantic(run, rounds=3, warmup_rounds=0)
    record(benchmark, data.nnz, float(np.median(per_epoch)))
