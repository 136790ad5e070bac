"""Counter-based RNG and optimiser steps: scalar parity of the header math (C++ via Cython,
Numba, numpy) and every backend's optimiser kernels against the numpy reference."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from fastrec.backends.reference import optim as ref_optim
from fastrec.backends.reference import rng as ref_rng
from tests.conftest import backend_or_skip
from tests.tolerances import tolerance

BACKENDS = ("numpy", "cython", "numba")


def test_rng_parity_cython_numba_numpy(shims):
    c = shims
    from numba import njit

    from fastrec.backends.numba import rng as nb_rng

    @njit
    def draws(seed, stream, index, n):
        key = nb_rng.rng_key(seed, stream)
        bits = nb_rng.rng_at(key, index)
        return bits, nb_rng.rng_below(bits, n), nb_rng.rng_uniform(bits)

    for seed, stream, index, n in [(0, 0, 0, 1), (42, 7, 123456789, 1000),
                                   (2**63 + 5, 2**40, 2**62, 2**32), (1, 2, 3, 9724)]:
        key = c.rng_key_py(seed, stream)
        bits = c.rng_at_py(key, index)
        assert ref_rng.rng_key(seed, stream) == key
        assert ref_rng.rng_at(key, index) == bits
        assert ref_rng.rng_below(bits, n) == c.rng_below_py(bits, n) < n
        assert ref_rng.rng_uniform(bits) == c.rng_uniform_py(bits)
        nb_bits, nb_below, nb_uniform = draws(*(np.uint64(x) for x in (seed, stream, index, n)))
        assert int(nb_bits) == bits
        assert int(nb_below) == c.rng_below_py(bits, n)
        assert nb_uniform == c.rng_uniform_py(bits)


def test_optimizer_scalar_parity(shims):
    c = shims
    from numba import njit

    from fastrec.backends.numba import optim as nb_optim

    @njit
    def adam(w, m, v, g, lr, b1, b2, eps, step):
        return nb_optim.adam_update(w, m, v, g, nb_optim.adam_step_size(lr, b1, step),
                                    nb_optim.adam_inv_sqrt_bc2(b2, step), b1, b2, eps)

    args = (0.3, 0.01, 0.002, -0.7, 0.01, 0.9, 0.999, 1e-8, 3)
    assert c.adam_update_f64(*args) == adam(*args)
    w, m, v = np.array([0.3]), np.array([0.01]), np.array([0.002])
    ref_optim.adam_step(w, np.array([-0.7]), m, v, 3, 0.01, 0.9, 0.999, 1e-8)
    assert_allclose((w[0], m[0], v[0]), c.adam_update_f64(*args), rtol=1e-15)
    assert c.adagrad_update_f64(0.3, 0.5, -0.7, 0.1, 1e-10) == nb_optim.adagrad_update(
        0.3, 0.5, -0.7, 0.1, 1e-10)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_step_matches_reference(name, dtype):
    backend = backend_or_skip(name, "adam_step")
    rng = np.random.default_rng(0)
    p0 = rng.normal(size=5000).astype(dtype)
    states = [rng.normal(size=5000).astype(dtype), rng.random(5000).astype(dtype)]
    expected = [p0.copy(), *(s.copy() for s in states)]
    got = [p0.copy(), *(s.copy() for s in states)]
    for step in (1, 2, 7):
        g = rng.normal(size=5000).astype(dtype)
        ref_optim.adam_step(*expected[:1], g, *expected[1:], step, 0.01)
        backend.adam_step(got[0], g, got[1], got[2], step, 0.01, n_threads=2)
    for e, o in zip(expected, got, strict=True):
        assert_allclose(o, e, **tolerance(dtype))


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("kind", ["adam", "adagrad"])
def test_sparse_steps_match_reference(name, index_dtype, kind):
    kernel = f"sparse_{kind}_step"
    backend = backend_or_skip(name, kernel)
    rng = np.random.default_rng(1)
    n_rows, d = 50, 6
    table0 = rng.normal(size=(n_rows, d))
    rows = rng.integers(0, 20, 64).astype(index_dtype)  # many duplicates, rows >= 20 untouched
    grads = rng.normal(size=(64, d))
    expected, got = table0.copy(), table0.copy()
    if kind == "adam":
        es, gs = [np.zeros((n_rows, d)) for _ in range(2)], [np.zeros((n_rows, d))
                                                             for _ in range(2)]
        for step in (1, 2):
            ref_optim.sparse_adam_step(expected, rows, grads, *es, step, 0.05)
            backend.sparse_adam_step(got, rows, grads, *gs, step, 0.05, n_threads=2)
    else:
        es, gs = [np.full((n_rows, d), 0.1)], [np.full((n_rows, d), 0.1)]
        for _ in range(2):
            ref_optim.sparse_adagrad_step(expected, rows, grads, *es, 0.05)
            backend.sparse_adagrad_step(got, rows, grads, *gs, 0.05, n_threads=2)
    assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    for e, o in zip(es, gs, strict=True):
        assert_allclose(o, e, rtol=1e-12, atol=1e-14)
    assert_allclose(got[20:], table0[20:], rtol=0, atol=0)


def test_sparse_adam_equals_dense_adam_on_unique_rows():
    """With every row present once, lazy Adam is plain Adam."""
    rng = np.random.default_rng(2)
    table = rng.normal(size=(8, 3))
    grads = rng.normal(size=(8, 3))
    dense = table.copy().ravel()
    m, v = np.zeros(24), np.zeros(24)
    ref_optim.adam_step(dense, grads.ravel().copy(), m, v, 1, 0.1)
    sm, sv = np.zeros((8, 3)), np.zeros((8, 3))
    ref_optim.sparse_adam_step(table, np.arange(8)[::-1].copy(), grads[::-1].copy(), sm, sv, 1,
                               0.1)
    assert_allclose(table.ravel(), dense, rtol=1e-14)
