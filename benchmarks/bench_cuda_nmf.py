"""CUDA NMF: seconds per multiplicative-update iteration, in the same groups as bench_nmf.py.

    python -m pytest benchmarks/bench_cuda_nmf.py --benchmark-only --benchmark-group-by=group \
        --benchmark-json=benchmarks/results/cuda_nmf.json

- ``nmf-iteration-<loss>-<dtype>``: one full-mode iteration (W then H) on the synthetic 50k x 10k
  matrix with 1M nonzeros at rank 32 (bench_nmf.py times the CPU backends and scikit-learn in
  the same groups), plus rank 128 in ``nmf-iteration-<loss>-<dtype>-k128``.
- ``nmf-observed-iteration-<variant>-<dtype>``: one observed-mode iteration (user side then item
  side) on the same matrix, Frobenius with biases and KL.

Arrays stay on the device (CuPy, zero-copy); a warm-up round keeps NVRTC's first-use compile
out of the timings, and every timed call ends with a device synchronisation. Skipped, with the
reason, where no device is usable. ``extra_info`` records nnz, k and the device.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _nmf_data import initial_factors, synthetic_counts  # noqa: E402
from conftest import cuda_backend  # noqa: E402

from fastrec._algorithms.nmf_mu import CSRPair  # noqa: E402

_CACHE: dict = {}


def _device_problem(dtype, k):
    """(rows CSR, columns CSR, W, H^T, user bias, item bias) on the device."""
    import cupy

    if "x" not in _CACHE:
        _CACHE["x"] = synthetic_counts()
    x = _CACHE["x"]
    pair = CSRPair.build(x, dtype)
    w, h = initial_factors(x.shape, k, dtype)
    rows = [cupy.asarray(a) for a in pair.rows]
    cols = [cupy.asarray(a) for a in pair.cols]
    return (rows, cols, cupy.asarray(w), cupy.asarray(np.ascontiguousarray(h.T)),
            cupy.zeros(x.shape[0], dtype), cupy.zeros(x.shape[1], dtype), x.nnz)


def _time(benchmark, backend, run, nnz, k):
    import cupy

    def timed():
        run()
        cupy.cuda.Device().synchronize()

    benchmark.pedantic(timed, rounds=7, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update(nnz=nnz, k=k, device=backend.details.get("device", ""),
                                seconds_per_iteration=benchmark.stats.stats.median)


@pytest.mark.parametrize("k", [32, 128])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize(("loss", "beta"), [("frobenius", 2), ("kullback-leibler", 1)])
def test_cuda_mu_iteration(benchmark, loss, beta, dtype, k):
    backend = cuda_backend()
    suffix = "" if k == 32 else f"-k{k}"
    benchmark.group = f"nmf-iteration-{loss}-{np.dtype(dtype).name}{suffix}"
    benchmark.name = f"cuda k={k}"
    rows, cols, w, ht, _, _, nnz = _device_problem(dtype, k)

    def run():
        backend.nmf_update_full(*rows, w, ht, beta, 0.0, 0.0, 1)
        backend.nmf_update_full(*cols, ht, w, beta, 0.0, 0.0, 1)

    _time(benchmark, backend, run, nnz, k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize(("variant", "beta", "biased"),
                         [("frobenius-biased", 2, True), ("kullback-leibler", 1, False)])
def test_cuda_observed_iteration(benchmark, variant, beta, biased, dtype):
    backend = cuda_backend()
    k = 32
    benchmark.group = f"nmf-observed-iteration-{variant}-{np.dtype(dtype).name}"
    benchmark.name = f"cuda k={k}"
    rows, cols, w, ht, bu, bi, nnz = _device_problem(dtype, k)
    mu = 0.6 if biased else 0.0

    def run():
        backend.nmf_update_observed(*rows, w, ht, bu, bi, mu, beta, 0.06, 0.06, 0.02, biased, 1)
        backend.nmf_update_observed(*cols, ht, w, bi, bu, mu, beta, 0.06, 0.06, 0.02, biased, 1)

    _time(benchmark, backend, run, nnz, k)


@pytest.mark.parametrize("mode", ["full", "observed"])
def test_cuda_loss(benchmark, mode):
    """The loss the stopping test evaluates every 10 iterations (float32, k=32)."""
    backend = cuda_backend()
    k = 32
    benchmark.group = f"nmf-loss-{mode}-float32"
    benchmark.name = f"cuda k={k}"
    rows, _, w, ht, bu, bi, nnz = _device_problem(np.float32, k)

    def run():
        if mode == "full":
            return backend.nmf_loss_full(*rows, w, ht, 2, 1)
        return backend.nmf_loss_observed(*rows, w, ht, bu, bi, 0.6, 2, True, 1)

    _time(benchmark, backend, run, nnz, k)
