"""Problems and kernel getters shared by the CUDA NMF tests, the NMF ASan script and the GPU
tests."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

# Observed-mode variants: name -> (beta_loss, biased).
OBSERVED_MODES = {
    "frobenius": (2, False),
    "frobenius-biased": (2, True),
    "kullback-leibler": (1, False),
}


def make_nmf_problem(seed=0, n_rows=25, n_cols=18, density=0.3, k=12, dtype=np.float64,
                     index_dtype=np.int32):
    """A random non-negative CSR problem with an empty row and an empty column.

    Returns ``(csr, factors, other, bias, other_bias)``: csr = (indptr, indices, data) over the
    rows of ``factors`` [n_rows, k]; ``other`` [n_cols, k]; biases [n_rows] and [n_cols]."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n_rows, n_cols)) < density
    mask[min(3, n_rows - 1)] = False
    mask[:, min(5, n_cols - 1)] = False
    values = np.where(mask, rng.uniform(0.5, 5.0, (n_rows, n_cols)), 0.0)
    x = sp.csr_matrix(values)
    csr = (x.indptr.astype(index_dtype), x.indices.astype(index_dtype), x.data.astype(dtype))
    factors = (np.abs(rng.normal(0, 0.5, (n_rows, k))) + 0.01).astype(dtype)
    other = (np.abs(rng.normal(0, 0.5, (n_cols, k))) + 0.01).astype(dtype)
    bias = rng.normal(0, 0.1, n_rows).astype(dtype)
    other_bias = rng.normal(0, 0.1, n_cols).astype(dtype)
    return csr, factors, other, bias, other_bias


def nmf_kernel_getter(module, dtype, index_dtype, order="forward", seed=0):
    """``get_kernel(name)`` for the NMF launchers: the emulated kernels for these dtypes, run
    in thread order ``order``."""
    from fastrec.backends.cuda import _loader

    def get_kernel(name):
        return module.get_function(_loader.name_expression(name, dtype, index_dtype),
                                   order=order, seed=seed)

    return get_kernel
