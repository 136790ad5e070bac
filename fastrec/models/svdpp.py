"""SVD++ (Koren 2008): biased MF whose user vector adds the implicit feedback of the rated items,
trained by stratified parallel SGD."""

from __future__ import annotations

import math

import numpy as np

from fastrec._algorithms.sgd_schedule import BlockedRatings
from fastrec._array import array_module, sparse_module
from fastrec.backends._contract import check_svdpp_epoch
from fastrec.models._base import (
    FactorModel,
    pattern_dtype,
    seen_matrix,
    store_params,
)
from fastrec.models.mf import _SGDModel, _SGDTrainer, _working_rows


class SVDpp(_SGDModel):
    """SVD++, ``r_hat = mu + b_u + b_i + q_i . (p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j)``, where
    N(u) is the set of items user u rated in training.

    Trained by SGD on MF's stratified G x G block schedule (parallel, and bitwise identical at
    any thread count for a fixed ``n_blocks``). Each epoch computes every user's implicit sum
    once and caches it; the ratings then update the cache as Koren's per-rating steps of the
    ``y_j`` would move it, while each user's gradient for the ``y_j`` accumulates; at the end of
    the epoch every ``y_j`` takes that gradient in one proximal L2 step (the exact rule:
    ``csrc/include/fastrec/svdpp.h``). The implicit part costs O(nnz k) per epoch, not
    O(|N(u)| k) per rating as in Surprise.

    Parameters
    ----------
    n_factors : int, rank ``k``.
    n_epochs : int, maximum number of passes over the ratings.
    learning_rate : float, SGD step for p, q and y (``lr_bias`` for biases, default the same).
    reg, reg_bias : float, L2 penalties of p, q and of the biases (per rating, as MF).
    reg_implicit : float, L2 penalty of y, counted once per (user, rated item) pair per epoch.
    lr_schedule, lr_decay : as :class:`fastrec.MF`.
    init_std : float, p, q and y start as N(0, init_std); biases at zero.
    n_blocks : int or None, side of the stratified grid (None: the backend's default, as MF).
    dtype : float32 (default) or float64.
    backend : "auto", "cython", "numba", "numpy" (reference, slow) or "cuda".
    n_threads : int or None (all usable cores).
    random_state : int or None; the same seed gives the same model on a given backend.
    early_stopping, validation_fraction, n_iter_no_change, tol, callbacks, duplicates,
        verbose : as :class:`fastrec.MF`.

    The defaults (k=32, 20 epochs, learning_rate 0.02, reg 0.1, reg_implicit 10) were chosen on
    a validation split carved from the training part of ml-latest-small (random 80/20 with
    ``default_rng(0)``; validation = a random 10% of the training 80%; the test 20% never read):
    ``benchmarks/results/svdpp_tuning.md``, made by ``benchmarks/svdpp_report.py --tune``. They
    score 0.8478 validation RMSE at epoch 20; k=64 reaches 0.8456 at epoch 27 for about twice
    the fit time, a trade the defaults decline.

    Fitted attributes: those of :class:`FactorModel` (``user_factors_`` are the p_u) plus
    ``implicit_factors_`` T[n_items, k] (the y_j), ``user_implicit_`` T[n_users, k] (each user's
    implicit sum, from the final y), ``loss_curve_``, ``validation_curve_``, ``n_epochs_``,
    ``backend_``, ``fit_time_``, ``timings_``, ``seen_`` (the N(u) as CSR).
    """

    _ARRAYS = (*FactorModel._ARRAYS, "implicit_factors_", "user_implicit_")
    _SEEN_FILTERS_ONLY = False  # seen_ is N(u), which user_implicit_ was computed from
    _KERNEL = "svdpp_epoch"
    _PENALTIES = ("reg", "reg_bias", "reg_implicit")

    def __init__(self, n_factors: int = 32, n_epochs: int = 20, learning_rate: float = 0.02,
                 lr_bias: float | None = None, reg: float = 0.1, reg_bias: float = 0.02,
                 reg_implicit: float = 10.0, lr_schedule: str = "inverse",
                 lr_decay: float = 0.05, init_std: float = 0.1, n_blocks: int | None = None,
                 dtype="float32", backend: str = "auto", n_threads: int | None = None,
                 random_state: int | None = None, early_stopping: bool = False,
                 validation_fraction: float = 0.1, n_iter_no_change: int = 3,
                 tol: float = 1e-4, callbacks=None, duplicates: str = "raise",
                 verbose: bool = False):
        store_params(self, locals())

    def _fit_blocked(self, data, validation, backend, place, dtype, k, n_threads, rng) -> None:
        xp = array_module(data.values)
        self.global_mean_ = float(xp.mean(data.values, dtype=np.float64))
        self.seen_ = seen_matrix(data)
        blocked = self._blocked(backend, data, rng, n_threads)
        state = blocked.to_working_order(self._initial_state(rng, data.shape, k, dtype),
                                         backend.row_width("sgd", k, dtype))
        ratings = (blocked.users, blocked.items, blocked.ratings, blocked.block_ptr,
                   *_implicit_layout(blocked, data.shape))
        check_svdpp_epoch(*ratings[:4], blocked.epoch_schedule(np.random.default_rng(0)),
                          *ratings[4:], state["user_factors_"], state["item_factors_"],
                          state["implicit_factors_"], state["user_bias_"], state["item_bias_"])
        # On CUDA the layout goes to the device once and the fitted arrays stay there.
        move = place.move
        state = {name: move(table) for name, table in state.items()}
        ratings = tuple(move(a) for a in ratings)
        self._implicit_matrix = _implicit_operator(ratings[4], ratings[5], data.shape)
        self.__dict__.update(state)
        trainer = _SVDppTrainer(self, backend, blocked, ratings, move, state, data,
                                _working_rows(blocked, validation), n_threads, rng)
        def finish():
            state["user_implicit_"] = self._implicit_sums(state["implicit_factors_"])
            self.__dict__.update(blocked.to_id_order(state, k))
            del self._implicit_matrix

        self._train(trainer, int(self.n_epochs), backend.name, finish)

    def _initial_state(self, rng, shape, k, dtype) -> dict[str, np.ndarray]:
        """The trained arrays before the first epoch, in id order (names as fitted)."""
        n_users, n_items = shape
        return {
            "user_factors_": rng.normal(0.0, self.init_std, (n_users, k)).astype(dtype),
            "item_factors_": rng.normal(0.0, self.init_std, (n_items, k)).astype(dtype),
            "implicit_factors_": rng.normal(0.0, self.init_std, (n_items, k)).astype(dtype),
            "user_bias_": np.zeros(n_users, dtype),
            "item_bias_": np.zeros(n_items, dtype),
        }

    def _implicit_sums(self, implicit_factors):
        """z_u = |N(u)|^-1/2 sum_{j in N(u)} y_j for every user (working order during fit)."""
        return (self._implicit_matrix @ implicit_factors.astype(np.float64)).astype(
            implicit_factors.dtype)

    def _check_consistent(self) -> None:
        super()._check_consistent()
        shape = self.item_factors_.shape
        for name, want in (("implicit_factors_", shape),
                           ("user_implicit_", self.user_factors_.shape)):
            value = getattr(self, name)
            if value.shape != want or value.dtype != self.item_factors_.dtype:
                raise ValueError(f"{name} is {value.dtype}{value.shape}, expected {want}")
            if not np.isfinite(value).all():
                raise ValueError(f"{name} holds NaN or inf")

    # -- prediction ------------------------------------------------------------------------
    def _predict_indices(self, u, i):
        xp = array_module(self.user_factors_)
        u, i = xp.asarray(u), xp.asarray(i)
        known_u, known_i = u >= 0, i >= 0
        uu, ii = xp.where(known_u, u, 0), xp.where(known_i, i, 0)
        users = self.user_factors_[uu] + self.user_implicit_[uu]
        dot = xp.sum(users * self.item_factors_[ii], axis=1)
        out = (self.global_mean_ + xp.where(known_u, self.user_bias_[uu], 0)
               + xp.where(known_i, self.item_bias_[ii], 0) + xp.where(known_u & known_i, dot, 0))
        return out.astype(self.user_factors_.dtype, copy=False)

    def _score_users(self, u):
        users = self.user_factors_[u] + self.user_implicit_[u]
        return users @ self.item_factors_.T + self.item_bias_[None, :] + (
            self.global_mean_ + self.user_bias_[u])[:, None]

    def _user_vectors(self, u):
        return self.user_factors_[u] + self.user_implicit_[u]

    def fold_in(self, items, ratings):
        """A new user's ``(user_bias, p_u + z_u)`` from their ratings (N = the rated items):
        z from the fitted y, then :meth:`FactorModel.fold_in`'s least squares for ``(b_u,
        p_u)`` with q . z moved to the target. The returned vector scores as ``user_factors_ +
        user_implicit_`` rows do."""
        self._check_fitted()
        self._check_on_host("fold_in")
        i = np.unique(self._item_index(np.atleast_1d(items)))
        z = (self.implicit_factors_[i].sum(axis=0) / math.sqrt(max(i.shape[0], 1))).astype(
            self.user_factors_.dtype)
        target = np.asarray(ratings, dtype=np.float64) - self.item_factors_[
            self._item_index(np.atleast_1d(items))] @ z
        bias, p = super().fold_in(items, target)
        return bias, p + z


class _SVDppTrainer(_SGDTrainer):
    """One SVD++ epoch over the blocked ratings (working row order) for the shared fit loop;
    the rest as MF's."""

    def run_epoch(self, epoch: int) -> float:
        m, a = self.model, self.arrays
        lr, lr_b = self.learning_rates(epoch)
        sse = self.backend.svdpp_epoch(
            *self.ratings[:4], self.move(self.blocked.epoch_schedule(self.rng)),
            *self.ratings[4:], a["user_factors_"], a["item_factors_"], a["implicit_factors_"],
            a["user_bias_"], a["item_bias_"], m.global_mean_, lr, lr_b, m.reg, m.reg_bias,
            m.reg_implicit, True, self.n_threads)
        return math.sqrt(sse / self.data.nnz) if math.isfinite(sse) else math.inf

    def validation(self) -> tuple[float, str, bool] | None:
        if self.validation_pairs is not None:  # predictions read the users' implicit sums
            self.model.user_implicit_ = self.model._implicit_sums(self.arrays["implicit_factors_"])
        return super().validation()


def _implicit_layout(blocked: BlockedRatings, shape) -> tuple[np.ndarray, ...]:
    """``(user_ptr, user_items, item_ptr, item_users)`` of the distinct training pairs in working
    order, indices in the ratings' index dtype, where the ratings are."""
    xp, xsp = array_module(blocked.users), sparse_module(blocked.users)
    ones = xp.ones(blocked.users.shape[0], pattern_dtype(xp))
    m = xsp.csr_matrix((ones, (blocked.users, blocked.items)), shape=shape)
    m.sum_duplicates()
    by_item = m.T.tocsr()
    by_item.sort_indices()
    index = blocked.users.dtype
    return (m.indptr.astype(np.int64), m.indices.astype(index),
            by_item.indptr.astype(np.int64), by_item.indices.astype(index))


def _implicit_operator(user_ptr, user_items, shape):
    """The sparse matrix of N(u) with rows scaled by |N(u)|^-1/2, where the arrays are."""
    xp, xsp = array_module(user_ptr), sparse_module(user_ptr)
    counts = xp.diff(user_ptr)
    norm = xp.where(counts > 0, 1.0 / xp.sqrt(xp.maximum(counts, 1)), 0.0)
    values = xp.repeat(norm, counts.astype(np.int64))
    return xsp.csr_matrix((values, user_items, user_ptr), shape=shape)

