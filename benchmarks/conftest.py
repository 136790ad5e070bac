"""Shared benchmark fixtures. Timings here are noisy on shared machines: compare ratios measured
side by side in one run, check the machine is idle first (``idle_fraction``), repeat, and
report medians."""

import time
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def idle_fraction(seconds: float = 1.0) -> float:
    """Share of CPU time spent idle over ``seconds`` (from /proc/stat), or 1.0 off Linux."""
    def read():
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
        return fields[3] + fields[4], sum(fields)

    try:
        idle0, total0 = read()
        time.sleep(seconds)
        idle1, total1 = read()
    except OSError:
        return 1.0
    return (idle1 - idle0) / max(total1 - total0, 1)


def thread_scaling(threads: int = 2, size: int = 1024, repeats: int = 5) -> float:
    """Speed-up of a compute-bound float32 matrix product (the BLAS numpy uses) from 1 thread to
    ``threads``: about ``threads`` when that many cores are free. A shared VM can give less while
    the host runs something else on the same physical cores, which /proc/stat does not show: on
    the development VM the 2-thread figure drops from 2.0 to 1.6 for a minute or more at a time,
    and memory-bound 2-thread kernels then take up to 1.7x longer while 1-thread runs do not."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).random((size, size), dtype=np.float32)

    def best(n_threads):
        with threadpool_limits(n_threads):
            a @ a
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                a @ a
                times.append(time.perf_counter() - start)
        return min(times)

    return best(1) / best(threads)


def pytest_report_header(config):
    return f"machine idle before benchmarks: {idle_fraction():.0%}"


def require_shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"shared dataset {name} not found at {path}")
    return path


def cuda_backend():
    """The CUDA backend, or skip the benchmark with the reason it is unavailable."""
    from fastrec.backends import _probe

    backend = _probe("cuda")
    if not backend.available:
        pytest.skip(f"cuda: {backend.reason}")
    return backend


def cuda_or_cpu_row(impl: str):
    """``(backend, xp, synchronize)`` for a GPU group's ``"cuda"`` row or its CPU row (a backend
    name, e.g. ``"cython"``): the row's array module and what ends each timed call. CPU rows
    skip with the GPU rows (they exist for the ratio) and when their backend is missing."""
    import numpy as np

    from fastrec.backends import _probe

    cuda = cuda_backend()
    if impl == "cuda":
        import cupy

        return cuda, cupy, cupy.cuda.Device().synchronize
    backend = _probe(impl)
    if not backend.available:
        pytest.skip(f"{impl}: {backend.reason}")
    return backend, np, lambda: None
