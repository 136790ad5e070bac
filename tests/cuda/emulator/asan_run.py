"""Run emulated kernels under AddressSanitizer; started by the tests in a subprocess with
``LD_PRELOAD`` of libasan (a sanitized library cannot be loaded into a normal Python).

    python asan_run.py sgd            SGD epochs against the reference; exit 0 when clean
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
    {"sgd": run_sgd, "ncf": run_ncf, "optim": run_optim, "out_of_bounds": run_out_of_bounds,
     "signed_overflow": run_signed_overflow}[sys.argv[1]]()
    print("asan run finished")
