"""Non-negative matrix factorisation by multiplicative updates (Lee & Seung), Frobenius or
Kullback-Leibler, on every entry of X (scikit-learn's ``NMF(solver="mu")``) or on the observed
entries only (ratings, as Surprise's ``NMF`` after Luo et al. 2014)."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import scipy.sparse as sp

from fastrec._algorithms.fit_loop import fit_epochs
from fastrec._algorithms.nmf_mu import (
    CSRPair,
    MUTrainer,
    ObservedPenalty,
    beta_from_loss,
    effective_threads,
    nndsvd_init,
    pad_columns,
    random_init,
)
from fastrec._array import array_module, is_device_array, sparse_module, to_device, to_host
from fastrec.backends.threads import usable_cores
from fastrec.models._base import (
    FactorModel,
    check_dtype,
    check_positive,
    pattern_matrix,
    seen_matrix,
    store_params,
)

log = logging.getLogger("fastrec")

MODES = ("full", "observed")
INITS = (None, "random", "nndsvd", "nndsvda", "custom")
_KERNELS = {"full": ("nmf_update_full", "nmf_loss_full"),
            "observed": ("nmf_update_observed", "nmf_loss_observed")}
# What n_components=None, alpha_W=None and max_iter=None mean in each mode. Full mode keeps
# scikit-learn's. Observed mode's were chosen on validation ratings carved out of the training
# part of ml-latest-small (benchmarks/nmf_observed_tuning.py, results in
# benchmarks/results/nmf_observed_tuning.md): the best validation RMSE within 50 iterations
# (the fit-time budget); a full-rank, unpenalised observed model overfits the ratings.
MODE_DEFAULTS = {"full": {"n_components": None, "alpha_W": 0.0, "max_iter": 200},
                 "observed": {"n_components": 5, "alpha_W": 0.15, "max_iter": 50}}


class NMF(FactorModel):
    """X ~ W H with W, H >= 0, fitted by alternating multiplicative updates (W, then H).

    Parameters (scikit-learn's names and meanings where they exist)
    ----------
    n_components : int or None, the rank k (None: min(n_samples, n_features) in full mode,
        5 in observed mode).
    mode : "full" (every entry of X counts, absent ones are zeros; scikit-learn semantics) or
        "observed" (only stored entries count: ratings; predictions for unseen pairs).
    beta_loss : "frobenius" or "kullback-leibler".
    init : None ("nndsvda" if k <= min(X.shape) else "random"), "random" (sqrt(mean/k)|N(0,1)|),
        "nndsvd", "nndsvda" (NNDSVD, zeros filled with the mean of X), or "custom" (W and H given
        to ``fit``/``fit_transform``).
    max_iter : int or None (200 in full mode, 50 in observed mode); tol : float, stop when
        the relative drop of the error over 10 iterations, measured against the initial error,
        is below ``tol`` (0 disables the test).
    alpha_W (None: 0 in full mode, 0.15 in observed mode), alpha_H ("same": alpha_W),
        l1_ratio : penalties. Full mode as scikit-learn:
        W's L1/L2 terms are n_features * alpha_W * l1_ratio and n_features * alpha_W *
        (1 - l1_ratio). Observed mode scales by each row's count of observations instead
        (Surprise's reg_pu * |I_u|), so alpha_W=0.06 matches Surprise's reg_pu=0.06.
        Observed mode's defaults (rank 5, alpha_W 0.15, 50 iterations, unbiased) had the best
        validation RMSE of a sweep on ml-latest-small's training part within 50 iterations
        (benchmarks/results/nmf_observed_tuning.md, made by benchmarks/nmf_observed_tuning.py);
        on the held-out 20% they reach a test RMSE of about 0.889, Surprise's NMF defaults 0.92.
    biased, reg_bias : observed Frobenius mode only: prediction mu + b_u + b_i + p_u . q_i, the
        biases set to their exact regularised minimisers each iteration (penalty reg_bias n_u).
    random_state : int or None; dtype : float32 (default) or float64.
    backend : "auto", "cuda", "cython", "numba", "numpy" (reference, dense: tiny data only).
        "cuda" runs the warp-per-row kernels of csrc/cuda/nmf.cu (without a usable device it
        raises BackendUnavailable saying why): host X and the factors are copied to the device
        once (CuPy / cupyx.scipy.sparse X is used where it is) and stay there for the whole
        fit, and the fitted arrays stay there afterwards (``device_ == "cuda"``; ``to("cpu")``
        or ``to_numpy()`` convert, ``save`` writes host arrays, ``load`` gives a CPU model).
    n_threads : int or None (all usable cores); results do not depend on it.
    early_stopping, n_iter_no_change : stop when the RMSE on ``validation_data`` has not
        improved by a relative ``tol`` for ``n_iter_no_change`` iterations; the best iterate
        is kept. Without ``validation_data``, observed mode holds out a random
        ``validation_fraction`` of the ratings (seeded by ``random_state``) and trains on the
        rest; full mode needs ``validation_data`` (an entry held out of X would be a zero).
    validation_fraction : float in (0, 1), share of the ratings held out for early stopping
        in observed mode when no ``validation_data`` is given.
    duplicates : what repeated (user, item) pairs in the training data mean: "raise" (an
        error naming the first one, the default), "mean", "last" or "sum" of their values.
    callbacks : list of ``callback(iteration, metrics)`` called after each iteration; a truthy
        return value stops the fit.
    verbose : bool, progress bar and the error at every iteration.

    Fitted attributes: ``components_`` H [k, n_features], ``reconstruction_err_``
    (sqrt(2 * objective), as scikit-learn), ``n_iter_``, ``n_components_``, ``loss_curve_``
    (errors or observed objectives measured during the fit), ``validation_curve_``,
    ``n_epochs_`` (= ``n_iter_``), ``backend_``, ``fit_time_``, ``timings_`` and
    the :class:`FactorModel` attributes (``user_factors_`` = W, ``item_factors_`` = H^T, biases,
    id maps), so ``predict``, ``recommend``, ``similar_items``, ``save``/``load`` work.

    On a model whose arrays are on the GPU, ``transform``, ``inverse_transform``, ``fold_in``,
    ``predict`` and ``score`` run on the device (predictions come back as numpy arrays);
    ``recommend``, ``similar_items`` and ``recommend_from_ratings`` run on the CPU and ask for
    ``to("cpu")`` first. ``fit_transform``, ``transform`` and ``inverse_transform`` return an
    array where their input lives: numpy for numpy or scipy input, CuPy for CuPy or
    cupyx.scipy.sparse input.
    """

    _ARRAYS = (*FactorModel._ARRAYS, "components_")
    _SCALARS = (*FactorModel._SCALARS, "rating_mean_", "reconstruction_err_", "n_iter_")

    def __init__(self, n_components: int | None = None, *, mode: str = "full",
                 beta_loss: str = "frobenius", init: str | None = None,
                 max_iter: int | None = None, tol: float = 1e-4, alpha_W: float | None = None,
                 alpha_H="same", l1_ratio: float = 0.0,
                 biased: bool = False, reg_bias: float = 0.02, random_state: int | None = None,
                 dtype="float32", backend: str = "auto", n_threads: int | None = None,
                 early_stopping: bool = False, validation_fraction: float = 0.1,
                 n_iter_no_change: int = 10, callbacks=None, duplicates: str = "raise",
                 verbose: bool = False):
        store_params(self, locals())

    # -- validation --------------------------------------------------------------------------
    def _validate_params(self) -> tuple[np.dtype, int]:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        beta = beta_from_loss(self.beta_loss)
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if self.n_components is not None:
            check_positive("n_components", self.n_components, integer=True)
        if self.max_iter is not None:
            check_positive("max_iter", self.max_iter, integer=True)
        check_positive("tol", self.tol, allow_zero=True)
        if self.alpha_W is not None:
            check_positive("alpha_W", self.alpha_W, allow_zero=True)
        if self.alpha_H != "same":
            check_positive("alpha_H", self.alpha_H, allow_zero=True)
        check_positive("l1_ratio", self.l1_ratio, allow_zero=True)
        if self.l1_ratio > 1:
            raise ValueError(f"l1_ratio must be in [0, 1], got {self.l1_ratio}")
        check_positive("reg_bias", self.reg_bias, allow_zero=True)
        if self.biased and (self.mode != "observed" or beta != 2):
            raise ValueError("biased=True needs mode='observed' and beta_loss='frobenius'")
        return check_dtype(self.dtype), beta

    def __sklearn_tags__(self):
        from sklearn.utils import TransformerTags

        tags = super().__sklearn_tags__()
        tags.transformer_tags = TransformerTags()
        tags.input_tags.positive_only = True
        tags.input_tags.two_d_array = self.mode == "full"
        tags.transformer_tags.preserves_dtype = [np.dtype(self.dtype).name]
        return tags

    @property
    def predict(self):
        """``predict(users, items, unknown="raise")``: ratings of (user, item) pairs, observed
        mode only (full mode is scikit-learn's transformer, which has no ``predict``)."""
        if self.mode != "observed":
            raise AttributeError("NMF(mode='full') is a transformer without predict(); use "
                                 "transform / inverse_transform, or mode='observed'")
        return super().predict

    def _set_sizes(self) -> None:
        super()._set_sizes()
        self.n_components_ = self.components_.shape[0]
        self.n_features_in_ = self.n_items_

    def _check_consistent(self) -> None:
        super()._check_consistent()
        if not np.array_equal(self.components_, self.item_factors_.T):
            raise ValueError("components_ is not the transpose of item_factors_")
        if (self.user_factors_ < 0).any() or (self.item_factors_ < 0).any():
            raise ValueError("NMF factors must be non-negative")

    def _alphas(self) -> tuple[float, float, float, float]:
        """(l1_W, l2_W, l1_H, l2_H) before scaling by n_features / n_samples or row counts."""
        alpha_w = self.alpha_W
        if alpha_w is None:
            alpha_w = MODE_DEFAULTS.get(self.mode, MODE_DEFAULTS["full"])["alpha_W"]
        alpha_h = alpha_w if self.alpha_H == "same" else self.alpha_H
        r = float(self.l1_ratio)
        return alpha_w * r, alpha_w * (1 - r), alpha_h * r, alpha_h * (1 - r)

    def _max_iter(self) -> int:
        if self.max_iter is None:
            return MODE_DEFAULTS[self.mode]["max_iter"]
        return int(self.max_iter)

    def _n_components(self, shape) -> int:
        k = self.n_components
        if k is None:
            k = MODE_DEFAULTS[self.mode]["n_components"]
            k = min(shape) if k is None else min(k, min(shape))
        k = int(k)
        if k > min(shape):
            raise ValueError(f"n_components={k} exceeds min(n_samples, n_features)="
                             f"{min(shape)} of X with shape {shape}")
        return k

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, X, y=None, W=None, H=None, validation_data=None):
        """Fit the model to X and return self (see :meth:`fit_transform`)."""
        self.fit_transform(X, W=W, H=H, validation_data=validation_data)
        return self

    def fit_transform(self, X, y=None, W=None, H=None, validation_data=None):
        """Fit and return W [n_samples, k] (observed mode: the user factors).

        X : full mode: scipy.sparse matrix or 2-D array [n_samples, n_features], >= 0.
            Observed mode: anything :class:`fastrec.data.Interactions` accepts (sparse matrix
            whose stored entries are ratings, ``(user_ids, item_ids, ratings)`` tuple,
            DataFrame), ratings >= 0. CuPy arrays and cupyx.scipy.sparse matrices are accepted
            too. With ``backend="cuda"`` they stay on the device: validation, the CSR layouts of
            X and X^T (a transposed copy on the device) and the initialisation's reductions run
            there; only NNDSVD's small dense SVD (X up to 250k entries) reads X on the host
            (larger X: the truncated SVD's products with X run on the device, blocks of
            vectors cross). Other backends copy device
            input to the host (``to_host``).
        W, H : initial factors [n_samples, k] and [k, n_features] for ``init="custom"`` (numpy
            or CuPy).
        validation_data : held-out entries scored by RMSE after every iteration (needed by
            ``early_stopping``): observed mode, ratings of the training users and items in any
            form ``fit`` takes; full mode, a sparse matrix of X's shape whose stored entries
            are the held-out values.
        Returns W [n_samples, k] (numpy, or CuPy for CuPy/cupyx input). A fit that raises
        leaves a previously fitted model as it was, except :class:`fastrec.DivergenceError`,
        after which the model holds the last good iterate.
        """
        return self._transaction(type(self)._fit, X, W, H, validation_data)

    def _fit(self, X, W, H, validation_data):
        dtype, beta = self._validate_params()
        if self.early_stopping and validation_data is None and self.mode == "full":
            raise ValueError("early_stopping=True needs validation_data in full mode (an entry "
                             "held out of X would be a zero of X)")
        X, validation_data = self._holdout(X, validation_data)
        backend = self._resolve_backend(_KERNELS[self.mode])
        rng = np.random.default_rng(self.random_state)
        place = self._placement(backend)
        X_placed = place.inputs(X)
        if self.mode == "full":
            matrix = _check_full_input(X_placed, dtype)
            self.user_ids_, self.item_ids_ = np.arange(matrix.shape[0]), np.arange(matrix.shape[1])
            self.global_mean_ = 0.0
        else:
            data = self._training_data(X_placed, dtype)
            _check_non_negative(data.values)
            self.user_ids_, self.item_ids_ = data.user_ids, data.item_ids
            self.global_mean_ = _mean(data.values) if self.biased else 0.0
            self.seen_ = seen_matrix(data)
        shape, nnz = (matrix.shape, matrix.nnz) if self.mode == "full" else (data.shape, data.nnz)
        k = self._n_components(shape)
        k_pad = backend.row_width("nmf", k, dtype)
        n_threads = self._fit_threads(nnz, k_pad)
        if self.mode == "observed":
            matrix = data.to_sorted_csr(n_threads)
        x = CSRPair.build(matrix, dtype, n_threads)
        if self.mode == "full":
            self.seen_ = pattern_matrix(x.indptr, x.indices, x.shape)
        w, h = self._initial_factors(x, k, W, H, rng, dtype, n_threads)
        w, ht = pad_columns(w, k_pad), pad_columns(h.T, k_pad)
        bu, bi = np.zeros(x.shape[0], dtype), np.zeros(x.shape[1], dtype)
        # Surprise's answer for pairs the model cannot score: the training mean.
        self.rating_mean_ = _mean(x.data)
        # The factors start on the host (the same seed gives the same start on every backend);
        # on CUDA they and host X go to the device once and the fitted arrays stay there.
        move = place.move
        x = x.map_arrays(move)
        w, ht, bu, bi = (move(a) for a in (w, ht, bu, bi))
        self.n_users_, self.n_items_ = x.shape
        validation = self._validation_pairs(validation_data, dtype)
        trainer = MUTrainer(backend, x, w, ht, bu, bi, self.global_mean_, beta, self.mode,
                            bool(self.biased), self._penalty(x.shape), float(self.tol), True,
                            n_threads, self.verbose, f"NMF[{backend.name}]", validation)
        max_iter = self._max_iter()
        history = self._train(trainer, max_iter, backend.name,
                              lambda: self._finish_fit(trainer, k))
        # Observed mode's default budget is a chosen iteration count, not a cap to warn about.
        budget_given = self.mode == "full" or self.max_iter is not None
        if (history.n_epochs == max_iter and self.tol > 0 and not self.early_stopping
                and budget_given):
            _warn_not_converged(max_iter)
        return _where_input_is(self.user_factors_, X)

    def _fit_threads(self, nnz: int, k_pad: int) -> int:
        """Threads for the fit. A problem too small for a second thread in the updates
        (:func:`effective_threads` on every usable core is 1) runs on one without probing the
        machine's load, which takes some 3-6 ms, a fifth of a ratings-sized fit; every step
        gives the same bits at any thread count, so this changes the speed only."""
        if self.n_threads is None and effective_threads(usable_cores(), nnz, k_pad) == 1:
            return 1
        return self._n_threads()

    def _finish_fit(self, trainer: MUTrainer, k: int) -> None:
        """Fitted attributes from the trainer's arrays (the real k columns of the padded
        factors)."""
        w, ht = trainer.w, trainer.ht
        if self.mode == "full":
            self.reconstruction_err_ = trainer.loss()
        else:
            data_term = trainer.backend.nmf_loss_observed(
                *trainer.x.rows, w, ht, trainer.bu, trainer.bi, self.global_mean_, trainer.beta,
                bool(self.biased), trainer.n_threads)
            self.reconstruction_err_ = float(np.sqrt(max(2.0 * data_term, 0.0)))
        self.loss_curve_ = [trainer.at_init, *self.loss_curve_]
        self.n_iter_ = self.n_epochs_
        xp = array_module(w)
        w, ht = xp.ascontiguousarray(w[:, :k]), xp.ascontiguousarray(ht[:, :k])
        self.user_factors_, self.item_factors_ = w, ht
        self.user_bias_, self.item_bias_ = trainer.bu, trainer.bi
        self.components_ = xp.ascontiguousarray(ht.T)
        self.n_components_ = k
        self.n_features_in_ = trainer.x.shape[1]

    def _penalty(self, shape) -> ObservedPenalty:
        """Penalties per update: full mode scales W's by n_features and H's by n_samples (as
        scikit-learn); observed mode scales by each row's count inside the kernels."""
        l1_w, l2_w, l1_h, l2_h = self._alphas()
        if self.mode == "full":
            n, m = shape
            return ObservedPenalty(m * l1_w, m * l2_w, n * l1_h, n * l2_h, 0.0)
        return ObservedPenalty(l1_w, l2_w, l1_h, l2_h, float(self.reg_bias))

    def _validation_pairs(self, validation_data, dtype):
        """Held-out ``(users, items, values)`` in the fit's index space, or None."""
        if validation_data is None:
            return None
        if self.mode == "full":
            matrix = _check_full_input(to_host(validation_data), dtype)
            if matrix.shape != (self.n_users_, self.n_items_):
                raise ValueError(f"validation matrix has shape {matrix.shape}, X "
                                 f"{(self.n_users_, self.n_items_)}")
            coo = matrix.tocoo()
            return coo.row, coo.col, coo.data.astype(np.float64)
        data = self._mapped(validation_data, dtype)
        return data.users, data.items, np.asarray(data.values, np.float64)

    def _initial_factors(self, x: CSRPair, k, W, H, rng, dtype, n_threads):
        init = self.init
        if init is None:
            init = "nndsvda" if k <= min(x.shape) else "random"
        if init == "custom":
            return _check_custom(W, H, x.shape, k, dtype)
        if W is not None or H is not None:
            raise ValueError("W and H are only used with init='custom'")
        if init == "random":
            mean = _mean(x.data) if self.mode == "observed" else _sum(x.data) / (
                x.shape[0] * x.shape[1])
            return random_init(mean, (x.shape[0], k), (k, x.shape[1]), rng, dtype)
        return nndsvd_init(x, k, init, rng, dtype, n_threads)

    # -- scikit-learn transforms ---------------------------------------------------------------
    def transform(self, X):
        """W [n, k] for new rows of X with H fixed (MU from a constant start, as scikit-learn).
        Observed mode: X is a sparse matrix [n, n_items] of ratings of new users. X may be a
        CuPy array or cupyx.scipy.sparse matrix (used on the device with the CUDA backend,
        copied to the host otherwise). The updates run on the device with the CUDA backend (H
        is copied there if the model is on the host), else on the host. Returns numpy for
        numpy/scipy input, CuPy for CuPy/cupyx input."""
        self._check_fitted()
        _, beta = self._validate_params()
        backend = self._resolve_backend(_KERNELS[self.mode])
        matrix = _check_full_input(self._placement(backend).inputs(X), self.components_.dtype)
        if matrix.shape[1] != self.n_items_:
            raise ValueError(f"X has {matrix.shape[1]} features, but NMF is expecting "
                             f"{self.n_items_} features as input")
        x = CSRPair.build(matrix, self.components_.dtype, self._n_threads())
        return _where_input_is(self._solve_rows(backend, x, beta)[0], X)

    def _solve_rows(self, backend, x: CSRPair, beta: int):
        """Row factors (and biases) for the rows of the CSR x (host or device) with the item
        side fixed, on the device with the CUDA backend (where they are returned), else on the
        host."""
        dtype = self.components_.dtype
        k = self.components_.shape[0]
        n = x.shape[0]
        if self.mode == "full":
            mean = _sum(x.data) / max(n * x.shape[1], 1)
        else:
            mean = _mean(x.data)
        k_pad = backend.row_width("nmf", k, dtype)
        w = pad_columns(np.full((n, k), np.sqrt(max(mean, 0.0) / k), dtype=dtype), k_pad)
        bu = np.zeros(n, dtype)
        move = self._placement(backend).move
        x, w, bu = x.map_arrays(move), move(w), move(bu)
        ht = pad_columns(move(self.item_factors_).astype(dtype), k_pad)
        bi = move(self.item_bias_).astype(dtype)
        trainer = MUTrainer(backend, x, w, ht, bu, bi, self.global_mean_, beta, self.mode,
                            bool(self.biased), self._penalty((n, x.shape[1])), float(self.tol),
                            False, self._n_threads(), False, "NMF transform")
        fit_epochs(trainer, self._max_iter())
        return array_module(w).ascontiguousarray(w[:, :k]), bu

    def _predict_indices(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        if self.biased:
            return super()._predict_indices(u, i)
        # Without biases a user or item the model has no data for (unknown id, or in the id map
        # but without training observations) has no baseline: use the training mean. All of it
        # runs where the factors are (seen_'s structure is copied there if it is elsewhere).
        xp = array_module(self.user_factors_)
        u, i = xp.asarray(u), xp.asarray(i)
        known = (u >= 0) & (i >= 0)
        if getattr(self, "seen_", None) is not None:
            uu, ii = xp.where(known, u, 0), xp.where(known, i, 0)
            move = to_host if xp is np else to_device
            indptr, indices = move(self.seen_.indptr), move(self.seen_.indices)
            known &= (xp.diff(indptr)[uu] > 0) & (
                xp.bincount(indices, minlength=self.n_items_)[ii] > 0)
        dot = xp.einsum("nk,nk->n", self.user_factors_[xp.where(known, u, 0)],
                        self.item_factors_[xp.where(known, i, 0)])
        out = xp.where(known, dot, float(self.rating_mean_))
        return out.astype(self.user_factors_.dtype, copy=False)

    def score(self, X, y=None) -> float:
        """Higher is better, as scikit-learn's ``score``. Observed mode: negative RMSE of the
        ratings in ``X``. Full mode: negative reconstruction error sqrt(2 * divergence) of
        the rows of X, their W found by :meth:`transform`."""
        if self.mode == "observed":
            return super().score(X)
        self._check_fitted()
        _, beta = self._validate_params()
        backend = self._resolve_backend(_KERNELS[self.mode])
        matrix = _check_full_input(to_host(X), self.components_.dtype)
        if matrix.shape[1] != self.n_items_:
            raise ValueError(f"X has {matrix.shape[1]} features, but NMF is expecting "
                             f"{self.n_items_} features as input")
        x = CSRPair.build(matrix, self.components_.dtype, self._n_threads())
        w = to_host(self._solve_rows(backend, x, beta)[0])
        k_pad = backend.row_width("nmf", w.shape[1], w.dtype)
        divergence = backend.nmf_loss_full(*x.rows, pad_columns(w, k_pad),
                                           pad_columns(to_host(self.item_factors_), k_pad),
                                           beta, self._n_threads())
        return -float(np.sqrt(max(2.0 * divergence, 0.0)))

    def inverse_transform(self, X):
        """W [n, k] -> W @ H [n, n_features], computed where ``components_`` is (W is copied
        there); numpy for numpy input, CuPy for CuPy input."""
        self._check_fitted()
        w = X if is_device_array(X) else np.asarray(X)
        if w.ndim != 2 or w.shape[1] != self.components_.shape[0]:
            raise ValueError(f"expected shape (n, {self.components_.shape[0]}), got {w.shape}")
        return _where_input_is(_where_input_is(w, self.components_) @ self.components_, X)

    # -- rating semantics ------------------------------------------------------------------------
    def fold_in(self, items, ratings) -> tuple[float, np.ndarray]:
        """Non-negative factors (and bias) of a new user from their ratings, item side fixed:
        the same multiplicative updates as training, on one row (on the device with the CUDA
        backend). Returns (bias, factors [k]) on the host."""
        i, r = self._fold_in_ratings(items, ratings)
        _check_non_negative(r)
        row = sp.csr_matrix((r, (np.zeros_like(i), i)), shape=(1, self.n_items_))
        _, beta = self._validate_params()
        backend = self._resolve_backend(_KERNELS[self.mode])
        w, bu = self._solve_rows(backend, CSRPair.build(row, self.components_.dtype), beta)
        return float(bu[0]), to_host(w[0])


def _warn_not_converged(max_iter: int) -> None:
    """scikit-learn's ConvergenceWarning when scikit-learn is installed (so its filters
    apply), a RuntimeWarning otherwise."""
    try:
        from sklearn.exceptions import ConvergenceWarning as category
    except ImportError:
        category = RuntimeWarning
    warnings.warn(f"maximum number of iterations {max_iter} reached; increase max_iter to "
                  "improve the fit", category, stacklevel=5)


def _where_input_is(result, like):
    """``result`` on the device of ``like``: CuPy when ``like`` is a CuPy array or cupyx
    sparse matrix (or a ``(users, items, ratings)`` tuple holding one), else numpy (each a
    no-op when it is there already)."""
    parts = like if isinstance(like, (tuple, list)) else (like,)
    on_device = any(is_device_array(a) for a in parts)
    return to_device(result) if on_device else to_host(result)


def _mean(values) -> float:
    """float64 mean of a host or device array (0 when empty)."""
    return float(array_module(values).mean(values, dtype=np.float64)) if values.size else 0.0


def _sum(values) -> float:
    return float(array_module(values).sum(values, dtype=np.float64))


def _check_non_negative(values: np.ndarray) -> None:
    negative = int(array_module(values).count_nonzero(values < 0))
    if negative:
        raise ValueError(f"Negative values in data passed to NMF: X has {negative} negative "
                         "entries; NMF needs non-negative data")


def _check_full_input(X, dtype) -> sp.csr_matrix:
    """CSR float copy of X (sparse or dense), finite and non-negative, explicit zeros dropped,
    made and checked where X is: scipy for host X, cupyx.scipy.sparse for device X (CuPy,
    cupyx)."""
    xp, xsp = array_module(X), sparse_module(X)
    if xsp.issparse(X):
        matrix = xsp.csr_matrix(X, dtype=dtype, copy=True)
    else:
        array = X if xp is not np else np.asarray(X)
        if array.ndim != 2:
            raise ValueError(f"X must be 2-D [n_samples, n_features], got shape {array.shape}. "
                             "Reshape your data (X.reshape(1, -1) for a single sample).")
        if array.dtype.kind == "c":
            raise ValueError("Complex data not supported: NMF needs real, non-negative X")
        if array.dtype.kind == "O" and xp is np:
            try:  # object arrays of numbers, as scikit-learn's check_array accepts them
                array = array.astype(np.float64)
            except TypeError as exc:
                raise TypeError(f"X must be numeric, got dtype object: {exc}") from exc
            except ValueError as exc:
                raise ValueError(f"X must be numeric, got dtype object: {exc}") from exc
        if array.dtype.kind not in "biuf":
            raise ValueError(f"X must be numeric, got dtype {array.dtype}")
        matrix = xsp.csr_matrix(array.astype(dtype, copy=False))
    if min(matrix.shape) < 1:
        raise ValueError(f"X is empty: found array with {matrix.shape[1]} feature(s) (shape="
                         f"{matrix.shape}) while a minimum of 1 is required.")
    bad = int(xp.count_nonzero(~xp.isfinite(matrix.data)))
    if bad:
        raise ValueError(f"X has {bad} NaN or infinite entries")
    _check_non_negative(matrix.data)
    matrix.eliminate_zeros()
    return matrix


def _check_custom(W, H, shape, k, dtype):
    if W is None or H is None:
        raise ValueError("init='custom' needs both W and H")
    out = []
    for name, arr, want in (("W", W, (shape[0], k)), ("H", H, (k, shape[1]))):
        arr = np.asarray(to_host(arr))
        if arr.shape != want:
            raise ValueError(f"custom {name} must have shape {want}, got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"custom {name} has NaN or infinite entries")
        negative = int(np.count_nonzero(arr < 0))
        if negative:
            raise ValueError(f"custom {name} has {negative} negative entries")
        out.append(np.array(arr, dtype=dtype, order="C"))
    return out[0], out[1]


def _full_error(backend, x: CSRPair, w, ht, beta: int, n_threads: int) -> float:
    return float(np.sqrt(max(2.0 * backend.nmf_loss_full(*x.rows, w, ht, beta, n_threads), 0.0)))
