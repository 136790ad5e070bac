"""Run every emulated NMF kernel under AddressSanitizer and UBSan (the NMF part of the ASan job;
``asan_run.py`` holds the SGD part and the sanitizer self-tests). Started by
``tests/cuda/test_nmf_emulated.py`` in a subprocess with ``LD_PRELOAD`` of libasan.

    python asan_nmf.py     updates and losses against the reference; exit 0 when clean
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(1, str(HERE.parents[2]))  # the checkout's tests package

from tests.cuda.emulator import cuda_emulator  # noqa: E402


def run_nmf() -> None:
    from fastrec.backends import reference
    from fastrec.backends.cuda import _loader
    from fastrec.backends.cuda.nmf import (
        launch_nmf_loss_full,
        launch_nmf_loss_observed,
        launch_nmf_update_full,
        launch_nmf_update_observed,
    )
    from tests.cuda.nmf_helpers import OBSERVED_MODES, make_nmf_problem, nmf_kernel_getter

    module = cuda_emulator.EmulatedModule(_loader.kernel_path("nmf"), _loader.compile_options(),
                                          _loader.NAME_EXPRESSIONS["nmf"], asan=True)
    cases = ((np.float64, np.int32, 40), (np.float32, np.int64, 7))
    for (dtype, index_dtype, k), order in zip(cases, ("reverse", "random"), strict=True):
        csr, factors, other, bias, other_bias = make_nmf_problem(
            seed=k, k=k, dtype=dtype, index_dtype=index_dtype)
        get_kernel = nmf_kernel_getter(module, dtype, index_dtype, order, seed=7)
        tol = {"rtol": 1e-4, "atol": 1e-6}
        for beta in (2, 1):
            got, expected = factors.copy(), factors.copy()
            launch_nmf_update_full(np, get_kernel, *csr, got, other, beta, 0.01, 0.02,
                                   n_warps=3)
            reference.nmf_update_full(*csr, expected, other, beta, 0.01, 0.02)
            np.testing.assert_allclose(got, expected, **tol)
            np.testing.assert_allclose(
                launch_nmf_loss_full(np, get_kernel, *csr, got, other, beta),
                reference.nmf_loss_full(*csr, got, other, beta), rtol=1e-4)
        for beta, biased in OBSERVED_MODES.values():
            got, got_bias = factors.copy(), bias.copy()
            expected, expected_bias = factors.copy(), bias.copy()
            launch_nmf_update_observed(np, get_kernel, *csr, got, other, got_bias, other_bias,
                                       3.0, beta, 0.01, 0.02, 0.05, biased)
            reference.nmf_update_observed(*csr, expected, other, expected_bias, other_bias,
                                          3.0, beta, 0.01, 0.02, 0.05, biased)
            np.testing.assert_allclose(got, expected, **tol)
            np.testing.assert_allclose(got_bias, expected_bias, **tol)
            np.testing.assert_allclose(
                launch_nmf_loss_observed(np, get_kernel, *csr, got, other, got_bias,
                                         other_bias, 3.0, beta, biased),
                reference.nmf_loss_observed(*csr, got, other, got_bias, other_bias, 3.0, beta,
                                            biased), rtol=1e-4)


if __name__ == "__main__":
    run_nmf()
    print("asan nmf run finished")
