"""The real csrc/cuda/topn.cu in the CUDA-semantics emulator, through the backend's own launcher
(``launch_topn``: exclusion marking, scratch chunks, grid shapes): the same answer as the numpy
reference exactly, whatever the thread order, launch shape or scratch size."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from fastrec.backends.cuda.topn import launch_topn
from fastrec.backends.reference import topn as reference


def _problem(b, m, dtype, index_dtype, seed=0, density=0.2):
    rng = np.random.default_rng(seed)
    scores = rng.integers(-4, 5, (b, m)).astype(dtype)  # many ties
    scores[rng.random((b, m)) < 0.05] = np.nan
    seen = sp.random(b + 3, m, density=density, format="csr", random_state=seed)
    seen.sum_duplicates()
    rows = rng.integers(0, b + 3, b).astype(np.int64)
    return (scores, seen.indptr.astype(index_dtype), seen.indices.astype(index_dtype), rows)


def _emulated(module, scores, n, indptr, indices, rows, order, **launch):
    def get_kernel(expression):
        return module.get_function(expression, order=order, seed=3)

    return launch_topn(np, get_kernel, scores.copy(), n, indptr, indices, rows, **launch)


@pytest.mark.parametrize("order", ["forward", "reverse", "random"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_matches_reference(topn_module, order, dtype, index_dtype):
    scores, indptr, indices, rows = _problem(9, 150, dtype, index_dtype)
    got = _emulated(topn_module, scores, 12, indptr, indices, rows, order)
    want = reference.topn_scores(scores, 12, indptr, indices, rows)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("warps_per_cta, scratch_bytes", [(1, 64 << 20), (3, 1), (8, 20_000)])
def test_launch_shape_and_scratch_chunks_do_not_change_the_answer(topn_module, warps_per_cta,
                                                                  scratch_bytes):
    scores, indptr, indices, rows = _problem(11, 70, np.float32, np.int32, seed=4)
    got = _emulated(topn_module, scores, 5, indptr, indices, rows, "random",
                    warps_per_cta=warps_per_cta, scratch_bytes=scratch_bytes)
    want = reference.topn_scores(scores, 5, indptr, indices, rows)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_short_rows_padded_and_no_exclusion(topn_module):
    scores = np.array([[1.0, np.nan, 2.0], [np.nan, np.nan, np.nan]], np.float64)
    empty = np.zeros(0, np.int64)
    ids, best = _emulated(topn_module, scores, 3, np.zeros(1, np.int32), np.zeros(0, np.int32),
                          empty, "forward")
    np.testing.assert_array_equal(ids, [[2, 0, -1], [-1, -1, -1]])
    np.testing.assert_array_equal(best, [[2.0, 1.0, -np.inf], [-np.inf] * 3])
