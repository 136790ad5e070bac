"""Run emulated kernels under AddressSanitizer; started by the tests in a subprocess with
``LD_PRELOAD`` of libasan (a sanitized library cannot be loaded into a normal Python).

    python asan_run.py sgd            SGD epochs against the reference; exit 0 when clean
    python asan_run.py gru            every GRU4Rec kernel against the reference; exit 0 when clean
    python asan_run.py ncf            NCF passes and epochs (and the optimiser steps they take)
    python asan_run.py optim          dense and sparse optimiser steps
    python asan_run.py out_of_bounds  a kernel that reads past an array (must be reported)
    python asan_run.py signed_overflow  a kernel with signed overflow (UBSan must report it)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(1, str(HERE.parents[2]))  # the checkout's tests package

from tests.cuda.emulator import cuda_emulator  # noqa: E402

SELFTEST_NAMES = ("out_of_bounds", "signed_overflow")


def run_sgd() -> None:
    from fastrec.backends.cuda import _loader
    from fastrec.backends.cuda.sgd import launch_sgd_epoch
    from fastrec.backends.reference import sgd_epoch as reference_epoch
    from tests.cuda.helpers import kernel_getter, make_sgd_problem

    module = cuda_emulator.EmulatedModule(_loader.kernel_path("sgd"), _loader.compile_options(),
                                          _loader.NAME_EXPRESSIONS["sgd"], asan=True)
    for dtype, index_dtype, k in ((np.float64, np.int32, 40), (np.float32, np.int64, 7)):
        data, factors, scalars = make_sgd_problem(k=k, dtype=dtype, index_dtype=index_dtype,
                                                  nnz=150)
        expected = [f.copy() for f in factors]
        reference_epoch(*data.values(), *expected, *scalars, True)
        for order, driver in zip(cuda_emulator.ORDERS, ("dataflow", "strata", "dataflow"),
                                 strict=True):
            got = [f.copy() for f in factors]
            ticket_sse = np.zeros(data["schedule"].size)
            launch_sgd_epoch(np, kernel_getter(module, data, factors, order, seed=7),
                             *data.values(), *got, ticket_sse, *scalars, True, order=driver)
            for g, e in zip(got, expected, strict=True):
                np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)


def run_gru() -> None:
    """Every kernel of gru.cu (T = L = bptt = 1 cases too, where the launchers' per-step views
    are whole allocations, so ASan sees each kernel's own bounds)."""
    from fastrec.backends.cuda.gru import run_stack_backward, run_stack_forward
    from fastrec.backends.reference import gru as ref
    from tests.cuda import gru_problems as gp

    module = gp.gru_modules(cuda_emulator, asan=True)
    for dtype, index_dtype, (T, L) in ((np.float64, np.int32, (1, 1)),
                                       (np.float32, np.int64, (3, 2))):
        get_kernel = gp.gru_kernels(module, dtype, index_dtype, order="random", seed=T)
        args, d_top = gp.gru_problem(T, L, dtype)
        expected = ref.gru_forward(*args)
        got = run_stack_forward(np, get_kernel, *args)
        for e, g in zip(expected, got, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)
        grads = run_stack_backward(np, get_kernel, *args, *expected, d_top)
        for e, g in zip(ref.gru_backward(*args, *expected, d_top), grads, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)
        hidden, table, samples = gp.loss_problem(dtype, index_dtype)
        for loss in (0, 1, 2):
            got = gp.emulated_output_loss(get_kernel, hidden, table, samples, loss, 0.5, 0.25)
            e = ref.gru4rec_output_loss(hidden, table, samples, loss, 0.5, 0.25)
            np.testing.assert_allclose(got[1], e[1], rtol=1e-4, atol=1e-5)
    for case in (gp.EPOCH_CASES[1], gp.EPOCH_CASES[2]):
        problem = gp.epoch_problem(case[0], case[1], np.int64)
        spec = gp.epoch_spec(case)
        if case is gp.EPOCH_CASES[1]:
            assert spec.bptt == 1 and case[0] == 1
        expected = gp.run_epoch(problem, spec)
        got = gp.run_epoch(problem, spec, gp.gru_kernels(module, np.float64, np.int64, "reverse"))
        for g, e in zip(got[2], expected[2], strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-8, atol=1e-10)


def run_ncf() -> None:
    from tests.cuda.ncf_helpers import run_ncf_under_sanitizers

    run_ncf_under_sanitizers(cuda_emulator)


def run_optim() -> None:
    from tests.cuda.ncf_helpers import run_optim_under_sanitizers

    run_optim_under_sanitizers(cuda_emulator)


def run_out_of_bounds() -> None:
    x = np.ones(10, dtype=np.float32)
    out = np.zeros(1, dtype=np.float32)
    selftest_module().get_function("out_of_bounds")((1,), (1,), (x, out, np.int32(x.size)))


def run_signed_overflow() -> None:
    x = np.array([2**31 - 1], dtype=np.int32)
    selftest_module().get_function("signed_overflow")((1,), (1,), (x, np.int32(1)))


def selftest_module():
    return cuda_emulator.EmulatedModule(HERE / "selftest_kernels.cu", (), SELFTEST_NAMES,
                                        asan=True)


if __name__ == "__main__":
    {"sgd": run_sgd, "gru": run_gru, "ncf": run_ncf, "optim": run_optim,
     "out_of_bounds": run_out_of_bounds,
     "signed_overflow": run_signed_overflow}[sys.argv[1]]()
    print("asan run finished")
