"""Every backend's NMF kernels against the dense numpy reference (a different formulation)."""

import numpy as np
import pytest
import scipy.sparse as sp

from fastrec.backends import reference as ref
from tests.conftest import backend_or_skip
from tests.tolerances import tolerance

BACKENDS = ["cython", "numba"]
KERNELS = ("nmf_update_full", "nmf_update_observed", "nmf_loss_full", "nmf_loss_observed")


def problem(dtype, index=np.int32, k=5, n=23, m=17, seed=0):
    """Small random CSR with an empty row and an empty column; factors > 0."""
    rng = np.random.default_rng(seed)
    x = sp.random(n, m, density=0.3, format="csr", random_state=seed, dtype=np.float64)
    x.data = rng.uniform(0.5, 5.0, x.nnz)
    x = x.tolil()
    x[3, :] = 0
    x[:, 4] = 0
    x = sp.csr_matrix(x)
    x.eliminate_zeros()
    x = x.astype(dtype)
    xt = x.T.tocsr()
    arrays = [(a.indptr.astype(index), a.indices.astype(index), a.data) for a in (x, xt)]
    w = rng.uniform(0.1, 1.0, (n, k)).astype(dtype)
    ht = rng.uniform(0.1, 1.0, (m, k)).astype(dtype)
    return arrays, w, ht, rng


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("beta", [2, 1])
@pytest.mark.parametrize("k", [5, 16])  # generic path and a register-resident rank
def test_update_full_matches_reference(name, dtype, beta, k):
    backend = backend_or_skip(name, *KERNELS)
    (rows, cols), w, ht, _ = problem(dtype, k=k)
    for l1, l2 in ((0.0, 0.0), (0.3, 0.7)):
        expected_w, got_w = w.copy(), w.copy()
        ref.nmf_update_full(*rows, expected_w, ht, beta, l1, l2)
        backend.nmf_update_full(*rows, got_w, ht, beta, l1, l2, 2)
        np.testing.assert_allclose(got_w, expected_w, **tolerance(dtype))
        assert np.all(got_w[3] == 0) and np.all(np.isfinite(got_w))  # empty row
        expected_h, got_h = ht.copy(), ht.copy()
        ref.nmf_update_full(*cols, expected_h, w, beta, l1, l2)
        backend.nmf_update_full(*cols, got_h, w, beta, l1, l2, 2)
        np.testing.assert_allclose(got_h, expected_h, **tolerance(dtype))
    got = backend.nmf_loss_full(*rows, w, ht, beta, 2)
    assert got == pytest.approx(ref.nmf_loss_full(*rows, w, ht, beta),
                                rel=tolerance(dtype)["rtol"])


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_rank_blas_path_matches_reference(name, dtype):
    """From NMF_BLAS_MIN_RANK on, the Frobenius Gram matrices and denominators are BLAS products
    (syrk per chunk of rows, GEMM per task); the update, the loss and every thread count agree
    with the reference. 1,100 rows: two Gram chunks and nine tasks."""
    from fastrec.backends._cpu_layout import NMF_BLAS_MIN_RANK

    backend = backend_or_skip(name, *KERNELS)
    k = NMF_BLAS_MIN_RANK + 1
    (rows, cols), w, ht, _ = problem(dtype, k=k, n=1100, m=40)
    for csr, f, o in ((rows, w, ht), (cols, ht, w)):
        expected = f.copy()
        ref.nmf_update_full(*csr, expected, o, 2, 0.3, 0.7)
        results = []
        for n_threads in (1, 2, 3):
            got = f.copy()
            backend.nmf_update_full(*csr, got, o, 2, 0.3, 0.7, n_threads)
            results.append(got)
        np.testing.assert_allclose(results[0], expected, **tolerance(dtype))
        for other in results[1:]:
            np.testing.assert_array_equal(other, results[0])
    got = backend.nmf_loss_full(*rows, w, ht, 2, 2)
    assert got == pytest.approx(ref.nmf_loss_full(*rows, w, ht, 2), rel=tolerance(dtype)["rtol"])


@pytest.mark.parametrize("name", [*BACKENDS, "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [5, 16])
def test_observed_step_whose_quotient_overflows_stays_finite(name, dtype, k):
    """A row that has died out (entries subnormal or zero, so every term of its denominators
    underflows) but whose ratings pull it back: num / den overflows, which made inf and NaN
    factors (observed mode with biases, about half of the default sweep's runs). The step is
    then num / (den / value): here 4 / (2 * 0.5 * 0.5 + 2 * 0.15) = 5 for the subnormal entry,
    and zero entries stay zero."""
    backend = ref if name == "numpy" else backend_or_skip(name, *KERNELS)
    indptr, indices = np.array([0, 2], np.int32), np.array([0, 1], np.int32)
    data = np.array([4.0, 4.0], dtype)
    other = np.full((2, k), 0.5, dtype)
    factors = np.zeros((1, k), dtype)
    factors[0, 0] = np.finfo(dtype).smallest_subnormal * 64
    bias, other_bias = np.zeros(1, dtype), np.zeros(2, dtype)
    backend.nmf_update_observed(indptr, indices, data, factors, other, bias, other_bias, 0.0, 2,
                                0.0, 0.15, 0.02, False, 1)
    assert np.all(np.isfinite(factors))
    assert factors[0, 0] == pytest.approx(5.0, rel=0.05)
    assert np.all(factors[0, 1:] == 0)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("beta", "biased"), [(2, False), (2, True), (1, False)])
@pytest.mark.parametrize("k", [5, 16])
def test_update_observed_matches_reference(name, dtype, beta, biased, k):
    backend = backend_or_skip(name, *KERNELS)
    (rows, cols), w, ht, rng = problem(dtype, k=k)
    bu = rng.normal(0, 0.5, w.shape[0]).astype(dtype)
    bi = rng.normal(0, 0.5, ht.shape[0]).astype(dtype)
    for side, (csr, f, o, b, ob) in enumerate(((rows, w, ht, bu, bi), (cols, ht, w, bi, bu))):
        expected_f, got_f = f.copy(), f.copy()
        expected_b, got_b = b.copy(), b.copy()
        ref.nmf_update_observed(*csr, expected_f, o, expected_b, ob, 3.0, beta, 0.01, 0.06, 0.02,
                                biased)
        backend.nmf_update_observed(*csr, got_f, o, got_b, ob, 3.0, beta, 0.01, 0.06, 0.02,
                                    biased, 2)
        np.testing.assert_allclose(got_f, expected_f, **tolerance(dtype))
        np.testing.assert_allclose(got_b, expected_b, **tolerance(dtype))
        empty = 3 if side == 0 else 4
        assert np.all(got_f[empty] == 0) and np.all(np.isfinite(got_f))
    got = backend.nmf_loss_observed(*rows, w, ht, bu, bi, 3.0, beta, biased, 2)
    expected = ref.nmf_loss_observed(*rows, w, ht, bu, bi, 3.0, beta, biased)
    assert got == pytest.approx(expected, rel=tolerance(dtype)["rtol"])


@pytest.mark.parametrize("name", BACKENDS)
def test_int64_indices_and_thread_count_independence(name):
    backend = backend_or_skip(name, *KERNELS)
    (rows, _), w, ht, _ = problem(np.float32, index=np.int64, k=32, n=300, m=40)
    results = []
    for n_threads in (1, 2, 3):
        got = w.copy()
        backend.nmf_update_full(*rows, got, ht, 1, 0.0, 0.0, n_threads)
        bu = np.zeros(w.shape[0], np.float32)
        backend.nmf_update_observed(*rows, got, ht, bu, np.zeros(ht.shape[0], np.float32), 0.0,
                                    2, 0.0, 0.05, 0.0, False, n_threads)
        results.append(got)
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])
    expected = w.copy()
    ref.nmf_update_full(*rows, expected, ht, 1, 0.0, 0.0)
    got = w.copy()
    backend.nmf_update_full(*rows, got, ht, 1, 0.0, 0.0, 2)
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scalar_parity_cython_numba(dtype, shims):
    """Every scalar function of nmf.h against its Numba mirror, on edge values: the same bits."""
    backend_or_skip("numba")
    from fastrec.backends.numba import scalar as nb

    assert shims.nmf_epsilon() == nb.NMF_EPSILON
    eps = dtype(nb.NMF_EPSILON)
    tiny = np.finfo(dtype).smallest_subnormal
    # The last two: a step whose quotient overflows, for a subnormal and for a zero entry.
    a = np.array([0.0, 1e-9, 0.5, 3.0, -2.0, 7.0, 64 * tiny, 0.0], dtype)
    b = np.array([0.0, 1e-9, 2.0, 0.0, 1.5, 1e-12, 4.0, 4.0], dtype)
    c = np.array([0.0, 0.1, 0.0, 2.0, 0.5, 3.0, 51 * tiny, 32 * tiny], dtype)
    d = np.array([0.2, 0.0, 1.0, 0.5, 0.0, 0.1, 0.0, 0.0], dtype)
    cases = {
        "nmf_kl_ratio": lambda i: nb.nmf_kl_ratio(a[i], b[i], eps),
        "nmf_regularised_denominator": lambda i: nb.nmf_regularised_denominator(a[i], b[i], c[i],
                                                                                d[i]),
        "nmf_mu_step": lambda i: nb.nmf_mu_step(a[i], b[i], c[i], eps),
        "nmf_positive_part": lambda i: nb.nmf_positive_part(a[i]),
        "nmf_negative_part": lambda i: nb.nmf_negative_part(a[i]),
        "nmf_bias_solve": lambda i: nb.nmf_bias_solve(a[i], b[i], c[i]),
        "nmf_kl_entry": lambda i: nb.nmf_kl_entry(float(a[i]), float(b[i])),
    }
    for fname, mirror in cases.items():
        got = shims.nmf_scalar(fname, a, b, c, d)
        expected = np.array([mirror(i) for i in range(a.shape[0])], dtype)
        np.testing.assert_array_equal(got, expected, err_msg=fname)


# Every rank class: the generic path (5, 20, 70), each register-resident rank and the BLAS path
# (130: the same SciPy BLAS calls from both backends).
ALL_RANKS = [5, 16, 20, 32, 48, 64, 70, 96, 128, 130]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", ALL_RANKS)
def test_full_mode_cython_equals_numba_bit_for_bit(dtype, k):
    """Both CPU backends compute the full-mode updates in the same order: numerators as one
    chain per row in entry order, dot products in sgd_lane_dot's 16-lane order, and the
    Frobenius products (Gram matrices, denominators, numerators) as fused multiply-add chains
    (csrc/include/fastrec/nmf_cpu.h, "Fused products") or, at BLAS ranks, the same BLAS calls:
    they agree bit for bit at every rank (generic, register-resident and BLAS paths) and dtype,
    both losses."""
    cy, nb = backend_or_skip("cython"), backend_or_skip("numba")
    rng = np.random.default_rng(k)
    x = sp.random(150, 90, density=0.1, format="csr", random_state=k, dtype=dtype)
    x.data = (rng.random(x.nnz) + 0.1).astype(dtype)
    rows = (x.indptr, x.indices, x.data)
    xt = x.T.tocsr()
    cols = (xt.indptr, xt.indices, xt.data)
    w0, h0 = rng.random((150, k)).astype(dtype), rng.random((90, k)).astype(dtype)
    for beta in (2, 1):
        results = []
        for backend in (cy, nb):
            w, ht = w0.copy(), h0.copy()
            for _ in range(3):
                backend.nmf_update_full(*rows, w, ht, beta, 0.01, 0.02, 2)
                backend.nmf_update_full(*cols, ht, w, beta, 0.01, 0.02, 2)
            results.append((w, ht))
        np.testing.assert_array_equal(results[0][0], results[1][0], err_msg=f"beta {beta}")
        np.testing.assert_array_equal(results[0][1], results[1][1], err_msg=f"beta {beta}")


def fused_chain(values, coeffs):
    """sum_j values[j] * coeffs[j] as a chain of float64 fused multiply-adds, each rounded once
    (exact rational arithmetic, then one rounding)."""
    from fractions import Fraction

    acc = 0.0
    for a, b in zip(values, coeffs, strict=True):
        acc = float(Fraction(float(a)) * Fraction(float(b)) + Fraction(acc))
    return acc


def cpu_fuses() -> bool:
    """Whether the kernels running here have FMA: the Cython build dispatches to its AVX2 or
    AVX-512 version (and Numba, compiling for this CPU, has FMA too)."""
    try:
        from fastrec.backends.cython._info import build_info
    except ImportError:
        return False
    return build_info()["isa"].startswith(("x86-64-v3", "x86-64-v4"))


@pytest.mark.skipif(not cpu_fuses(), reason="this CPU's kernel version has no FMA: the "
                    "Frobenius products multiply, then add (tests/test_isa_versions.py covers "
                    "that build)")
@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("k", [5, 32])  # generic path, register-resident path
def test_frobenius_products_are_one_rounding_per_multiply_add(name, k):
    """The Gram matrix, the denominators and the numerators are fused multiply-add chains (one
    rounding per multiply-add), checked in float64 against exact chains through the update
    w * num / den. Unfused chains differ from these in about a third of the Gram entries at
    k = 32."""
    backend = backend_or_skip(name, *KERNELS)
    rng = np.random.default_rng(k)
    n = 8
    other = rng.uniform(0.5, 1.5, (k, k))
    w = rng.uniform(0.5, 1.5, (n, k))
    gram = np.zeros((k, k))
    for j in range(k):
        for m in range(k):
            gram[j, m] = fused_chain(other[:, j], other[:, m])
    # Every row of X stores all k columns, so row r's numerator chain is x_r . other[:, f].
    dense = rng.uniform(0.5, 1.5, (n, k))
    x = sp.csr_matrix(dense)
    got = w.copy()
    backend.nmf_update_full(x.indptr, x.indices, x.data, got, other, 2, 0.0, 0.0, 1)
    for r in range(n):
        num = np.array([fused_chain(dense[r], other[:, f]) for f in range(k)])
        den = np.array([fused_chain(w[r], gram[:, f]) for f in range(k)])
        np.testing.assert_array_equal(got[r], w[r] * (num / den), err_msg=f"row {r}")
