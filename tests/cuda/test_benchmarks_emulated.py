"""The GPU benchmark bodies added for the kernel-level groups (benchmarks/bench_cuda_ncf.py,
bench_cuda_gru.py) run once, on small sizes, against the emulated CUDA backend, so a mistake in
a benchmark cannot hide behind its skip on machines without a GPU. The ``cuda`` rows' results
are compared with the Cython rows' (float64 on the "device" against float32 on the host).

The model-level groups (bench_cuda_models.py) and the SGD and NMF kernel groups have fixed
problem sizes (1M ratings) that the emulator cannot run in test time; they are not exercised
here.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

from tests.cuda.helpers import patch_cupy, register_emulated_cuda

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


class FakeBenchmark:
    """pytest-benchmark's fixture, running the target once (after its warm-up rounds) and
    keeping its result."""

    def __init__(self):
        self.group = self.name = None
        self.extra_info: dict = {}
        self.stats = types.SimpleNamespace(stats=types.SimpleNamespace(median=1.0))
        self.result = None

    def pedantic(self, target, args=(), kwargs=None, rounds=1, iterations=1, warmup_rounds=0,
                 setup=None):
        for _ in range(warmup_rounds + 1):
            self.result = target(*args, **(kwargs or {}))
        return self.result


@pytest.fixture(scope="module")
def modules(emulator):
    from fastrec.backends.cuda import _loader

    return {name: emulator.EmulatedModule(_loader.kernel_path(name), _loader.compile_options(),
                                          _loader.NAME_EXPRESSIONS[name])
            for name in ("ncf", "optim", "gru")}


@pytest.fixture
def bench(modules, monkeypatch):
    """``load(name)`` imports benchmarks/<name>.py with the emulated CUDA backend registered."""
    patch_cupy(monkeypatch, lambda source, expression: modules[source].get_function(
        expression, order="random", seed=3))
    register_emulated_cuda(monkeypatch)
    spec = importlib.util.spec_from_file_location("bench_conftest", BENCHMARKS / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    monkeypatch.setitem(sys.modules, "conftest", conftest)
    monkeypatch.syspath_prepend(str(BENCHMARKS))

    def load(name):
        monkeypatch.delitem(sys.modules, name, raising=False)
        return importlib.import_module(name)

    return load


def _cython():
    from fastrec.backends import _probe

    backend = _probe("cython")
    if not backend.available:
        pytest.skip(f"cython: {backend.reason}")


def _rows(run):
    """(cuda float64 result, cython float32 result) of a benchmark body."""
    _cython()
    results = {}
    for impl, dtype in (("cuda", np.float64), ("cython", np.float32)):
        benchmark = FakeBenchmark()
        run(benchmark, impl, dtype)
        assert benchmark.group and benchmark.name.startswith(impl)
        results[impl] = benchmark.result
    return results["cuda"], results["cython"]


def _host(a):
    return np.asarray(a, dtype=np.float64)


@pytest.mark.parametrize("model", ["GMF", "MLP", "NeuMF"])
def test_ncf_pass_benchmarks(bench, model):
    module = bench("bench_cuda_ncf")
    small = dict(model=model, batch=16, n_users=12, n_items=9)
    _rows(lambda b, impl, dtype: module.test_cuda_ncf_forward(b, impl=impl, dtype=dtype,
                                                               **small))
    gpu, cpu = _rows(lambda b, impl, dtype: module.test_cuda_ncf_backward(b, impl=impl,
                                                                          dtype=dtype, **small))
    assert isinstance(gpu, float) and gpu > 0
    assert_allclose(gpu, cpu, rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_adagrad_benchmark(bench, dtype):
    module = bench("bench_cuda_ncf")
    benchmark = FakeBenchmark()
    module.test_cuda_sparse_adagrad_step(benchmark, n_rows=20, d=4, batch=16, dtype=dtype)
    assert benchmark.group == "sparse-adagrad n_rows=20 d=4 batch=16"


@pytest.mark.parametrize("n_layers", [1, 2])
def test_gru_pass_benchmarks(bench, n_layers):
    module = bench("bench_cuda_gru")
    small = dict(n_layers=n_layers, T=3, B=4, D=5, H=6)
    gpu, cpu = _rows(lambda b, impl, dtype: module.test_cuda_gru_forward(b, impl=impl,
                                                                         dtype=dtype, **small))
    for g, c in zip(gpu, cpu, strict=True):
        assert_allclose(_host(g), _host(c), rtol=1e-4, atol=1e-5)
    gpu, cpu = _rows(lambda b, impl, dtype: module.test_cuda_gru_backward(b, impl=impl,
                                                                          dtype=dtype, **small))
    assert len(gpu) == len(cpu) == 6
    for g, c in zip(gpu, cpu, strict=True):
        assert_allclose(_host(g), _host(c), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("loss", ["cross-entropy", "bpr-max"])
def test_gru4rec_output_loss_benchmark(bench, loss):
    module = bench("bench_cuda_gru")
    small = dict(batch=4, loss=loss, n_items=30, n_sample=6, H=5)
    gpu, cpu = _rows(lambda b, impl, dtype: module.test_cuda_gru4rec_output_loss(
        b, impl=impl, dtype=dtype, **small))
    assert_allclose(gpu[0], cpu[0], rtol=1e-5)
    for g, c in zip(gpu[1:], cpu[1:], strict=True):
        assert_allclose(_host(g), _host(c), rtol=1e-4, atol=1e-6)
