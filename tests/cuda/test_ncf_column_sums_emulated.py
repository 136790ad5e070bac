"""The NCF column reductions (output-layer and bias gradients) run in two passes over chunks of
rows; their summation order is fixed and documented in csrc/cuda/ncf.cu, so the emulated
kernels must equal, bit for bit, a numpy sum in that order, for every thread order and however
many chunks the grid covers at once."""

from __future__ import annotations

import numpy as np
import pytest

from fastrec.backends.cuda import ncf
from tests.cuda.ncf_helpers import emulated_getter, emulated_modules

ORDERS = ("forward", "reverse", "random")
TILE_ROWS = ncf.TILE[1]


@pytest.fixture(scope="module")
def modules(emulator):
    return emulated_modules(emulator)


def ordered_column_sums(values: np.ndarray) -> np.ndarray:
    """Column sums of values [rows, cols] in ncf.cu's order: per chunk of CHUNK_ROWS rows, row
    group y sums rows y, y + 8, ... in turn, the eight groups add up in order (the one-pass
    kernel's order within a chunk), then the chunks add up in order."""
    chunk_sums = []
    for begin in range(0, values.shape[0], ncf.CHUNK_ROWS):
        chunk = values[begin:begin + ncf.CHUNK_ROWS]
        total = np.zeros(values.shape[1], values.dtype)
        for y in range(TILE_ROWS):
            group = np.zeros(values.shape[1], values.dtype)
            for row in chunk[y::TILE_ROWS]:
                group = group + row
            total = total + group
        chunk_sums.append(total)
    out = chunk_sums[0]
    for partial in chunk_sums[1:]:
        out = out + partial
    return out


@pytest.mark.parametrize("rows", [1, ncf.CHUNK_ROWS, 5 * ncf.CHUNK_ROWS + 7])
@pytest.mark.parametrize("max_grid_y", [ncf.MAX_GRID_Y, 2])
def test_relu_bias_grad_sums_in_the_documented_order(modules, monkeypatch, rows, max_grid_y):
    monkeypatch.setattr(ncf, "MAX_GRID_Y", max_grid_y)
    rng = np.random.default_rng(rows)
    y = rng.normal(size=(rows, 40)).astype(np.float32)
    delta = rng.normal(size=(rows, 40)).astype(np.float32)
    masked = np.where(y > 0, delta, np.float32(0))
    expected = ordered_column_sums(masked)
    for order in ORDERS:
        dy, grad_b = delta.copy(), np.full(40, np.nan, np.float32)
        partial = np.full(ncf.n_chunks(rows) * 40, np.nan, np.float32)
        ncf._column_sums(emulated_getter(modules, np.float32, np.int32, order, seed=2),
                         "ncf_relu_bias_grad", (dy, y, np.int64(rows), np.int64(40)), rows,
                         grad_b, partial)
        np.testing.assert_array_equal(dy, masked)
        np.testing.assert_array_equal(grad_b, expected)


def test_output_grads_sum_in_the_documented_order(modules):
    rows, n_gmf, last = 3 * ncf.CHUNK_ROWS + 5, 33, 7
    rng = np.random.default_rng(0)
    dz = rng.normal(size=rows).astype(np.float32)
    gmf = rng.normal(size=(rows, n_gmf)).astype(np.float32)
    act = rng.normal(size=(rows, last)).astype(np.float32)
    terms = np.concatenate([dz[:, None] * gmf, dz[:, None] * act, dz[:, None]], axis=1)
    grad_h = np.full(n_gmf + last + 1, np.nan, np.float32)
    partial = np.empty(ncf.n_chunks(rows) * grad_h.size, np.float32)
    ncf._column_sums(emulated_getter(modules, np.float32, np.int32, "random", seed=4),
                     "ncf_output_grads", (dz, gmf, act, np.int64(rows), np.int64(n_gmf),
                                          np.int64(last)), rows, grad_h, partial)
    np.testing.assert_array_equal(grad_h, ordered_column_sums(terms))
