"""The Numba mirror of the header scalar math agrees with the C header, function by function."""

import numpy as np
import pytest

from tests.conftest import require_backend


@pytest.fixture(scope="module")
def both():
    require_backend("cython")
    require_backend("numba")
    from fastrec.backends.cython import _scalar
    from fastrec.backends.numba import scalar

    return _scalar, scalar


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
    acc = np.empty(nb.SGD_DOT_LANES)
    assert c.sgd_lane_dot_f64(p, q) == nb.sgd_lane_dot(p, q, acc)
    assert c.sgd_lane_dot_f64(p, q) == pytest.approx(float(p @ q), abs=1e-12)
