"""CUDA SGD epoch throughput (rating updates per second), in the same groups as bench_sgd.py.

    python -m pytest benchmarks/bench_cuda.py --benchmark-json=benchmarks/results/cuda.json

Arrays stay on the device (CuPy, zero-copy); one warm-up round keeps NVRTC's first-use compile
out of the timings, and every timed call ends with a device synchronisation. A warp runs a whole
block, so at most G blocks run at once: the cases time the CPU default grid side (16) and a
GPU-sized one, with the dataflow driver (one launch per epoch) and the strata driver (one launch
per stratum). Skipped, with the reason, where no device is usable.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import cuda_backend  # benchmarks/

from fastrec._algorithms.sgd_schedule import BlockedRatings
from fastrec.data import synthetic_ratings

SIZES = {"1M": (50_000, 10_000, 1_000_000), "5M": (100_000, 20_000, 5_000_000)}
_CACHE: dict = {}


def ratings(size: str):
    if size not in _CACHE:
        n_users, n_items, nnz = SIZES[size]
        _CACHE[size] = synthetic_ratings(n_users, n_items, nnz, seed=0).interactions
    return _CACHE[size]


@pytest.mark.parametrize("order", ["dataflow", "strata"])
@pytest.mark.parametrize("n_blocks", [16, 512])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [32, 100])
@pytest.mark.parametrize("size", ["1M", "5M"])
def test_cuda_sgd_epoch(benchmark, size, k, dtype, n_blocks, order):
    backend = cuda_backend()
    import cupy

    benchmark.group = f"sgd-epoch {size} k={k}"
    benchmark.name = f"cuda {np.dtype(dtype).name} G={n_blocks} {order}"
    data = ratings(size)
    nnz = data.users.shape[0]
    rng = np.random.default_rng(0)
    blocked = BlockedRatings.build(data.users, data.items, data.values.astype(dtype),
                                   data.n_users, data.n_items, n_blocks, rng)
    device = [cupy.asarray(a) for a in (blocked.users, blocked.items, blocked.ratings,
                                        blocked.block_ptr)]
    schedules = [cupy.asarray(blocked.epoch_schedule(rng)) for _ in range(4)]
    state = (cupy.asarray(rng.normal(0, 0.1, (data.n_users, k)).astype(dtype)),
             cupy.asarray(rng.normal(0, 0.1, (data.n_items, k)).astype(dtype)),
             cupy.zeros(data.n_users, dtype), cupy.zeros(data.n_items, dtype))
    mu = float(data.values.mean())
    counter = [0]

    def epoch():
        counter[0] += 1
        sse = backend.sgd_epoch(*device, schedules[counter[0] % 4], *state, mu, 0.005, 0.005,
                                0.02, 0.02, True, 1, order=order)
        cupy.cuda.Device().synchronize()
        return sse

    benchmark.pedantic(epoch, rounds=7, warmup_rounds=1)
    benchmark.extra_info["updates_per_s"] = nnz / benchmark.stats.stats.median
    benchmark.extra_info["nnz"] = nnz
    benchmark.extra_info["device"] = backend.details.get("device", "")
