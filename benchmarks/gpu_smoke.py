"""The first thing to run on a machine with a CUDA device: what the emulator cannot show.

    python benchmarks/gpu_smoke.py --out gpu_smoke.json    # full sizes, a few minutes on one GPU

Steps, each recorded in one JSON file (a step that fails is recorded and the others still run;
the exit status is 1 when any check failed):

1. ``gpu_tests``: the real-device tests (``-m gpu``): ``tests/cuda/test_*_gpu.py`` and the
   real-CuPy runs of ``tests/cuda/test_models_on_device.py`` (needs pytest and the source
   checkout; recorded as skipped otherwise);
2. ``nmf_kl_repeat``: NMF KL full-mode updates of a factor with many short rows (neighbouring
   warps' ratio ranges share 32-byte sectors: where a read-only-cache hazard would show) run 20
   times from the same start: every run must be bitwise the first, and close to the CPU's;
3. ``sgd_orders``: one SGD epoch at G >= 256 by the dataflow driver (with more warps than fit on
   the device at once: a warp waits only for tickets that running warps hold) and by the strata
   driver, which must agree bit for bit, and by the CPU backend (to rounding);
4. ``sgd_epoch_times``: SGD epoch time at G = 16 and G = 512 (medians) and the CPU's at G = 16;
5. ``fit_times``: NMF (KL), NeuMF and GRU4Rec fits on the CUDA and Cython backends, same data.

Only fastrec and the packages of its ``cuda`` extra are needed (plus a CPU backend for the
comparisons: Cython when built, else the numpy reference). ``--small`` runs every step at toy
sizes (CI runs it that way on the emulated CUDA backend, ``tests/cuda/test_gpu_smoke_emulated.py``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

SIZES = {
    "full": dict(nmf_rows=400_000, nmf_cols=20_000, nmf_per_row=3, nmf_k=32, repeats=20,
                 sgd_users=200_000, sgd_items=20_000, sgd_nnz=4_000_000, sgd_k=32,
                 order_grid=256, time_grids=(16, 512), timing_rounds=3,
                 fit_ratings=(20_000, 5_000, 500_000), fit_sessions=(20_000, 5_000),
                 fit_epochs=2, hidden=100, n_sample=2048, ncf_batch=2048, session_batch=256,
                 warm_up=True),
    "small": dict(nmf_rows=96, nmf_cols=40, nmf_per_row=3, nmf_k=8, repeats=20,
                  sgd_users=60, sgd_items=50, sgd_nnz=500, sgd_k=8,
                  order_grid=8, time_grids=(2, 4), timing_rounds=1,
                  fit_ratings=(40, 30, 300), fit_sessions=(12, 20),
                  fit_epochs=1, hidden=8, n_sample=8, ncf_batch=64, session_batch=4,
                  warm_up=False),
}


def _cupy():
    import cupy

    return cupy


def _synchronize() -> None:
    _cupy().cuda.Device().synchronize()


def _cpu_backend():
    """Cython when built, else the numpy reference."""
    from fastrec.backends import _probe

    for name in ("cython", "numpy"):
        backend = _probe(name)
        if backend.available:
            return backend
    raise RuntimeError("no CPU backend")


def _device_info(cuda) -> dict:
    info = {"backend_version": cuda.version, **cuda.details}
    props = _cupy().cuda.runtime.getDeviceProperties(_cupy().cuda.Device().id)
    for key in ("multiProcessorCount", "maxThreadsPerMultiProcessor"):
        if key in props:
            info[key] = int(props[key])
    return info


def run_gpu_tests(size: dict, skip_reason: str | None) -> dict:
    if skip_reason:
        return {"status": "skipped", "reason": skip_reason}
    # The real-device files, and the cupy runs of the bodies shared with the emulator.
    files = sorted(str(p) for p in (REPO / "tests" / "cuda").glob("test_*_gpu.py"))
    if not files:
        return {"status": "skipped", "reason": f"no tests/cuda/test_*_gpu.py under {REPO}"}
    files.append(str(REPO / "tests" / "cuda" / "test_models_on_device.py"))
    try:
        import pytest  # noqa: F401 - only its presence matters
    except ImportError:
        return {"status": "skipped", "reason": "pytest is not installed"}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "-m", "gpu", *files], cwd=REPO, capture_output=True, text=True)
    lines = result.stdout.strip().splitlines()
    return {"status": "passed" if result.returncode == 0 else "failed",
            "summary": lines[-1] if lines else result.stderr[-2000:],
            "seconds": round(time.perf_counter() - start, 2),
            "output_tail": "\n".join(lines[-30:]) if result.returncode else ""}


def run_nmf_kl_repeat(size: dict, cuda, cpu) -> dict:
    import scipy.sparse as sp

    cp = _cupy()
    rng = np.random.default_rng(0)
    n_rows, n_cols, per_row, k = (size[key] for key in ("nmf_rows", "nmf_cols",
                                                        "nmf_per_row", "nmf_k"))
    lengths = rng.integers(1, per_row + 1, n_rows)
    rows = np.repeat(np.arange(n_rows), lengths)
    cols = rng.integers(0, n_cols, rows.size)
    x = sp.csr_matrix((rng.poisson(2.0, rows.size).astype(np.float32) + 1, (rows, cols)),
                      shape=(n_rows, n_cols))
    x.sum_duplicates()
    indptr, indices = x.indptr.astype(np.int32), x.indices.astype(np.int32)
    w0 = rng.uniform(0.1, 1.0, (n_rows, k)).astype(np.float32)
    other = rng.uniform(0.1, 1.0, (n_cols, k)).astype(np.float32)
    expected = w0.copy()
    start = time.perf_counter()
    cpu.nmf_update_full(indptr, indices, x.data, expected, other, 1, 0.0, 0.0, 1)
    cpu_seconds = time.perf_counter() - start
    device = [cp.asarray(a) for a in (indptr, indices, x.data, other)]
    results, seconds = [], []
    for _ in range(size["repeats"]):
        w = cp.asarray(w0)
        _synchronize()
        start = time.perf_counter()
        cuda.nmf_update_full(*device[:3], w, device[3], 1, 0.0, 0.0, 1)
        _synchronize()
        seconds.append(time.perf_counter() - start)
        results.append(w.get())
    differing = [i for i, r in enumerate(results) if not np.array_equal(r, results[0])]
    max_rel = float(np.max(np.abs(results[0] - expected) / np.maximum(np.abs(expected), 1e-6)))
    ok = not differing and max_rel < 1e-4
    return {"status": "passed" if ok else "failed", "rows": n_rows, "nnz": int(x.nnz), "k": k,
            "repeats": size["repeats"], "runs_differing_from_first": differing,
            "max_rel_diff_vs_cpu": max_rel, "cpu_backend": cpu.name,
            "median_seconds": statistics.median(seconds), "cpu_seconds": cpu_seconds}


def _sgd_problem(size: dict, grid: int, dtype, seed=0):
    from fastrec._algorithms.sgd_schedule import BlockedRatings

    rng = np.random.default_rng(seed)
    n_users, n_items, nnz = size["sgd_users"], size["sgd_items"], size["sgd_nnz"]
    users = rng.integers(0, n_users, nnz).astype(np.int32)
    items = rng.integers(0, n_items, nnz).astype(np.int32)
    ratings = rng.uniform(1, 5, nnz).astype(dtype)
    blocked = BlockedRatings.build(users, items, ratings, n_users, n_items, grid, rng)
    data = (blocked.users, blocked.items, blocked.ratings, blocked.block_ptr)
    state = (rng.normal(0, 0.1, (n_users, size["sgd_k"])).astype(dtype),
             rng.normal(0, 0.1, (n_items, size["sgd_k"])).astype(dtype),
             np.zeros(n_users, dtype), np.zeros(n_items, dtype))
    return data, blocked.epoch_schedule(rng), state


SGD_SCALARS = (3.0, 0.005, 0.005, 0.02, 0.02, True)


def _device_epoch(data, schedule, state, order, n_warps=None):
    """One epoch through the launcher (device arrays); returns (sse, host factors, seconds)."""
    from fastrec.backends.cuda import _loader
    from fastrec.backends.cuda.sgd import launch_sgd_epoch

    cp = _cupy()
    device = [cp.asarray(a) for a in (*data, schedule)]
    arrays = [cp.asarray(a) for a in state]
    dtype, index_dtype = state[0].dtype, data[0].dtype

    def get_kernel(name):
        if name == "sgd_dataflow_positions":
            return _loader.get_function("sgd", f"fastrec::cuda::{name}")
        return _loader.get_function("sgd", _loader.name_expression(name, dtype, index_dtype))

    ticket_sse = cp.zeros(schedule.size, dtype=np.float64)
    n_sms = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)["multiProcessorCount"]
    _synchronize()
    start = time.perf_counter()
    launch_sgd_epoch(cp, get_kernel, *device, *arrays, ticket_sse, *SGD_SCALARS, order=order,
                     n_warps=n_warps, n_sms=n_sms)
    _synchronize()
    seconds = time.perf_counter() - start
    return float(ticket_sse.sum()), [a.get() for a in arrays], seconds


def run_sgd_orders(size: dict, cpu) -> dict:
    cp = _cupy()
    grid = size["order_grid"]
    data, schedule, state = _sgd_problem(size, grid, np.float64)
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    resident = props["multiProcessorCount"] * props["maxThreadsPerMultiProcessor"] // 32
    n_warps = min(schedule.size, 2 * resident)
    dataflow = _device_epoch(data, schedule, state, "dataflow", n_warps=n_warps)
    strata = _device_epoch(data, schedule, state, "strata")
    expected = [a.copy() for a in state]
    cpu_sse = cpu.sgd_epoch(*data, schedule, *expected, *SGD_SCALARS, 1)
    same = dataflow[0] == strata[0] and all(
        np.array_equal(a, b) for a, b in zip(dataflow[1], strata[1], strict=True))
    max_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(dataflow[1], expected,
                                                                 strict=True))
    ok = same and max_diff < 1e-9 and abs(dataflow[0] - cpu_sse) <= 1e-9 * abs(cpu_sse)
    return {"status": "passed" if ok else "failed", "grid": grid, "tickets": int(schedule.size),
            "dataflow_warps": int(n_warps), "resident_warps": int(resident),
            "dataflow_equals_strata_bitwise": same, "max_abs_diff_vs_cpu": max_diff,
            "bitwise_equal_cpu": max_diff == 0.0, "sse": dataflow[0], "cpu_sse": cpu_sse,
            "cpu_backend": cpu.name, "dataflow_seconds": dataflow[2],
            "strata_seconds": strata[2]}


def run_sgd_epoch_times(size: dict, cpu) -> dict:
    out = {"status": "passed", "nnz": size["sgd_nnz"], "k": size["sgd_k"]}
    for grid in size["time_grids"]:
        data, schedule, state = _sgd_problem(size, grid, np.float32)
        for order in ("dataflow", "strata"):
            _device_epoch(data, schedule, state, order)  # compile and warm up
            times = [_device_epoch(data, schedule, state, order)[2]
                     for _ in range(size["timing_rounds"])]
            out[f"cuda_G{grid}_{order}_seconds"] = statistics.median(times)
    grid = size["time_grids"][0]
    data, schedule, state = _sgd_problem(size, grid, np.float32)
    times = []
    for _ in range(size["timing_rounds"]):
        arrays = [a.copy() for a in state]
        start = time.perf_counter()
        cpu.sgd_epoch(*data, schedule, *arrays, *SGD_SCALARS, _cpu_threads())
        times.append(time.perf_counter() - start)
    out[f"{cpu.name}_G{grid}_seconds"] = statistics.median(times)
    return out


def _cpu_threads() -> int:
    from fastrec.backends import default_n_threads

    return default_n_threads()


def run_fit_times(size: dict, cpu) -> dict:
    import scipy.sparse as sp

    from fastrec import NMF, GRU4Rec, NeuMF
    from fastrec.data import synthetic_ratings
    from fastrec.data.sessions import synthetic_sessions

    n_users, n_items, nnz = size["fit_ratings"]
    ratings = synthetic_ratings(n_users, n_items, nnz, seed=0).interactions
    counts = sp.csr_matrix((np.ceil(ratings.values).astype(np.float32),
                            (ratings.users, ratings.items)), shape=(n_users, n_items))
    implicit = (ratings.users, ratings.items)
    sessions = synthetic_sessions(n_sessions=size["fit_sessions"][0],
                                  n_items=size["fit_sessions"][1], mean_length=6.0)
    epochs = size["fit_epochs"]
    models = {
        "nmf_kl": (lambda b: NMF(16, beta_loss="kullback-leibler", max_iter=epochs, tol=0,
                                 random_state=0, backend=b), counts),
        "neumf": (lambda b: NeuMF(n_factors=8, layers=(32, 16, 8), n_epochs=epochs,
                                  batch_size=size["ncf_batch"], random_state=0, backend=b),
                  implicit),
        "gru4rec": (lambda b: GRU4Rec(hidden_size=size["hidden"], n_sample=size["n_sample"],
                                      batch_size=size["session_batch"], n_epochs=epochs,
                                      random_state=0, backend=b), sessions),
    }
    out = {"status": "passed", "epochs": epochs, "cpu_backend": cpu.name}
    for name, (make, data) in models.items():
        for backend in ("cuda", cpu.name):
            if backend == "cuda" and size["warm_up"]:
                make(backend).fit(data)  # NVRTC's first-use compile stays out of the timing
            start = time.perf_counter()
            make(backend).fit(data)
            out[f"{name}_{backend}_seconds"] = time.perf_counter() - start
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="gpu_smoke.json", help="the JSON file to write")
    parser.add_argument("--small", action="store_true",
                        help="toy sizes (the emulated CI run); skips the gpu tests")
    parser.add_argument("--no-tests", action="store_true", help="skip the gpu tests")
    args = parser.parse_args(argv)
    size = SIZES["small" if args.small else "full"]
    from fastrec.backends import get_backend

    cuda = get_backend("cuda")
    cpu = _cpu_backend()
    report = {"sizes": "small" if args.small else "full", "python": platform.python_version(),
              "device": _device_info(cuda)}
    skip_tests = "--small" if args.small else ("--no-tests" if args.no_tests else None)
    steps = {
        "gpu_tests": lambda: run_gpu_tests(size, skip_tests),
        "nmf_kl_repeat": lambda: run_nmf_kl_repeat(size, cuda, cpu),
        "sgd_orders": lambda: run_sgd_orders(size, cpu),
        "sgd_epoch_times": lambda: run_sgd_epoch_times(size, cpu),
        "fit_times": lambda: run_fit_times(size, cpu),
    }
    for name, step in steps.items():
        start = time.perf_counter()
        try:
            report[name] = step()
        except Exception as exc:  # noqa: BLE001 - a failed step is a result to record
            report[name] = {"status": "error", "error": f"{type(exc).__name__}: {exc}",
                            "traceback": traceback.format_exc()}
        report[name]["step_seconds"] = round(time.perf_counter() - start, 3)
        print(f"{name}: {report[name]['status']}", flush=True)
    Path(args.out).write_text(json.dumps(report, indent=2, default=str) + "\n")
    failed = [n for n in steps if report[n]["status"] in ("failed", "error")]
    print(f"wrote {args.out}; " + (f"FAILED: {', '.join(failed)}" if failed else "all passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
