"""Biased matrix factorisation trained by SGD on explicit ratings (Funk-SVD / Surprise SVD)."""

from __future__ import annotations

import logging
import math

import numpy as np

from fastrec._algorithms.fit_loop import (
    LR_SCHEDULES,
    Trainer,
    learning_rate_at,
)
from fastrec._algorithms.sgd_schedule import BlockedRatings
from fastrec._array import array_module, to_host
from fastrec.backends._contract import check_sgd_epoch
from fastrec.metrics import rmse
from fastrec.models._base import (
    FactorModel,
    check_dtype,
    check_positive,
    seen_matrix,
    store_params,
)

log = logging.getLogger("fastrec")


class _SGDModel(FactorModel):
    """What MF and SVD++ share: the SGD parameters and their checks, ``fit``, and the fit's
    first steps (internal holdout, backend, placement, training data and ids, validation pairs,
    the blocked layout). A family names its epoch kernel (``_KERNEL``) and penalties
    (``_PENALTIES``) and fits in ``_fit_blocked(data, validation, backend, place, dtype, k,
    n_threads, rng)``: initial state, layout, trainer, training (``validation``: the mapped
    validation Interactions or None)."""

    _KERNEL = "sgd_epoch"
    _PENALTIES = ("reg", "reg_bias")

    def _validate_params(self) -> np.dtype:
        check_positive("n_factors", self.n_factors, integer=True)
        check_positive("n_epochs", self.n_epochs, integer=True)
        check_positive("learning_rate", self.learning_rate)
        if self.lr_bias is not None:
            check_positive("lr_bias", self.lr_bias, allow_zero=True)
        for name in (*self._PENALTIES, "lr_decay", "tol"):
            check_positive(name, getattr(self, name), allow_zero=True)
        check_positive("init_std", self.init_std)
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.lr_schedule == "exponential" and self.lr_decay >= 1:
            raise ValueError("lr_decay must be < 1 for the exponential schedule")
        if self.n_blocks is not None:
            check_positive("n_blocks", self.n_blocks, integer=True)
        check_positive("n_iter_no_change", self.n_iter_no_change, integer=True)
        return check_dtype(self.dtype)

    def fit(self, X, validation_data=None):
        """Fit on explicit ratings (for SVD++, N(u) is the set of items each user rated in X).

        X : scipy.sparse matrix [n_users, n_items] (stored entries are ratings), a
            ``(user_ids, item_ids, ratings)`` tuple of arbitrary ids, a pandas DataFrame with
            user/item/rating columns, or :class:`fastrec.data.Interactions`. A
            cupyx.scipy.sparse matrix or CuPy arrays in the tuple are accepted too. With
            ``backend="cuda"`` they stay on the device: validation, id mapping and the blocked
            layout run there (only the id maps and the random draws cross, the ratings never
            do), and host input is laid out on the host and copied to the device once. Other
            backends copy device input to the host once.
        validation_data : the same kinds, mapped with the training ids (unseen ids dropped).
        Returns self. A fit that raises leaves a previously fitted model as it was, except
        :class:`fastrec.DivergenceError`, after which the model holds the last good epoch.
        """
        self._transaction(type(self)._fit, X, validation_data)
        return self

    def _fit(self, X, validation_data) -> None:
        dtype = self._validate_params()
        X, validation_data = self._holdout(X, validation_data)
        backend = self._resolve_backend((self._KERNEL,))
        place = self._placement(backend)
        data = self._training_data(place.inputs(X), dtype)
        self.n_users_, self.n_items_ = data.shape
        self.user_ids_, self.item_ids_ = data.user_ids, data.item_ids
        validation = None if validation_data is None else self._mapped(validation_data, dtype)
        self._fit_blocked(data, validation, backend, place, dtype, int(self.n_factors),
                          self._n_threads(), np.random.default_rng(self.random_state))

    def _blocked(self, backend, data, rng, n_threads) -> BlockedRatings:
        """The ratings on the stratified grid of ``n_blocks`` (or the backend's) side."""
        g = min(self.n_blocks or backend.default_n_blocks(*data.shape), *data.shape)
        return BlockedRatings.build(data.users, data.items, data.values, data.n_users,
                                    data.n_items, g, rng, n_threads)


def _working_rows(blocked: BlockedRatings, validation):
    """Validation ``Interactions`` as ``(user rows, item rows, values)`` of the layout's working
    order (None stays None)."""
    if validation is None:
        return None
    return (blocked.user_rows[validation.users], blocked.item_rows[validation.items],
            validation.values)


class MF(_SGDModel):
    """Biased MF, ``r_hat = mu + b_u + b_i + p_u . q_i``, trained by stratified parallel SGD.

    Parameters
    ----------
    n_factors : int, rank ``k``.
    n_epochs : int, maximum number of passes over the ratings.
    learning_rate : float, SGD step for the factors (``lr_bias`` for biases, default the same).
    reg, reg_bias : float, L2 penalties for factors and biases (applied per rating, as Surprise).
    lr_schedule : "constant", "inverse" (lr / (1 + lr_decay * epoch)) or "exponential"
        (lr * (1 - lr_decay) ** epoch).
    biased : bool, False gives plain MF (no mean, no biases).
    init_std : float, factors start as N(0, init_std); biases at zero.
    n_blocks : int or None, side of the stratified grid (None: the backend's default, 16 on CPUs,
        4 per SM of the device on CUDA; fewer for tiny data). Results are bitwise identical at
        any thread count for a fixed ``n_blocks``.
    dtype : float32 (default) or float64.
    backend : "auto", "cython", "numba", "numpy" (reference, slow) or "cuda".
    n_threads : int or None (all usable cores).
    random_state : int or None; the same seed gives the same model on a given backend.
    early_stopping : bool, stop when the validation RMSE stops improving; the best epoch's
        model is kept. The validation data is ``fit``'s ``validation_data``, or without it a
        random ``validation_fraction`` of the ratings held out of training (seeded by
        ``random_state``).
    validation_fraction : float in (0, 1), share of the ratings held out for early stopping
        when ``fit`` gets no ``validation_data`` (unused otherwise).
    n_iter_no_change, tol : patience and relative improvement for early stopping.
    duplicates : what repeated (user, item) pairs in the training data mean: "raise" (an
        error naming the first one, the default), "mean", "last" or "sum" of their values.
    callbacks : list of ``callback(epoch, metrics)`` called after each epoch (``metrics`` has
        ``loss`` and ``validation``); a truthy return value stops the fit.
    verbose : bool, progress bar and per-epoch log lines.

    The defaults (k=64, 20 epochs, learning_rate 0.03, reg 0.1, no early stopping) were chosen
    on a validation split carved from the training part of ml-latest-small (random 80/20 with
    ``default_rng(0)``; validation = a random 10% of the training 80%; the test 20% never read):
    ``benchmarks/results/tuning_mf.md``, made by ``benchmarks/tune_defaults.py mf``. They score
    0.8557 validation RMSE at epoch 20 (the previous defaults, k=32, lr 0.02, reg 0.05: 0.8643);
    k=128 gains 0.003 for about 2.5x the epoch time, a trade the defaults decline. Early stopping
    stays off: these settings still improve at epoch 40, so an internal split would only take
    a tenth of the ratings away from training (test RMSE 0.856 with it, 0.850 without).

    Fitted attributes: those of :class:`FactorModel` plus ``loss_curve_`` (training RMSE per
    epoch, measured during the pass), ``validation_curve_`` (validation RMSE per epoch, empty
    without validation data), ``n_epochs_``, ``backend_``, ``fit_time_`` (seconds),
    ``timings_`` (``{"prepare": s, "train": s}``), ``seen_``.
    """

    def __init__(self, n_factors: int = 64, n_epochs: int = 20, learning_rate: float = 0.03,
                 lr_bias: float | None = None, reg: float = 0.1, reg_bias: float = 0.02,
                 lr_schedule: str = "inverse", lr_decay: float = 0.05, biased: bool = True,
                 init_std: float = 0.1, n_blocks: int | None = None, dtype="float32",
                 backend: str = "auto", n_threads: int | None = None,
                 random_state: int | None = None, early_stopping: bool = False,
                 validation_fraction: float = 0.1, n_iter_no_change: int = 3,
                 tol: float = 1e-4, callbacks=None, duplicates: str = "raise",
                 verbose: bool = False):
        store_params(self, locals())

    def _fit_blocked(self, data, validation, backend, place, dtype, k, n_threads, rng) -> None:
        self.global_mean_ = float(array_module(data.values).mean(data.values, dtype=np.float64)) \
            if self.biased else 0.0
        state = {
            "user_factors_": rng.normal(0.0, self.init_std, (data.n_users, k)).astype(dtype),
            "item_factors_": rng.normal(0.0, self.init_std, (data.n_items, k)).astype(dtype),
            "user_bias_": np.zeros(data.n_users, dtype),
            "item_bias_": np.zeros(data.n_items, dtype),
        }
        blocked = self._blocked(backend, data, rng, n_threads)
        # made after the layout, the largest temporary of the fit, so as not to add to its peak
        self.seen_ = seen_matrix(data)
        # The kernels see the factor tables in the layout's working row order; the fitted
        # attributes are put back in id order whatever happens (finally below).
        state = blocked.to_working_order(state, backend.row_width("sgd", k, dtype))
        check_sgd_epoch(blocked.users, blocked.items, blocked.ratings, blocked.block_ptr,
                        blocked.epoch_schedule(np.random.default_rng(0)), *state.values())
        # On CUDA the ratings go to the device once and the fitted arrays stay there.
        move = place.move
        state = {name: move(table) for name, table in state.items()}
        ratings = tuple(move(a) for a in (blocked.users, blocked.items, blocked.ratings,
                                          blocked.block_ptr))
        self.__dict__.update(state)
        trainer = _SGDTrainer(self, backend, blocked, ratings, move, state, data,
                              _working_rows(blocked, validation), n_threads, rng)
        self._train(trainer, int(self.n_epochs), backend.name,
                    lambda: self.__dict__.update(blocked.to_id_order(state, k)))


class _SGDTrainer(Trainer):
    """One stratified SGD epoch over the blocked ratings (working row order)."""

    loss_label = "train RMSE"

    def __init__(self, model: MF, backend, blocked, ratings, move, state, data, validation,
                 n_threads, rng):
        self.model, self.backend, self.blocked = model, backend, blocked
        self.ratings, self.move, self.arrays = ratings, move, state
        self.data, self.validation_pairs = data, validation
        self.n_threads, self.rng = n_threads, rng
        self.name = f"{type(model).__name__}[{backend.name}]"
        self.lr_bias = model.learning_rate if model.lr_bias is None else model.lr_bias
        self.hint = (f"learning_rate={model.learning_rate} (lr_bias={self.lr_bias}) is too "
                     "large for this data; lower it")

    def state(self) -> dict:
        return self.arrays

    def run_epoch(self, epoch: int) -> float:
        m = self.model
        lr, lr_b = self.learning_rates(epoch)
        sse = self.backend.sgd_epoch(
            *self.ratings, self.move(self.blocked.epoch_schedule(self.rng)),
            self.arrays["user_factors_"], self.arrays["item_factors_"],
            self.arrays["user_bias_"], self.arrays["item_bias_"], m.global_mean_, lr, lr_b,
            m.reg, m.reg_bias, bool(m.biased), self.n_threads)
        return math.sqrt(sse / self.data.nnz) if math.isfinite(sse) else math.inf

    def validation(self) -> tuple[float, str, bool] | None:
        if self.validation_pairs is None:
            return None
        users, items, values = self.validation_pairs
        return rmse(values, to_host(self.model._predict_indices(users, items))), "RMSE", True

    def learning_rates(self, epoch: int) -> tuple[float, float]:
        """The schedule's factor and bias learning rates of ``epoch``."""
        m = self.model
        return (learning_rate_at(m.lr_schedule, m.learning_rate, m.lr_decay, epoch),
                learning_rate_at(m.lr_schedule, self.lr_bias, m.lr_decay, epoch))

    def input_scale(self) -> float:
        values = self.data.values
        return float(array_module(values).abs(values).max()) if values.size else 0.0
