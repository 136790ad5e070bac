"""NMF estimator: scikit-learn oracle, planted signal, monotone loss, API and bad input."""

import numpy as np
import pytest
import scipy.sparse as sp

from fastrec import NMF
from fastrec._algorithms.nmf_mu import (
    CSRPair,
    ObservedPenalty,
    _factor_penalty,
    observed_objective,
)
from fastrec.backends import get_backend
from tests.conftest import backend_or_skip

BACKENDS = ["cython", "numba", "numpy"]


def counts_matrix(n=40, m=30, density=0.25, seed=0):
    rng = np.random.default_rng(seed)
    x = sp.random(n, m, density=density, format="csr", random_state=seed, dtype=np.float64)
    x.data = rng.poisson(3.0, x.nnz) + 1.0
    return x


@pytest.mark.parametrize("backend", ["cython", "numba"])
@pytest.mark.parametrize("beta_loss", ["frobenius", "kullback-leibler"])
def test_follows_sklearn_mu_iterate_for_iterate(backend, beta_loss):
    """Same W0, H0, no regularisation: fastrec's full mode is scikit-learn's solver='mu'."""
    backend_or_skip(backend, "nmf_update_full")
    sk = pytest.importorskip("sklearn.decomposition")
    x = counts_matrix()
    rng = np.random.default_rng(1)
    w0, h0 = rng.uniform(0.1, 1.0, (40, 4)), rng.uniform(0.1, 1.0, (4, 30))
    for max_iter in (1, 7, 25):
        ref = sk.NMF(4, solver="mu", beta_loss=beta_loss, init="custom", max_iter=max_iter,
                     tol=0)
        w_ref = ref.fit_transform(x, W=w0.copy(), H=h0.copy())
        ours = NMF(4, beta_loss=beta_loss, init="custom", max_iter=max_iter, tol=0,
                   dtype="float64", backend=backend, n_threads=2)
        w = ours.fit_transform(x, W=w0, H=h0)
        np.testing.assert_allclose(w, w_ref, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ours.components_, ref.components_, rtol=1e-9, atol=1e-12)
        assert ours.reconstruction_err_ == pytest.approx(ref.reconstruction_err_, rel=1e-9)
        assert ours.n_iter_ == ref.n_iter_


def test_stopping_rule_and_regularisation_match_sklearn():
    backend_or_skip("cython", "nmf_update_full")
    sk = pytest.importorskip("sklearn.decomposition")
    x = counts_matrix(seed=3)
    rng = np.random.default_rng(2)
    w0, h0 = rng.uniform(0.1, 1.0, (40, 3)), rng.uniform(0.1, 1.0, (3, 30))
    kwargs = dict(beta_loss="frobenius", init="custom", max_iter=300, tol=1e-3, alpha_W=0.01,
                  alpha_H=0.02, l1_ratio=0.3)
    ref = sk.NMF(3, solver="mu", **kwargs)
    w_ref = ref.fit_transform(x, W=w0.copy(), H=h0.copy())
    ours = NMF(3, dtype="float64", backend="cython", **kwargs)
    w = ours.fit_transform(x, W=w0, H=h0)
    assert ours.n_iter_ == ref.n_iter_ < 300
    np.testing.assert_allclose(w, w_ref, rtol=1e-8, atol=1e-11)
    # transform: W for fixed H from scikit-learn's constant start
    np.testing.assert_allclose(ours.transform(x[:5]), ref.transform(x[:5]), rtol=1e-6,
                               atol=1e-9)
    np.testing.assert_allclose(ours.inverse_transform(w[:2]), w[:2] @ ours.components_)


def planted_ratings(n_users=120, n_items=80, k=3, density=0.3, seed=0):
    rng = np.random.default_rng(seed)
    p, q = rng.uniform(0.2, 1.2, (n_users, k)), rng.uniform(0.2, 1.2, (n_items, k))
    mask = rng.random((n_users, n_items)) < density
    users, items = np.nonzero(mask)
    ratings = np.einsum("nk,nk->n", p[users], q[items])
    order = rng.permutation(users.shape[0])
    return users[order], items[order], ratings[order]


@pytest.mark.parametrize("backend", BACKENDS)
def test_observed_mode_learns_planted_signal(backend):
    backend_or_skip(backend, "nmf_update_observed")
    users, items, ratings = planted_ratings()
    cut = int(0.85 * users.shape[0])
    model = NMF(3, mode="observed", init="random", max_iter=300, tol=0, alpha_W=0.0, random_state=0,
                backend=backend, dtype="float64")
    model.fit((users[:cut], items[:cut], ratings[:cut]))
    pred = model.predict(users[cut:], items[cut:])
    rmse = float(np.sqrt(np.mean((pred - ratings[cut:]) ** 2)))
    assert rmse < 0.1 * ratings.std()
    assert np.all(model.user_factors_ >= 0) and np.all(model.item_factors_ >= 0)


@pytest.mark.parametrize(("beta_loss", "biased"), [("frobenius", False), ("frobenius", True),
                                                   ("kullback-leibler", False)])
def test_observed_objective_never_increases(beta_loss, biased):
    backend_or_skip("cython", "nmf_update_observed")
    backend = get_backend("cython")
    users, items, ratings = planted_ratings(seed=4)
    ratings = ratings + np.random.default_rng(0).normal(0, 0.1, ratings.shape[0]).clip(0)
    x = CSRPair.build(sp.csr_matrix((ratings, (users, items))), np.float64)
    rng = np.random.default_rng(0)
    w, ht = rng.uniform(0.1, 1, (x.shape[0], 4)), rng.uniform(0.1, 1, (x.shape[1], 4))
    bu, bi = np.zeros(x.shape[0]), np.zeros(x.shape[1])
    mu = float(ratings.mean()) if biased else 0.0
    pen = ObservedPenalty(0.01, 0.06, 0.01, 0.06, 0.02)
    values = [observed_objective(backend, x, w, ht, bu, bi, mu, 2 if beta_loss == "frobenius"
                                 else 1, biased, pen, 1)]
    beta = 2 if beta_loss == "frobenius" else 1
    for _ in range(30):
        backend.nmf_update_observed(*x.rows, w, ht, bu, bi, mu, beta, 0.01, 0.06, 0.02, biased, 2)
        values.append(observed_objective(backend, x, w, ht, bu, bi, mu, beta, biased, pen, 1))
        backend.nmf_update_observed(*x.cols, ht, w, bi, bu, mu, beta, 0.01, 0.06, 0.02, biased, 2)
        values.append(observed_objective(backend, x, w, ht, bu, bi, mu, beta, biased, pen, 1))
    diffs = np.diff(values)
    assert np.all(diffs <= 1e-9 * values[0]), diffs.max()
    assert values[-1] < 0.5 * values[0]


@pytest.mark.parametrize(("l1", "l2"), [(0.0, 0.15), (0.07, 0.0), (0.07, 0.15), (0.0, 0.0)])
def test_factor_penalty_skips_zero_terms_bit_for_bit(l1, l2):
    """Skipping a term whose coefficient is 0 gives the objective of both terms exactly, with
    or without a scratch buffer."""
    rng = np.random.default_rng(2)
    factors = rng.uniform(0, 3, (300, 16)).astype(np.float32)
    factors[:, 5:] = 0  # padded columns, as the kernels see them
    counts = rng.integers(1, 50, 300).astype(np.float64)
    f64 = factors.astype(np.float64)
    both = float(counts @ (l1 * f64.sum(1) + 0.5 * l2 * (f64 ** 2).sum(1)))
    assert _factor_penalty(counts, factors, l1, l2) == both
    scratch = np.full(factors.shape, np.nan)  # a reused buffer: only its shape matters
    assert _factor_penalty(counts, factors, l1, l2, scratch) == both


def test_small_fit_does_not_probe_the_load(monkeypatch):
    """A fit too small for a second update thread runs on one without sampling the load."""
    backend_or_skip("cython", "nmf_update_observed")

    def probe():
        raise AssertionError("the load was probed")

    monkeypatch.setattr("fastrec.models._base.default_n_threads", probe)
    users, items, ratings = planted_ratings(seed=4)
    model = NMF(mode="observed", backend="cython", random_state=0).fit((users, items, ratings))
    explicit = NMF(mode="observed", backend="cython", random_state=0, n_threads=2)
    explicit.fit((users, items, ratings))
    np.testing.assert_array_equal(model.user_factors_, explicit.user_factors_)


def test_full_mode_divergence_never_increases():
    backend_or_skip("cython", "nmf_update_full")
    for beta_loss in ("frobenius", "kullback-leibler"):
        model = NMF(5, beta_loss=beta_loss, init="random", max_iter=40, tol=0, verbose=True,
                    random_state=0, dtype="float64", backend="cython")
        model.fit(counts_matrix(seed=5))
        assert np.all(np.diff(model.loss_curve_) <= 1e-9 * model.loss_curve_[0])
        assert len(model.loss_curve_) == 41


@pytest.mark.parametrize("init", ["random", "nndsvd", "nndsvda"])
def test_inits_deterministic_and_thread_independent(init):
    backend_or_skip("cython", "nmf_update_full")
    x = counts_matrix()
    runs = [NMF(4, init=init, max_iter=20, random_state=3, n_threads=t, backend="cython")
            .fit_transform(x) for t in (1, 2, 1)]
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[0], runs[2])
    assert np.all(runs[0] >= 0) and np.all(np.isfinite(runs[0]))


def test_zero_rows_and_columns_give_no_nan():
    backend_or_skip("cython", "nmf_update_full")
    x = counts_matrix().tolil()
    x[2, :] = 0
    x[:, 7] = 0
    for beta_loss in ("frobenius", "kullback-leibler"):
        for init in ("random", "nndsvda", "nndsvd"):
            model = NMF(4, beta_loss=beta_loss, init=init, max_iter=15, random_state=0,
                        backend="cython", alpha_W=0.01)
            w = model.fit_transform(sp.csr_matrix(x))
            assert np.all(np.isfinite(w)) and np.all(np.isfinite(model.components_))
            assert np.isfinite(model.reconstruction_err_)


def test_observed_api_save_load_fold_in_recommend(tmp_path):
    backend_or_skip("cython", "nmf_update_observed")
    users, items, ratings = planted_ratings(seed=2)
    ids_u, ids_i = np.array([f"u{u}" for u in users]), items * 10 + 5
    model = NMF(3, mode="observed", biased=True, alpha_W=0.02, max_iter=60, random_state=0,
                backend="cython", verbose=True).fit((ids_u, ids_i, ratings))
    assert model.predict(["u0", "u1"], [5, 15]).shape == (2,)
    top, scores = model.recommend(["u0"], n=5)
    assert top.shape == (1, 5) and np.all(np.diff(scores[0]) <= 0)
    bias, factors = model.fold_in([5, 15, 25], [2.0, 1.0, 0.5])
    assert factors.shape == (3,) and np.all(factors >= 0) and np.isfinite(bias)
    path = model.save(tmp_path / "nmf.npz")
    loaded = NMF.load(path)
    np.testing.assert_array_equal(loaded.predict(["u3"], [25]), model.predict(["u3"], [25]))
    np.testing.assert_array_equal(loaded.components_, model.components_)
    assert model.get_params()["mode"] == "observed"


def test_unscorable_pairs_get_the_training_mean():
    """Unbiased observed mode: an unknown id, or an id in the map without training data, is
    answered with the training mean (Surprise's fallback), never with a zero dot product."""
    backend_or_skip("cython", "nmf_update_observed")
    x = sp.csr_matrix(np.array([[4.0, 0, 2.0], [5.0, 0, 3.0]]))  # item 1 has no observation
    model = NMF(1, mode="observed", init="random", max_iter=20, random_state=0,
                backend="cython").fit(x)
    mean = x.data.mean()
    assert model.predict([0], [1])[0] == pytest.approx(mean)
    assert model.predict([0], [0])[0] != pytest.approx(mean)


def test_parameters_change_the_model():
    backend_or_skip("cython", "nmf_update_observed")
    users, items, ratings = planted_ratings(seed=6)
    base = dict(n_components=3, mode="observed", max_iter=30, random_state=0, backend="cython")
    a = NMF(**base).fit((users, items, ratings)).user_factors_
    b = NMF(alpha_W=0.5, **base).fit((users, items, ratings)).user_factors_
    assert not np.allclose(a, b)


def test_bad_input_gets_clear_errors():
    x = counts_matrix()
    neg = x.copy()
    neg.data[:3] = -1.0
    with pytest.raises(ValueError, match="3 negative entries"):
        NMF(2).fit(neg)
    nan = x.toarray()
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        NMF(2).fit(nan)
    with pytest.raises(ValueError, match="exceeds min"):
        NMF(31).fit(x)
    with pytest.raises(ValueError, match="negative entries"):
        NMF(2, init="custom").fit(x, W=-np.ones((40, 2)), H=np.ones((2, 30)))
    with pytest.raises(ValueError, match="shape"):
        NMF(2, init="custom").fit(x, W=np.ones((40, 3)), H=np.ones((2, 30)))
    with pytest.raises(ValueError, match="needs both"):
        NMF(2, init="custom").fit(x)
    with pytest.raises(ValueError, match="beta_loss"):
        NMF(2, beta_loss="itakura-saito").fit(x)
    with pytest.raises(ValueError, match="mode"):
        NMF(2, mode="masked").fit(x)
    with pytest.raises(ValueError, match="biased"):
        NMF(2, biased=True).fit(x)
    with pytest.raises(ValueError, match="negative entries"):
        NMF(2, mode="observed").fit(([0, 1], [0, 1], [1.0, -2.0]))


def test_defaults_depend_on_the_mode():
    """None means scikit-learn's defaults in full mode (full rank, no penalty, 200 iterations)
    and the validated ones in observed mode (rank 5, alpha_W 0.15, 50 iterations: a chosen
    budget, so reaching it is no ConvergenceWarning)."""
    import warnings

    users, items, ratings = planted_ratings()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        observed = NMF(mode="observed", tol=1e-12, backend="cython").fit((users, items, ratings))
    assert (observed.n_components_, observed.n_iter_) == (5, 50)
    assert observed._alphas() == (0.0, 0.15, 0.0, 0.15)
    full = NMF(tol=0, backend="cython").fit(np.random.default_rng(0).random((12, 7)))
    assert (full.n_components_, full.n_iter_) == (7, 200)
    assert full._alphas() == (0.0, 0.0, 0.0, 0.0)
