"""The compiled top-n (Cython) against the numpy reference: same indices and scores, exactly,
on integer-valued factors (exact dot products, many ties), with every edge of the contract."""

import numpy as np
import pytest
import scipy.sparse as sp

from fastrec._algorithms.topn import PAD_INDEX, top_n, top_n_scores
from fastrec.backends import BackendUnavailable


@pytest.fixture(params=["numpy", "cython"])
def backend(request):
    if request.param == "cython":
        pytest.importorskip("fastrec.backends.cython._topn",
                            reason="Cython extensions not built")
    return request.param


def _problem(b, m, k, dtype, seed=0, seen_density=0.05, index_dtype=np.int32):
    rng = np.random.default_rng(seed)
    query = rng.integers(-3, 4, (b, k)).astype(dtype)
    items = rng.integers(-3, 4, (m, k)).astype(dtype)
    bias = rng.integers(-2, 3, m).astype(dtype)
    seen = sp.random(b, m, density=seen_density, format="csr", random_state=seed)
    seen.indptr, seen.indices = seen.indptr.astype(index_dtype), seen.indices.astype(index_dtype)
    return query, items, bias, seen


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_matches_reference_across_blocks_and_tiles(backend, dtype, index_dtype):
    # 37 rows on 2 threads: 2 tiles of 19 and 18 (GEMM); 2500 items: 5 blocks of 512, the last
    # partial. (Batches under 8 rows take the matrix-vector path: the other tests.)
    query, items, bias, seen = _problem(37, 2500, 8, dtype, index_dtype=index_dtype)
    ids, scores = top_n(query, items, bias, 25, seen, backend=backend, n_threads=2)
    want_ids, want_scores = top_n(query, items, bias, 25, seen, backend="numpy")
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(scores, want_scores)
    assert ids.dtype == np.int64 and scores.dtype == dtype
    dense = query.astype(np.float64) @ items.T.astype(np.float64) + bias
    for r in range(37):
        assert not set(ids[r]) & set(seen[r].indices)
        np.testing.assert_array_equal(scores[r], dense[r, ids[r]])
        # best first, ties to the lower index
        key = list(zip(-scores[r], ids[r], strict=True))
        assert key == sorted(key)


def test_few_rows_match_reference_across_wide_blocks(backend):
    # under 8 rows the scores come from matrix-vector products in blocks as wide as the scratch
    # allows (3 rows: 21845 items), so 50000 items cross two block edges
    query, items, bias, seen = _problem(3, 50_000, 4, np.float32, seen_density=0.01)
    ids, scores = top_n(query, items, bias, 30, seen, backend=backend, n_threads=2)
    want_ids, want_scores = top_n(query, items, bias, 30, seen, backend="numpy")
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(scores, want_scores)


def test_brute_force_order_on_ties(backend):
    scores = np.array([[1.0, 3.0, 3.0, 2.0, 3.0, 0.0]], np.float32)
    ids, best = top_n_scores(scores, 4, backend=backend)
    np.testing.assert_array_equal(ids, [[1, 2, 4, 3]])
    np.testing.assert_array_equal(best, [[3.0, 3.0, 3.0, 2.0]])


def test_thread_counts_give_the_same_answer(backend):
    query, items, bias, seen = _problem(50, 1500, 6, np.float32, seed=3)
    one = top_n(query, items, bias, 10, seen, backend=backend, n_threads=1)
    two = top_n(query, items, bias, 10, seen, backend=backend, n_threads=2)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, b)


def test_short_rows_are_padded_and_n_is_capped(backend):
    query, items, bias, _ = _problem(3, 5, 4, np.float64)
    # row 0 excludes all 5 items, row 1 excludes 2, row 2 nothing
    seen = sp.csr_matrix(np.array([[1, 1, 1, 1, 1], [0, 1, 0, 1, 0], [0, 0, 0, 0, 0]]))
    ids, scores = top_n(query, items, bias, 10**9, seen, backend=backend)
    assert ids.shape == scores.shape == (3, 5)  # n capped at the number of items
    assert (ids[0] == PAD_INDEX).all() and np.isneginf(scores[0]).all()
    assert sorted(ids[1, :3]) == [0, 2, 4] and (ids[1, 3:] == PAD_INDEX).all()
    assert np.isneginf(scores[1, 3:]).all() and np.isfinite(scores[1, :3]).all()
    assert sorted(ids[2]) == [0, 1, 2, 3, 4]


def test_exclude_rows_map_batch_rows_to_csr_rows_and_unsorted_rows_work(backend):
    query, items, bias, seen = _problem(6, 700, 5, np.float32, seed=5, seen_density=0.3)
    rows = np.array([5, 0, 0, 3, 2, 1])
    shuffled = seen.copy()
    for r in range(shuffled.shape[0]):  # reverse each row's indices: unsorted CSR
        lo, hi = shuffled.indptr[r], shuffled.indptr[r + 1]
        shuffled.indices[lo:hi] = shuffled.indices[lo:hi][::-1].copy()
    shuffled.has_sorted_indices = False
    ids, scores = top_n(query, items, bias, 30, shuffled, exclude_rows=rows, backend=backend)
    want = top_n(query, items, bias, 30, seen[rows], backend="numpy")
    np.testing.assert_array_equal(ids, want[0])
    np.testing.assert_array_equal(scores, want[1])


def test_nan_scores_are_never_ranked_and_scores_are_not_modified(backend):
    scores = np.array([[np.nan, 1.0, np.nan], [np.nan, np.nan, np.nan]], np.float64)
    before = scores.copy()
    ids, best = top_n_scores(scores, 2, sp.csr_matrix(np.array([[0, 1, 0], [0, 0, 0]])),
                             backend=backend)
    np.testing.assert_array_equal(ids, [[PAD_INDEX, PAD_INDEX], [PAD_INDEX, PAD_INDEX]])
    assert np.isneginf(best).all()
    np.testing.assert_array_equal(scores, before)


def test_no_bias_no_exclusion_and_empty_batch(backend):
    query, items, _, _ = _problem(4, 300, 3, np.float32, seed=7)
    ids, scores = top_n(query, items, None, 7, backend=backend)
    want = top_n_scores(query @ items.T, 7, backend="numpy")
    np.testing.assert_array_equal(ids, want[0])
    np.testing.assert_array_equal(scores, want[1])
    ids, scores = top_n(query[:0], items, None, 7, backend=backend)
    assert ids.shape == (0, 7) and scores.shape == (0, 7)


@pytest.mark.parametrize("n", [0, -1, True, 2.5, "3", None])
def test_bad_n_is_refused(n):
    with pytest.raises(ValueError, match="n must be"):
        top_n_scores(np.zeros((1, 3)), n)


def test_bad_shapes_and_rows_are_refused():
    q, items = np.zeros((2, 3)), np.zeros((5, 3))
    with pytest.raises(ValueError, match="do not match"):
        top_n(q, np.zeros((5, 4)))
    with pytest.raises(ValueError, match="item_bias"):
        top_n(q, items, np.zeros(4))
    with pytest.raises(ValueError, match="columns"):
        top_n(q, items, exclude=sp.csr_matrix((2, 4)))
    with pytest.raises(ValueError, match="exclude_rows"):
        top_n(q, items, exclude=sp.csr_matrix((3, 5)))
    with pytest.raises(ValueError, match=r"exclude_rows must lie"):
        top_n(q, items, exclude=sp.csr_matrix((3, 5)), exclude_rows=[0, 3])
    with pytest.raises(ValueError, match="backend"):
        top_n(q, items, backend="tpu")


def test_asking_for_cython_without_the_extension_says_so(monkeypatch):
    from fastrec._algorithms import topn

    monkeypatch.setattr(topn, "_compiled", lambda: None)
    with pytest.raises(BackendUnavailable, match="not built"):
        top_n(np.zeros((1, 2)), np.zeros((3, 2)), backend="cython")
    ids, _ = top_n(np.zeros((1, 2)), np.zeros((3, 2)), n=2)  # auto falls back to the reference
    np.testing.assert_array_equal(ids, [[0, 1]])


@pytest.mark.gpu
def test_cuda_matches_reference():
    from tests.cuda.helpers import gpu_unavailable_reason

    reason = gpu_unavailable_reason()
    if reason:
        pytest.skip(reason)
    import cupy

    query, items, bias, seen = _problem(37, 2500, 8, np.float32)
    ids, scores = top_n(cupy.asarray(query), cupy.asarray(items), cupy.asarray(bias), 25, seen)
    want_ids, want_scores = top_n(query, items, bias, 25, seen, backend="numpy")
    np.testing.assert_array_equal(cupy.asnumpy(ids), want_ids)
    np.testing.assert_array_equal(cupy.asnumpy(scores), want_scores)


def test_cuda_backend_takes_device_arrays():
    with pytest.raises(ValueError, match="CuPy arrays"):
        top_n(np.zeros((1, 2)), np.zeros((3, 2)), backend="cuda")
