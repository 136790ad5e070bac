"""CUDA GRU4Rec throughput (events per second) and the raw GRU step, on device arrays:

    python -m pytest benchmarks/bench_cuda_gru.py --benchmark-only --benchmark-group-by=group

Training: one epoch of session-parallel GRU4Rec (synthetic sessions with planted transitions,
200k events, 20k items, hidden 100, embedding 64, n_sample 2048) through
``gru4rec_train_epoch`` with every array on the device (zero-copy), next to the Cython epoch
(float32, 2 threads) in the same group; the events/s of each round are in ``extra_info``.
Raw step: GRU forward + full backward over a block (T=10, B=256, H=100, one and two layers);
the forward and the backward pass also on their own (``gru-forward-*``, ``gru-backward-*``), and
the sampled output layer and its loss (``gru4rec-output-loss-*``: B hidden states against the B
targets and 2048 shared negatives over 20k items), each with a Cython row (float32, 2 threads)
for the ratio. One warm-up round keeps NVRTC's first-use compile (and cuBLAS handle creation)
out of the timings; every timed call ends with a device synchronisation. Skipped, with the
reason, where no device is usable (the Cython rows too).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import cuda_backend, cuda_or_cpu_row  # benchmarks/

from fastrec._algorithms.gru4rec import GRU4RecParams, alias_table, session_parallel_schedule
from fastrec.backends import _probe
from fastrec.backends._contract import LOSS_CODES, OPT_ADAGRAD, GRU4RecSpec
from fastrec.data import Sessions, synthetic_sessions

HIDDEN, EMBEDDING, N_SAMPLE, BPTT = 100, 64, 2048, 1
N_ITEMS = 20_000
CPU_THREADS = 2
ROWS = [("cuda", np.float32), ("cuda", np.float64), ("cython", np.float32)]
ROW_IDS = ["cuda-float32", "cuda-float64", "cython-float32"]
_CACHE: dict = {}


def sessions() -> Sessions:
    if "sessions" not in _CACHE:
        frame = synthetic_sessions(n_sessions=33_000, n_items=20_000, random_state=0)
        _CACHE["sessions"] = Sessions.from_frame(frame)
    return _CACHE["sessions"]


def _epoch_problem(batch, dtype):
    data = sessions()
    schedule = session_parallel_schedule(data.items, data.offsets, batch)
    prob, alias = alias_table(np.bincount(data.items, minlength=data.n_items) ** 0.75,
                              data.items.dtype)
    params = GRU4RecParams.init(data.n_items, HIDDEN, 1, EMBEDDING, dtype,
                                np.random.default_rng(0))
    arrays = [np.zeros((1, batch, HIDDEN), dtype), params.emb, params.state["emb_s1"],
              params.state["emb_s2"], params.gru, params.state["gru_s1"],
              params.state["gru_s2"], params.out, params.state["out_s1"], params.state["out_s2"]]
    return schedule, prob, alias, arrays


def _spec(loss, epoch, n_steps):
    return GRU4RecSpec(True, LOSS_CODES[loss], 1.0, N_SAMPLE, 0.0, 0.0, BPTT, OPT_ADAGRAD, 0.05,
                       0.0, 0.9, 0.999, 1e-6, epoch * n_steps, 0, epoch)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss", ["cross-entropy", "bpr-max"])
@pytest.mark.parametrize("batch", [32, 256])
def test_cuda_gru4rec_epoch(benchmark, batch, loss, dtype):
    backend = cuda_backend()
    import cupy

    benchmark.group = f"gru4rec-train-B{batch}-{loss}"
    benchmark.name = f"cuda {np.dtype(dtype).name}"
    schedule, prob, alias, host_arrays = _epoch_problem(batch, dtype)
    device = [cupy.asarray(a) for a in (schedule.inputs, schedule.targets, schedule.reset)]
    tables = [cupy.asarray(prob), cupy.asarray(alias)]
    arrays = [cupy.asarray(a) for a in host_arrays]
    rates = []
    epoch = [0]

    def run():
        spec = _spec(loss, epoch[0], schedule.n_steps)
        epoch[0] += 1
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        _, n_events = backend.gru4rec_train_epoch(*device, *arrays, *tables, spec, 1)
        stop.record()
        stop.synchronize()
        rates.append(n_events / (cupy.cuda.get_elapsed_time(start, stop) / 1e3))

    run()  # warm-up: NVRTC compile, cuBLAS handles, memory pool
    rates.clear()
    benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info["events_per_second"] = float(np.median(rates))


@pytest.mark.parametrize("loss", ["cross-entropy", "bpr-max"])
@pytest.mark.parametrize("batch", [32, 256])
def test_cython_gru4rec_epoch_next_to_cuda(benchmark, batch, loss):
    """The Cython epoch (2 threads, float32) on the same problem, for the ratio; runs only where
    the CUDA rows run (a CPU epoch here takes minutes)."""
    cuda_backend()
    backend = _probe("cython")
    if not backend.available:
        pytest.skip(f"cython: {backend.reason}")
    benchmark.group = f"gru4rec-train-B{batch}-{loss}"
    benchmark.name = "cython float32 2 threads"
    schedule, prob, alias, arrays = _epoch_problem(batch, np.float32)
    rates = []

    def run():
        start = time.perf_counter()
        _, n_events = backend.gru4rec_train_epoch(schedule.inputs, schedule.targets,
                                                  schedule.reset, *arrays, prob, alias,
                                                  _spec(loss, 0, schedule.n_steps), 2)
        rates.append(n_events / (time.perf_counter() - start))

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info["events_per_second"] = float(np.median(rates))


def _gru_block(xp, T, B, D, H, n_layers, dtype):
    """(X, h0, reset, Wx0, Wx_rest, Wh, b) and d_top of a random block, made by ``xp``."""
    rng = np.random.default_rng(0)
    args = [xp.asarray(a.astype(dtype)) for a in (
        rng.normal(size=(T, B, D)), rng.normal(size=(n_layers, B, H)),
        0.1 * rng.normal(size=(D, 3 * H)), 0.1 * rng.normal(size=(n_layers - 1, H, 3 * H)),
        0.1 * rng.normal(size=(n_layers, H, 3 * H)), 0.1 * rng.normal(size=(n_layers, 3 * H)))]
    reset = xp.asarray((rng.random((T, B)) < 0.1).astype(np.uint8))
    X, h0, Wx0, Wx_rest, Wh, b = args
    d_top = xp.asarray(rng.normal(size=(T, B, H)).astype(dtype))
    return (X, h0, reset, Wx0, Wx_rest, Wh, b), d_top


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_layers", [1, 2])
def test_cuda_gru_step(benchmark, n_layers, dtype):
    backend = cuda_backend()
    import cupy

    T, B, D, H = 10, 256, EMBEDDING, HIDDEN
    benchmark.group = f"gru-step T={T} B={B} H={H} L={n_layers}"
    benchmark.name = f"cuda {np.dtype(dtype).name}"
    block, d_top = _gru_block(cupy, T, B, D, H, n_layers, dtype)

    def run():
        hs, gates = backend.gru_forward(*block)
        grads = backend.gru_backward(*block, hs, gates, d_top)
        cupy.cuda.Device().synchronize()
        return grads

    run()
    benchmark.pedantic(run, rounds=10, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize(("impl", "dtype"), ROWS, ids=ROW_IDS)
@pytest.mark.parametrize("n_layers", [1, 2])
def test_cuda_gru_forward(benchmark, n_layers, impl, dtype, T=10, B=256, D=EMBEDDING, H=HIDDEN):
    backend, xp, synchronize = cuda_or_cpu_row(impl)
    benchmark.group = f"gru-forward T={T} B={B} H={H} L={n_layers}"
    benchmark.name = f"{impl} {np.dtype(dtype).name}"
    block, _ = _gru_block(xp, T, B, D, H, n_layers, dtype)

    def run():
        out = backend.gru_forward(*block, CPU_THREADS)
        synchronize()
        return out

    benchmark.pedantic(run, rounds=10, iterations=1, warmup_rounds=1)
    benchmark.extra_info["events_per_second"] = T * B / benchmark.stats.stats.median


@pytest.mark.parametrize(("impl", "dtype"), ROWS, ids=ROW_IDS)
@pytest.mark.parametrize("n_layers", [1, 2])
def test_cuda_gru_backward(benchmark, n_layers, impl, dtype, T=10, B=256, D=EMBEDDING,
                           H=HIDDEN):
    """The full backward pass alone, from the states of one forward pass."""
    backend, xp, synchronize = cuda_or_cpu_row(impl)
    benchmark.group = f"gru-backward T={T} B={B} H={H} L={n_layers}"
    benchmark.name = f"{impl} {np.dtype(dtype).name}"
    block, d_top = _gru_block(xp, T, B, D, H, n_layers, dtype)
    hs, gates = backend.gru_forward(*block, CPU_THREADS)

    def run():
        grads = backend.gru_backward(*block, hs, gates, d_top, CPU_THREADS)
        synchronize()
        return grads

    benchmark.pedantic(run, rounds=10, iterations=1, warmup_rounds=1)
    benchmark.extra_info["events_per_second"] = T * B / benchmark.stats.stats.median


@pytest.mark.parametrize(("impl", "dtype"), ROWS, ids=ROW_IDS)
@pytest.mark.parametrize("loss", ["cross-entropy", "bpr-max"])
@pytest.mark.parametrize("batch", [32, 256])
def test_cuda_gru4rec_output_loss(benchmark, batch, loss, impl, dtype, n_items=N_ITEMS,
                                  n_sample=N_SAMPLE, H=HIDDEN):
    """Scores, loss and gradients of B hidden states against the B targets (in-batch
    negatives) and ``n_sample`` shared negatives."""
    backend, xp, synchronize = cuda_or_cpu_row(impl)
    benchmark.group = f"gru4rec-output-loss-B{batch}-{loss}"
    benchmark.name = f"{impl} {np.dtype(dtype).name}"
    rng = np.random.default_rng(0)
    hidden = xp.asarray(rng.normal(0, 0.5, (batch, H)).astype(dtype))
    out_table = xp.asarray(rng.normal(0, 0.1, (n_items, H + 1)).astype(dtype))
    samples = xp.asarray(rng.integers(0, n_items, batch + n_sample).astype(np.int32))

    def run():
        out = backend.gru4rec_output_loss(hidden, out_table, samples, LOSS_CODES[loss], 1.0,
                                          1.0 / batch, CPU_THREADS)
        synchronize()
        return out

    benchmark.pedantic(run, rounds=10, iterations=1, warmup_rounds=1)
    benchmark.extra_info["events_per_second"] = batch / benchmark.stats.stats.median
