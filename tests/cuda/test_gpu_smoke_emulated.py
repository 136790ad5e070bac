"""benchmarks/gpu_smoke.py, the script a machine with a GPU runs first, runs end to end at its
small sizes on the emulated CUDA backend, so the first real device runs a script known to work
(every step passes: NMF KL repeats bitwise, the SGD drivers agree with each other and with the
CPU with more warps than the emulated device holds at once, the timings are recorded)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.cuda.helpers import patch_cupy, register_emulated_cuda

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_smoke.py"


@pytest.fixture(scope="module")
def modules(emulator):
    from fastrec.backends.cuda import _loader

    return {name: emulator.EmulatedModule(_loader.kernel_path(name), _loader.compile_options(),
                                          _loader.NAME_EXPRESSIONS[name])
            for name in _loader.NAME_EXPRESSIONS}


def test_gpu_smoke_runs_end_to_end(modules, monkeypatch, tmp_path):
    patch_cupy(monkeypatch, lambda source, expression: modules[source].get_function(
        expression, order="random", seed=5))
    register_emulated_cuda(monkeypatch)
    spec = importlib.util.spec_from_file_location("gpu_smoke", SCRIPT)
    smoke = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(smoke)
    out = tmp_path / "smoke.json"
    status = smoke.main(["--small", "--out", str(out)])
    report = json.loads(out.read_text())
    assert status == 0, json.dumps(report, indent=1)
    assert report["gpu_tests"]["status"] == "skipped"
    nmf = report["nmf_kl_repeat"]
    assert nmf["status"] == "passed" and nmf["repeats"] == 20
    assert nmf["runs_differing_from_first"] == []
    orders = report["sgd_orders"]
    assert orders["dataflow_equals_strata_bitwise"]
    assert orders["dataflow_warps"] > orders["resident_warps"]
    times = report["sgd_epoch_times"]
    for grid in smoke.SIZES["small"]["time_grids"]:
        assert times[f"cuda_G{grid}_dataflow_seconds"] > 0
    fits = report["fit_times"]
    for model in ("nmf_kl", "neumf", "gru4rec"):
        assert fits[f"{model}_cuda_seconds"] > 0 and fits[f"{model}_cython_seconds"] > 0
