"""NNDSVD's truncated SVD (randomized block Krylov) and the compiled CSR building blocks under it:
the transpose, the CSR x dense products and the one-pass X^T (X V) match scipy bit for bit at any
thread count, and the singular triplets match a dense SVD where the spectrum has a gap."""

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp

from fastrec._algorithms import nmf_mu
from fastrec._algorithms.nmf_mu import CSRPair, nndsvd_init, truncated_svd
from tests.conftest import backend_or_skip


def _sparse_module():
    backend_or_skip("cython", "nmf_update_full")
    from fastrec.backends.cython import _sparse

    return _sparse


def _planted(n_rows, n_cols, rank, seed=0, density=0.05, noise=1e-3):
    """Sparse non-negative X whose stored entries follow a rank-``rank`` matrix with a decaying
    spectrum plus small noise; some rows and columns are empty."""
    rng = np.random.default_rng(seed)
    left = rng.random((n_rows, rank)) * np.geomspace(1, 0.05, rank)
    right = rng.random((rank, n_cols))
    rows, cols = np.nonzero(rng.random((n_rows, n_cols)) < density)
    keep = (rows % 17 != 3) & (cols % 13 != 5)
    rows, cols = rows[keep], cols[keep]
    values = np.einsum("nk,kn->n", left[rows], right[:, cols]) + noise * rng.random(rows.size)
    return sp.csr_matrix((values, (rows, cols)), shape=(n_rows, n_cols))


def _planted_csr(index, dtype):
    """The compiled sparse module and a planted X [700, 300] with its index arrays in ``index``."""
    x = _planted(700, 300, 5).astype(dtype)
    return _sparse_module(), x, x.indptr.astype(index), x.indices.astype(index)


@pytest.mark.parametrize("index", [np.int32, np.int64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transpose_and_products_are_scipys_bit_for_bit(index, dtype):
    _sparse, x, indptr, indices = _planted_csr(index, dtype)
    expected = x.T.tocsr()
    expected.sort_indices()
    for n_threads in (1, 3):
        t = _sparse.csr_transpose(indptr, indices, x.data, x.shape[1], n_threads)
        assert [a.dtype for a in t] == [np.dtype(index), np.dtype(index), np.dtype(dtype)]
        for got, want in zip(t, (expected.indptr, expected.indices, expected.data), strict=True):
            np.testing.assert_array_equal(got, want)
        # blocks in X's dtype, products in it, as scipy's with two operands of that dtype
        v = np.random.default_rng(1).standard_normal((x.shape[1], 7)).astype(dtype)
        z = np.random.default_rng(2).standard_normal((x.shape[0], 7)).astype(dtype)
        got = _sparse.csr_times_dense(indptr, indices, x.data, v, n_threads)
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got, x @ v)
        np.testing.assert_array_equal(_sparse.csr_times_dense(*t, z, n_threads), x.T @ z)


@pytest.mark.parametrize("index", [np.int32, np.int64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_pass_gram_product_is_the_halves_two_products_bit_for_bit(index, dtype):
    _sparse, x, indptr, indices = _planted_csr(index, dtype)
    half = x.shape[0] // 2
    top, bottom = x[:half], x[half:]
    for width in (5, 8, 16, 32, 40):  # run-time and compile-time widths, both dtypes
        v = np.random.default_rng(width).standard_normal((x.shape[1], width)).astype(dtype)
        expected = top.T @ (top @ v)
        expected += bottom.T @ (bottom @ v)
        for n_threads in (1, 2, 3):
            np.testing.assert_array_equal(
                _sparse.csr_gram_times_dense(indptr, indices, x.data, v, n_threads), expected)


def test_transpose_of_an_empty_matrix():
    _sparse = _sparse_module()
    x = sp.csr_matrix((4, 3))
    t_indptr, t_indices, t_data = _sparse.csr_transpose(x.indptr, x.indices, x.data, 3, 2)
    np.testing.assert_array_equal(t_indptr, np.zeros(4))
    assert t_indices.size == 0 and t_data.size == 0


# (X's dtype, singular values' rtol, subspace angle in degrees, orthonormality): float64 to near
# its rounding; float32 (NMF's default: products in float32, the basis float64) to float32's
@pytest.mark.parametrize("dtype, rtol, degrees, atol", [(np.float64, 1e-9, 1e-5, 1e-10),
                                                        (np.float32, 1e-5, 2e-2, 1e-5)])
@pytest.mark.parametrize("shape", [(600, 250), (250, 600)])
def test_truncated_svd_matches_a_dense_svd_where_the_spectrum_has_a_gap(shape, dtype, rtol,
                                                                        degrees, atol):
    x = _planted(*shape, rank=8, density=1.0)
    k = 6
    u, s, vt = truncated_svd(CSRPair.build(x, dtype), k, np.random.default_rng(0), 2)
    u_ref, s_ref, vt_ref = np.linalg.svd(x.toarray(), full_matrices=False)
    np.testing.assert_allclose(s, s_ref[:k], rtol=rtol)
    assert np.degrees(scipy.linalg.subspace_angles(vt.T, vt_ref[:k].T).max()) < degrees
    assert np.degrees(scipy.linalg.subspace_angles(u, u_ref[:, :k]).max()) < degrees
    np.testing.assert_allclose(u.T @ u, np.eye(k), atol=atol)


def test_truncated_svd_when_the_krylov_space_outgrows_x():
    """Rank below the Krylov space (the basis breaks down) and k near the shorter side (the
    exact Gram path, whose zero singular values come out near sqrt(eps) sigma_1): the leading
    triplets are still the dense SVD's."""
    low = _planted(500, 120, rank=3, density=1.0, noise=0.0)
    u, s, vt = truncated_svd(CSRPair.build(low, np.float64), 5, np.random.default_rng(1), 1)
    s_ref = np.linalg.svd(low.toarray(), compute_uv=False)
    np.testing.assert_allclose(s[:3], s_ref[:3], rtol=1e-9)
    np.testing.assert_allclose(s[3:], 0, atol=1e-6 * s_ref[0])
    assert np.all(np.isfinite(u)) and np.all(np.isfinite(vt))
    x = _planted(300, 40, rank=6, density=0.5)
    _, s, _ = truncated_svd(CSRPair.build(x, np.float64), 39, np.random.default_rng(1), 1)
    np.testing.assert_allclose(s, np.linalg.svd(x.toarray(), compute_uv=False)[:39],
                               rtol=1e-6, atol=1e-6 * s[0])


def test_nndsvd_is_deterministic_thread_independent_and_the_same_without_extensions(
        monkeypatch):
    _sparse_module()
    x = CSRPair.build(_planted(1200, 500, 10), np.float32, 2)
    runs = [nndsvd_init(x, 6, "nndsvda", np.random.default_rng(5), np.float32, t)
            for t in (1, 2, 3)]
    monkeypatch.setattr(nmf_mu, "_compiled_sparse", lambda: None)
    runs.append(nndsvd_init(x, 6, "nndsvda", np.random.default_rng(5), np.float32, 2))
    for w, h in runs[1:]:
        np.testing.assert_array_equal(w, runs[0][0])
        np.testing.assert_array_equal(h, runs[0][1])
    other = nndsvd_init(x, 6, "nndsvda", np.random.default_rng(6), np.float32, 2)
    assert not np.array_equal(other[0], runs[0][0])
    assert np.all(runs[0][0] >= 0) and np.all(runs[0][1] >= 0)
