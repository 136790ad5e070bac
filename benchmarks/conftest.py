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
