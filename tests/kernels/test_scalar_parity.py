"""The Numba mirror of the header scalar math agrees with the C header, function by function."""

import numpy as np
import pytest

from tests.conftest import backend_or_skip


@pytest.fixture(scope="module")
def both(shims):
    backend_or_skip("numba")
    from fastrec.backends.numba import scalar

    return shims, scalar


def test_sgd_scalars(both):
    c, nb = both
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = rng.normal(size=5)
        assert c.sgd_error_f64(*a) == nb.sgd_error(*a)
        b = rng.normal(size=4)
        assert c.sgd_bias_step_f64(*b) == nb.sgd_bias_step(*b)
        f = rng.normal(size=4)
        assert c.sgd_factor_step_f64(*f) == nb.sgd_factor_step(*f)
        assert c.sgd_step_f64(*f[:2]) == nb.sgd_step(*f[:2])
        assert c.sgd_shrink_f64(*f[:2]) == nb.sgd_shrink(*f[:2])


@pytest.mark.parametrize("k", [0, 1, 15, 16, 17, 32, 100])
def test_lane_dot(both, k):
    c, nb = both
    rng = np.random.default_rng(k)
    p, q = rng.normal(size=k), rng.normal(size=k)
    assert c.sgd_lane_dot_f64(p, q) == _numba_lane_dot(p, q)
    assert c.sgd_lane_dot_f64(p, q) == pytest.approx(float(p @ q), abs=1e-12)


def _numba_lane_dot(p, q):
    from numba import njit

    from fastrec.backends.numba.scalar import sgd_lane_dot

    return njit(lambda a, b: sgd_lane_dot(a, b))(p, q)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 15, 16, 17, 32, 100, 112])
def test_vector_factor_step_is_the_scalar_step(both, k, dtype):
    """The Numba row update (explicit vector IR, straight-line for the padded common widths
    such as 112) is the header's scalar step, element by element, and its dot product sums
    exactly as the 16-lane order written out in numpy; the row-view dot (NMF) agrees."""
    _, nb = both
    from numba import njit

    from fastrec.backends.numba.simd import lane_dot, table_factor_step, table_lane_dot

    rng = np.random.default_rng(k)
    users, items = rng.normal(size=(3, k)).astype(dtype), rng.normal(size=(2, k)).astype(dtype)
    p, q = users[2].copy(), items[1].copy()
    step, shrink = dtype(0.03), dtype(0.999)
    expected = [nb.sgd_factor_step(a, b, step, shrink) for a, b in zip(p, q, strict=True)]
    lanes = np.zeros(16, dtype)
    for j in range(k):
        lanes[j % 16] += p[j] * q[j]
    for width in (8, 4, 2):
        lanes[:width] += lanes[width:2 * width]

    @njit
    def run(users, items, step, shrink):
        dot = table_lane_dot(users, 2, items, 1)
        same = lane_dot(users[2], items[1])
        table_factor_step(users, 2, items, 1, step, shrink)
        return dot, same

    dot, same = run(users, items, step, shrink)
    assert dot == same == lanes[0] + lanes[1]
    np.testing.assert_array_equal(users[2], np.array([e[0] for e in expected], dtype))
    np.testing.assert_array_equal(items[1], np.array([e[1] for e in expected], dtype))
