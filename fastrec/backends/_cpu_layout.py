"""Row widths the CPU kernels want for factor tables: they hold rows in vector registers, so
the models pad k with zero columns to these widths (the CUDA kernels and the numpy reference
take k as it is). Zero columns stay zero under both SGD and multiplicative updates and add
nothing to any product or penalty, so padding changes speed, never the model."""

from __future__ import annotations

import numpy as np

# NMF ranks the register-blocked kernels hold in vector registers (csrc/include/fastrec/nmf_cpu.h).
NMF_VECTOR_RANKS = (16, 32, 48, 64, 96, 128)
# From this rank on, the Frobenius full mode's dense products (Gram matrices, denominators) go
# through BLAS instead of the register-blocked and generic loops (nmf_cpu.h, "Large ranks").
NMF_BLAS_MIN_RANK = NMF_VECTOR_RANKS[-1] + 1


def row_width(kind: str, k: int, dtype) -> int:
    """Width of a rank-``k`` factor row for the ``kind`` of kernel (``"sgd"`` or ``"nmf"``)."""
    if kind == "nmf":
        return nmf_row_width(k)
    if kind == "sgd":
        return sgd_row_width(k, dtype)
    return k


def nmf_row_width(k: int) -> int:
    """The smallest register-resident rank >= k (k itself above 128)."""
    return next((r for r in NMF_VECTOR_RANKS if r >= k), k)


def sgd_row_width(k: int, dtype) -> int:
    """``k`` rounded up to whole 64-byte vectors when that costs at most k/8 extra columns
    (LIBMF pads k the same way). Rows then start on cache-line boundaries, so no vector load or
    store straddles two lines (at k=100 float32, 112-wide aligned rows train ~1.6x faster than
    100-wide ones)."""
    lanes = 64 // np.dtype(dtype).itemsize
    padded = -(-k // lanes) * lanes
    return padded if (padded - k) * 8 <= k else k
