"""Neural collaborative filtering (He et al., WWW 2017): GMF, MLP and NeuMF.

One network family behind three estimators: GMF scores ``h . (p_u * q_i)``, MLP feeds the
concatenated user and item embeddings through a ReLU tower, NeuMF fuses both in one output layer.
Training is implicit feedback by default (every observed pair is a positive, ``n_negatives``
uniform unseen items per positive are drawn afresh each epoch, binary cross-entropy), or explicit
ratings with ``loss="squared"``. A whole epoch is one kernel call (``ncf_train_epoch``).
:class:`JointNeuMF` adds a biased MF rating loss on the GMF embeddings to NeuMF's implicit loss,
trained in the same kernel calls, so one model ranks and predicts ratings.

With ``backend="cuda"`` the training data, the weights and the optimiser state go to the GPU once
and stay there for the whole fit; the fitted arrays stay on the GPU afterwards (``device_``,
``to("cpu")``, ``to_numpy()``), prediction and recommendation run the forward pass there and
return numpy arrays, and ``save`` writes host arrays.
"""

from __future__ import annotations

import copy
import logging
import math

import numpy as np
import scipy.sparse as sp

from fastrec._algorithms.fit_loop import Trainer
from fastrec._algorithms.ncf import (
    LOSSES,
    OPTIMIZERS,
    OptimizerState,
    cache_size,
    check_layers,
    dense_size,
    epoch_order,
    init_params,
)
from fastrec._array import array_module, is_device_array, to_host
from fastrec.backends import available_backends, get_backend
from fastrec.backends._contract import check_ncf_net
from fastrec.data.interactions import Interactions
from fastrec.models._base import (
    UserItemModel,
    check_dtype,
    check_flag,
    check_pairs,
    check_positive,
    seen_matrix,
    store_params,
)

log = logging.getLogger("fastrec")

_KERNELS = ("ncf_forward", "ncf_train_epoch")
_SCORE_BATCH = 1 << 17  # pairs per forward call when scoring: bounds the activation cache


class _NCF(UserItemModel):
    """Shared estimator machinery; the subclasses only fix which parts the network has."""

    _HAS_GMF = True
    _HAS_MLP = True
    _HOLDOUT = "latest"
    _JOINT = False  # JointNeuMF: the rating term and the rating bias column
    _HOST_ARRAYS = (*UserItemModel._HOST_ARRAYS, "layers_")  # the widths are read on the host

    def __init__(self, n_factors: int = 64, layers=(64, 32, 16, 8), n_epochs: int = 20,
                 batch_size: int = 256, learning_rate: float = 0.001, n_negatives: int = 8,
                 loss: str = "bce", optimizer: str = "adam", beta1: float = 0.9,
                 beta2: float = 0.999, eps: float = 1e-8, init_std: float = 0.01,
                 pretrain_alpha: float = 0.5, dtype="float32", backend: str = "auto",
                 n_threads: int | None = None, random_state: int | None = None,
                 early_stopping: bool = True, validation_fraction: float = 1.0,
                 n_iter_no_change: int = 3, tol: float = 1e-4, refit: bool = True,
                 eval_k: int = 10, n_eval_negatives: int = 99, callbacks=None,
                 duplicates: str = "raise", verbose: bool = False):
        store_params(self, locals())

    # -- parameters -------------------------------------------------------------------------
    def _architecture(self) -> tuple[int, np.ndarray]:
        n_gmf = 0
        if self._HAS_GMF:
            check_positive("n_factors", self.n_factors, integer=True)
            n_gmf = int(self.n_factors)
        layers = check_layers(self.layers if self._HAS_MLP else (), n_gmf)
        if self._HAS_MLP and layers.size == 0:
            raise ValueError("layers must list at least the MLP input width, e.g. (64, 32, 16, 8)")
        return n_gmf, layers

    def _validate_params(self) -> np.dtype:
        self._architecture()
        check_positive("n_epochs", self.n_epochs, integer=True)
        check_positive("batch_size", self.batch_size, integer=True)
        check_positive("learning_rate", self.learning_rate)
        check_positive("n_negatives", self.n_negatives, integer=True, allow_zero=True)
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {tuple(LOSSES)}, got {self.loss!r}")
        if self.loss == "bce" and self.n_negatives == 0:
            raise ValueError("n_negatives=0 with loss='bce': implicit feedback has only "
                             "positives, so the model needs sampled negatives (n_negatives >= 1)")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {tuple(OPTIMIZERS)}, got "
                             f"{self.optimizer!r}")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        check_positive("eps", self.eps, allow_zero=True)
        check_positive("init_std", self.init_std)
        alpha = getattr(self, "pretrain_alpha", 0.5)  # GMF and MLP have no fusion layer
        if not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
            raise ValueError(f"pretrain_alpha must be in [0, 1], got {alpha!r}")
        check_positive("n_iter_no_change", self.n_iter_no_change, integer=True)
        check_flag("refit", self.refit)
        check_positive("tol", self.tol, allow_zero=True)
        check_positive("eval_k", self.eval_k, integer=True)
        check_positive("n_eval_negatives", self.n_eval_negatives, integer=True)
        if self._JOINT:
            check_positive("rating_weight", self.rating_weight, allow_zero=True)
            check_positive("rating_reg", self.rating_reg, allow_zero=True)
            self._n_rating()
            check_flag("nonnegative", self.nonnegative)
            check_flag("mf_init", self.mf_init)
            if self.loss != "bce":
                raise ValueError(f"{type(self).__name__} fits the ratings with its rating term "
                                 f"beside the implicit loss: loss must be 'bce', got "
                                 f"{self.loss!r}")
        return check_dtype(self.dtype)

    # -- training ---------------------------------------------------------------------------
    def fit(self, X, validation_data=None, **init_from):
        """Fit on interactions.

        X : scipy.sparse matrix [n_users, n_items] (stored entries are interactions), a
            ``(user_ids, item_ids[, values])`` tuple, a pandas DataFrame or an
            :class:`~fastrec.data.Interactions`. With ``loss="bce"`` every stored pair is a
            positive (values ignored); with ``loss="squared"`` the values are the targets.
            CuPy arrays and cupyx.scipy.sparse matrices are accepted too: with
            ``backend="cuda"`` they stay on the device and the data preparation (id maps, seen
            items) runs there (only the id maps come to the host), while host input is
            prepared on the host and its arrays go to the device once; other backends copy
            device input to the host once.
        validation_data : held-out pairs of the same kinds (e.g. from
            :func:`fastrec.evaluation.leave_last_out`), scored each epoch with the NCF protocol
            (HR@eval_k among n_eval_negatives sampled items) for BCE, RMSE for squared loss;
            needed by ``early_stopping`` (the best epoch's weights are kept).
        Returns self. A fit that raises leaves a previously fitted model as it was, except
        :class:`fastrec.DivergenceError`, after which the model holds the last good epoch.
        """
        self._transaction(type(self)._fit, X, validation_data, init_from)
        return self

    def _fit(self, X, validation_data, init_from) -> None:
        split_internally = self.early_stopping and validation_data is None
        self._fit_once(X, validation_data, init_from)
        if self.refit and split_internally and self.best_epoch_:
            self._refit(X, init_from)

    def _refit(self, X, init_from) -> None:
        """Train again from the same initial weights on all of ``X`` (the held-out latest
        interactions too) for the ``best_epoch_`` epochs early stopping chose, keeping the
        first fit's curves, ``n_epochs_`` and ``best_epoch_``. The callbacks saw the first fit
        (its epochs and validation metrics) and are not called again."""
        again = copy.copy(self)
        for name in again._fitted_names():
            delattr(again, name)
        again.early_stopping, again.n_epochs, again.callbacks = False, self.best_epoch_, None
        again._fit_once(X, None, init_from)
        kept = {name: getattr(self, name) for name in
                ("loss_curve_", "validation_curve_", "n_epochs_", "best_epoch_")}
        self._adopt(again)
        self.__dict__.update(kept)
        self._train_seconds = again._train_seconds

    def _fit_once(self, X, validation_data, init_from) -> None:
        dtype = self._validate_params()
        if self._JOINT:
            _check_has_ratings(X)
        X, validation_data = self._holdout(X, validation_data)
        n_gmf, layers = self._architecture()
        backend = self._resolve_backend(_KERNELS)
        place = self._placement(backend)
        data = self._training_data(place.inputs(X), dtype)
        n_threads = self._n_threads()
        rng = np.random.default_rng(self.random_state)

        self.n_users_, self.n_items_ = data.shape
        self.user_ids_, self.item_ids_ = data.user_ids, data.item_ids
        self.layers_, self.n_gmf_ = layers, n_gmf
        self.user_embeddings_, self.item_embeddings_, self.dense_ = init_params(
            data.n_users, data.n_items, n_gmf, layers, dtype, rng, self.init_std)
        if self._JOINT:
            self.rating_mean_ = float(array_module(data.values).mean(data.values,
                                                                     dtype=np.float64))
            self.n_rating_ = self._n_rating()
            n_nonnegative = self.n_rating_ if self.nonnegative else 0
            self.user_embeddings_, self.item_embeddings_ = (
                _with_bias_column(e, n_nonnegative)
                for e in (self.user_embeddings_, self.item_embeddings_))
        self._init_from(**init_from)
        if (self._JOINT and self.mf_init and self.rating_weight > 0 and not self.nonnegative
                and not {"gmf", "mf"} & init_from.keys()):
            self._init_rating_part(data, n_threads)
        check_ncf_net(self.user_embeddings_, self.item_embeddings_, self.dense_, layers, n_gmf)
        self.seen_ = seen_matrix(data)
        self.seen_.sort_indices()
        validation = self._validation(place.inputs(validation_data), self._seen_pairs(), dtype)
        # On CUDA the data and the weights go to the device once (the optimiser state is made
        # there) and the fitted arrays stay there; only each epoch's sample order is copied.
        move = place.move
        self.user_embeddings_, self.item_embeddings_, self.dense_ = (
            move(a) for a in (self.user_embeddings_, self.item_embeddings_, self.dense_))
        trainer = _NCFTrainer(self, backend, data, validation, move, n_threads, rng)
        self._train(trainer, int(self.n_epochs), backend.name)

    def _init_from(self, **models) -> None:
        if models:
            raise TypeError(f"{type(self).__name__}.fit got unexpected arguments "
                            f"{sorted(models)}; only NeuMF takes pretrained models")

    def _validation(self, validation_data, train: Interactions, dtype):
        if validation_data is None:
            return None
        if isinstance(validation_data, Interactions):
            if validation_data.shape != train.shape:
                raise ValueError(f"validation data has shape {validation_data.shape}, the "
                                 f"training data {train.shape}")
            val = validation_data
        elif sp.issparse(validation_data):
            val = Interactions.from_sparse(validation_data, dtype)
            if val.shape != train.shape:
                raise ValueError(f"validation matrix has shape {val.shape}, the training "
                                 f"data {train.shape}")
        else:
            val = Interactions.from_any(validation_data, dtype=dtype, user_ids=train.user_ids,
                                        duplicates=self.duplicates,
                                        item_ids=train.item_ids)
        if self.loss == "squared":
            return val
        from fastrec.evaluation import SampledRanking

        return SampledRanking.build(train, val, int(self.n_eval_negatives),
                                    seed=0 if self.random_state is None else self.random_state)

    def _validation_score(self, validation) -> tuple[float, bool, str]:
        if self.loss == "squared":
            pred = to_host(self._predict_indices(validation.users, validation.items))
            rmse = float(np.sqrt(np.mean((pred.astype(np.float64) - validation.values) ** 2)))
            return rmse, True, "RMSE"
        from fastrec.evaluation import evaluate_sampled

        k = int(self.eval_k)
        return evaluate_sampled(self, validation, k)[f"hr@{k}"], False, f"HR@{k}"

    # -- scoring ----------------------------------------------------------------------------
    def _forward_backend(self):
        """Where the forward pass runs: CUDA for weights on the GPU; for host weights the
        model's backend, or the fastest CPU one when that is CUDA (a model moved to the host
        with ``to("cpu")``/``to_numpy()`` or loaded from a file scores on the CPU)."""
        require = ("ncf_forward",)
        if is_device_array(self.dense_):
            return get_backend("cuda", require)
        if self.backend != "cuda":
            backend = self._resolve_backend(require)
            if backend.name != "cuda":
                return backend
        return get_backend(next(n for n in available_backends(require) if n != "cuda"), require)

    def _logits(self, users: np.ndarray, items: np.ndarray):
        """Logits of host index pairs, on the weights' device: T[n] (numpy or CuPy)."""
        backend = self._forward_backend()
        n_threads = self._n_threads()
        xp = array_module(self.dense_)
        index_dtype = np.int32 if max(self.n_users_, self.n_items_) < 2**31 - 1 else np.int64
        users = np.ascontiguousarray(users, dtype=index_dtype)
        items = np.ascontiguousarray(items, dtype=index_dtype)
        out = xp.empty(users.shape[0], self.dense_.dtype)
        for start in range(0, users.shape[0], _SCORE_BATCH):
            u = xp.asarray(users[start:start + _SCORE_BATCH])
            i = xp.asarray(items[start:start + _SCORE_BATCH])
            cache = xp.empty(cache_size(u.shape[0], self.layers_, self.n_gmf_), self.dense_.dtype)
            backend.ncf_forward(u, i, self.user_embeddings_, self.item_embeddings_, self.dense_,
                                self.layers_, self.n_gmf_, cache, out[start:start + u.shape[0]],
                                n_threads)
        return out

    def _predict_indices(self, users: np.ndarray, items: np.ndarray):
        """Scores of host index pairs, on the weights' device: probabilities (BCE) or predicted
        ratings (squared loss), T[n] (numpy or CuPy)."""
        z = self._logits(users, items)
        if self.loss == "bce":
            xp = array_module(z)
            return (1.0 / (1.0 + xp.exp(-z.astype(np.float64)))).astype(z.dtype)
        return z

    def _score_users(self, users: np.ndarray):
        """Scores of every item for each user index, on the weights' device:
        T[len(users), n_items] (numpy or CuPy)."""
        users = np.asarray(users, np.int64)
        u = np.repeat(users, self.n_items_)
        i = np.tile(np.arange(self.n_items_), users.shape[0])
        return self._predict_indices(u, i).reshape(users.shape[0], self.n_items_)

    def _ids(self) -> Interactions:
        empty = np.empty(0, np.int64)
        return Interactions(empty, empty, np.empty(0), self.user_ids_, self.item_ids_)

    def predict(self, users, items) -> np.ndarray:
        """Scores of the pairs ``(users[j], items[j])`` (original ids): the probability of an
        interaction (loss="bce") or the predicted rating (loss="squared"), float[n] (numpy,
        also for a model on the GPU, where the forward pass runs)."""
        self._check_fitted()
        users, items = check_pairs(users, items)
        ids = self._ids()
        return to_host(self._predict_indices(ids.user_index(users), ids.item_index(items)))

    def score(self, X, y=None) -> float:
        """Higher-is-better score of held-out pairs ``X`` (scikit-learn's convention): HR@eval_k
        under the NCF protocol (each pair ranked among ``n_eval_negatives`` items the user has
        in neither the training data nor ``X``) for loss="bce", negative RMSE for
        loss="squared"."""
        self._check_fitted()
        test = self._mapped(X, self._score_dtype(), "score")
        value, lower_is_better, _ = self._validation_score(
            self._validation(test, self._seen_pairs(), self._score_dtype()))
        return -value if lower_is_better else value

    def _seen_pairs(self) -> Interactions:
        """The training pairs (the pattern ``seen_``, host arrays): what the sampled ranking's
        negatives avoid, read on the host where they are drawn."""
        coo = to_host(self.seen_).tocoo()
        return Interactions(coo.row, coo.col, np.ones(coo.nnz, self.dense_.dtype),
                            self.user_ids_, self.item_ids_)

    def _recommend_chunk(self) -> int:
        return max(1, _SCORE_BATCH // self.n_items_)

    def _score_dtype(self) -> np.dtype:
        return self.dense_.dtype

    # -- files ------------------------------------------------------------------------------
    _ARRAYS = ("user_embeddings_", "item_embeddings_", "dense_", "layers_", "user_ids_",
               "item_ids_")
    _SCALARS = ("n_gmf_",)

    def _check_consistent(self) -> None:
        check_ncf_net(self.user_embeddings_, self.item_embeddings_, self.dense_, self.layers_,
                      int(self.n_gmf_))
        if self.user_embeddings_.shape[0] != self.n_users_ or (
                self.item_embeddings_.shape[0] != self.n_items_):
            raise ValueError("embedding rows do not match the id maps")
        width = int(self.n_gmf_) + (int(self.layers_[0]) // 2 if len(self.layers_) else 0)
        if self.user_embeddings_.shape[1] != width + self._JOINT:
            raise ValueError(f"embedding rows have {self.user_embeddings_.shape[1]} columns, "
                             f"this model {width + self._JOINT}")
        for name in ("user_embeddings_", "item_embeddings_", "dense_"):
            if not np.isfinite(getattr(self, name)).all():
                raise ValueError(f"{name} holds NaN or inf")


class _NCFTrainer(Trainer):
    """One epoch of NCF mini-batches (``ncf_train_epoch``) with its optimiser state."""

    def __init__(self, model: _NCF, backend, data: Interactions, validation, move, n_threads,
                 rng):
        self.model, self.backend, self.validation_set = model, backend, validation
        self.n_threads, self.rng, self.move = n_threads, rng, move
        self.name = f"{type(model).__name__}[{backend.name}]"
        self.hint = (f"learning_rate={model.learning_rate} is too large for this data; lower "
                     "it")
        dtype = model.dense_.dtype
        index_dtype = data.users.dtype
        xp = array_module(data.users)
        self.nnz, self.values = data.nnz, data.values
        targets = (xp.ones(data.nnz, dtype) if model.loss == "bce"
                   else xp.ascontiguousarray(data.values, dtype=dtype))
        self.data_arrays = tuple(move(a) for a in (
            xp.ascontiguousarray(data.users), xp.ascontiguousarray(data.items.astype(index_dtype)),
            targets, model.seen_.indptr.astype(np.int64), model.seen_.indices.astype(index_dtype)))
        self.rating_term = {}
        if model._JOINT:
            self.rating_term = {
                "ratings": move(xp.ascontiguousarray(data.values, dtype=dtype)),
                "rating_weight": float(model.rating_weight),
                "rating_mean": model.rating_mean_, "rating_reg": float(model.rating_reg),
                "n_rating": int(model.n_rating_), "nonnegative": bool(model.nonnegative)}
        self.seed = int(rng.integers(0, 2**63))
        self.optimizer_state = OptimizerState.zeros(
            model.user_embeddings_, model.item_embeddings_, model.dense_,
            0.1 if model.optimizer == "adagrad" else 0.0)
        self.eps = model.eps if model.optimizer == "adam" else max(model.eps, 1e-10)
        # near-zero initial logits: the logistic loss starts at ln 2, the squared one at E[y^2]
        self.baseline_loss = (math.log(2.0) if model.loss == "bce" else
                              float(xp.mean(xp.square(targets, dtype=np.float64))))
        if model._JOINT:  # plus the rating term's mean over all slots at zero factors
            self.baseline_loss += model.rating_weight * float(xp.var(
                data.values, dtype=np.float64)) / (int(model.n_negatives) + 1)

    def state(self) -> dict:
        m = self.model
        return {"user_embeddings_": m.user_embeddings_, "item_embeddings_": m.item_embeddings_,
                "dense_": m.dense_}

    def run_epoch(self, epoch: int) -> float:
        m, opt = self.model, self.optimizer_state
        n_neg = int(m.n_negatives)
        order = epoch_order(self.nnz, n_neg, self.rng)
        total = self.backend.ncf_train_epoch(
            *self.data_arrays, self.move(order), n_neg, self.seed, epoch,
            m.user_embeddings_, m.item_embeddings_, m.dense_, m.layers_, m.n_gmf_,
            LOSSES[m.loss], OPTIMIZERS[m.optimizer], m.learning_rate, m.beta1, m.beta2, self.eps,
            opt.step, opt.dense1, opt.dense2, opt.user1, opt.user2, opt.item1, opt.item2,
            int(m.batch_size), self.n_threads, **self.rating_term)
        opt.step += -(-order.shape[0] // int(m.batch_size))
        return total / order.shape[0]

    def validation(self) -> tuple[float, str, bool] | None:
        if self.validation_set is None:
            return None
        value, lower_is_better, label = self.model._validation_score(self.validation_set)
        return value, label, lower_is_better

    def input_scale(self) -> float | None:
        if self.model.loss != "squared" or self.values.size == 0:
            return None
        return float(array_module(self.values).abs(self.values).max())


class GMF(_NCF):
    """Generalised matrix factorisation: ``sigmoid(h . (p_u * q_i) + b)``, ``n_factors`` wide.

    Parameters are those of :class:`NeuMF` (``layers`` is ignored). Fitted attributes:
    ``user_embeddings_`` T[n_users, n_factors], ``item_embeddings_`` T[n_items, n_factors],
    ``dense_`` T[n_factors + 1] (output weights then bias), ``layers_`` (empty), ``n_gmf_``,
    ``user_ids_``, ``item_ids_``, ``n_users_``, ``n_items_``, ``seen_``, ``loss_curve_`` (mean
    loss per epoch), ``validation_curve_``, ``n_epochs_``, ``backend_``, ``fit_time_``.
    """

    _HAS_MLP = False

    def __init__(self, n_factors: int = 8, n_epochs: int = 20, batch_size: int = 256,
                 learning_rate: float = 0.001, n_negatives: int = 4, loss: str = "bce",
                 optimizer: str = "adam", beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, init_std: float = 0.01, dtype="float32",
                 backend: str = "auto", n_threads: int | None = None,
                 random_state: int | None = None, early_stopping: bool = True,
                 validation_fraction: float = 1.0, n_iter_no_change: int = 3,
                 tol: float = 1e-4, refit: bool = True, eval_k: int = 10,
                 n_eval_negatives: int = 99, callbacks=None, duplicates: str = "raise",
                 verbose: bool = False):
        super().__init__(n_factors=n_factors, layers=(), n_epochs=n_epochs,
                         batch_size=batch_size, learning_rate=learning_rate,
                         n_negatives=n_negatives, loss=loss, optimizer=optimizer, beta1=beta1,
                         beta2=beta2, eps=eps, init_std=init_std, dtype=dtype, backend=backend,
                         n_threads=n_threads, random_state=random_state,
                         early_stopping=early_stopping,
                         validation_fraction=validation_fraction,
                         n_iter_no_change=n_iter_no_change, tol=tol, refit=refit,
                         eval_k=eval_k,
                         n_eval_negatives=n_eval_negatives, callbacks=callbacks,
                         duplicates=duplicates, verbose=verbose)
        del self.layers, self.pretrain_alpha


class MLP(_NCF):
    """NCF's MLP: ``[p_u ; q_i]`` through ReLU layers ``layers[1:]``, then a logistic output.

    ``layers[0]`` is the concatenated embedding width (each embedding is ``layers[0] / 2``);
    the paper's default tower is (64, 32, 16, 8). Other parameters as :class:`NeuMF`
    (``n_factors`` is ignored). Fitted attributes as :class:`GMF`, with ``dense_`` holding the
    hidden layers (W row-major [in, out], then b, per layer) before the output layer.
    """

    _HAS_GMF = False

    def __init__(self, layers=(64, 32, 16, 8), n_epochs: int = 20, batch_size: int = 256,
                 learning_rate: float = 0.001, n_negatives: int = 4, loss: str = "bce",
                 optimizer: str = "adam", beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, init_std: float = 0.01, dtype="float32",
                 backend: str = "auto", n_threads: int | None = None,
                 random_state: int | None = None, early_stopping: bool = True,
                 validation_fraction: float = 1.0, n_iter_no_change: int = 3,
                 tol: float = 1e-4, refit: bool = True, eval_k: int = 10,
                 n_eval_negatives: int = 99, callbacks=None, duplicates: str = "raise",
                 verbose: bool = False):
        super().__init__(n_factors=0, layers=layers, n_epochs=n_epochs, batch_size=batch_size,
                         learning_rate=learning_rate, n_negatives=n_negatives, loss=loss,
                         optimizer=optimizer, beta1=beta1, beta2=beta2, eps=eps,
                         init_std=init_std, dtype=dtype, backend=backend, n_threads=n_threads,
                         random_state=random_state, early_stopping=early_stopping,
                         validation_fraction=validation_fraction,
                         n_iter_no_change=n_iter_no_change, tol=tol, refit=refit,
                         eval_k=eval_k,
                         n_eval_negatives=n_eval_negatives, callbacks=callbacks,
                         duplicates=duplicates, verbose=verbose)
        del self.n_factors, self.pretrain_alpha


class NeuMF(_NCF):
    """Neural matrix factorisation: GMF and MLP branches fused by one logistic output layer.

    Parameters
    ----------
    n_factors : int, GMF embedding width (the paper's "predictive factors"; NeuMF's default 64,
        GMF's 8).
    layers : MLP widths; layers[0] = 2 x the MLP embedding width (default (64, 32, 16, 8)).
    n_epochs, batch_size, learning_rate : training schedule (NCF defaults: 20, 256, 0.001).
    n_negatives : sampled negatives per positive per epoch (0 only with loss="squared";
        NeuMF's default 8, the paper's and GMF's/MLP's 4).
    loss : "bce" (implicit feedback, default) or "squared" (explicit ratings as targets; sampled
        negatives, if any, get target 0: set n_negatives=0 to fit the ratings alone).
    optimizer : "adam" (dense Adam, lazy Adam on embedding rows), "adagrad" or "sgd".
    beta1, beta2, eps : Adam's constants (eps is Adagrad's too).
    init_std : embeddings start N(0, init_std); hidden layers Glorot, output LeCun uniform.
    pretrain_alpha : weight of the GMF output layer when fusing pretrained models (1 - alpha
        for the MLP's), as in the paper.
    dtype : float32 (default) or float64.
    backend : "auto", "cuda", "cython", "numba" or "numpy" (reference, slow).
    n_threads : int or None (all usable cores). Results do not depend on it.
    random_state : int or None; the same seed gives the same model on a given backend.
    early_stopping, n_iter_no_change, tol : stop when the validation metric (HR@eval_k among
        n_eval_negatives sampled items; RMSE for squared loss) stops improving; keep the best.
        The validation pairs are ``fit``'s ``validation_data``, or without it each user's
        latest interaction (by timestamp when the data has them, else the last stored) for a
        random ``validation_fraction`` of the users with two or more (seeded by
        ``random_state``), held out of training.
    validation_fraction : float in (0, 1], share of the users whose latest interaction is held
        out for early stopping when ``fit`` gets no ``validation_data`` (unused otherwise).
        The default, every user, keeps HR@eval_k's sampling noise low while holding out one
        interaction per user.
    refit : after early stopping on that internal split, train again from the same initial
        weights on all of the data (the held-out interactions too) for ``best_epoch_`` epochs
        (default True; the fit then takes about ``best_epoch_`` more epochs). Without it the
        model never learns each user's latest interaction, the most telling one when the
        next interaction is what is predicted. ``validation_curve_``, ``best_epoch_`` and
        ``n_epochs_`` describe the early-stopping fit, and only that fit calls ``callbacks``.
        Unused with ``validation_data`` or without early stopping.
    duplicates : what repeated (user, item) pairs in the training data mean: "raise" (an
        error naming the first one, the default), "mean", "last" or "sum" of their values.
    callbacks : list of ``callback(epoch, metrics)`` called after each epoch; a truthy return
        value stops the fit.
    verbose : progress bar and per-epoch log lines.

    Early stopping (then ``refit``) is on by default for GMF, MLP and NeuMF, on each user's
    latest training interaction: these networks peak after a few epochs and then lose HR@10;
    ``n_epochs`` is a cap. NeuMF's defaults were chosen on ml-latest-small with validation
    carved from the training part (``benchmarks/results/tuning_neumf.md``, made by
    ``benchmarks/tune_defaults.py neumf``): against the former 32 factors and 4 negatives
    (best validation HR@10 0.725, mean of 2 seeds), 8 negatives and 64 factors together reach
    0.743 and hold it over more epochs; the whole default fit (early stopping, then refit)
    scores 0.736 validation HR@10 (mean of 3 seeds) against 0.714 for the former defaults
    without refit, in about twice the epochs (each about 1.8x as long with 8 negatives).

    ``fit(X, validation_data=None, gmf=None, mlp=None, mf=None)``: ``gmf``/``mlp`` are fitted
    :class:`GMF`/:class:`MLP` models of matching shapes (the paper's pretraining); ``mf`` is a
    fitted MF (or any model with ``user_factors_``/``item_factors_`` of ``n_factors`` columns,
    e.g. an observed-mode NMF) whose factors initialise the GMF embeddings.
    Fitted attributes as :class:`GMF`; embedding rows are ``[GMF part, MLP part]``.
    """

    def _init_from(self, gmf=None, mlp=None, mf=None, **others) -> None:
        if others:
            raise TypeError(f"NeuMF.fit got unexpected arguments {sorted(others)}")
        if gmf is not None and mf is not None:
            raise ValueError("pass gmf or mf, not both: both initialise the GMF embeddings")
        g, layers = self.n_gmf_, self.layers_
        mlp_columns = slice(g, g + int(layers[0]) // 2)  # a JointNeuMF has its bias after them
        alpha = float(self.pretrain_alpha)
        out = dense_size(layers, g) - (g + int(layers[-1]) + 1)  # offset of the output layer
        for name, model in (("gmf", gmf), ("mlp", mlp), ("mf", mf)):
            if model is not None:
                self._check_same_ids(name, model)
        if gmf is not None:
            if not isinstance(gmf, GMF) or gmf.n_gmf_ != g:
                raise ValueError(f"gmf must be a fitted GMF with n_factors={g}")
            self.user_embeddings_[:, :g] = to_host(gmf.user_embeddings_)
            self.item_embeddings_[:, :g] = to_host(gmf.item_embeddings_)
            self.dense_[out:out + g] = alpha * to_host(gmf.dense_[:g])
        if mf is not None:
            p, q = to_host(mf.user_factors_), to_host(mf.item_factors_)
            if p.shape[1] != g:
                raise ValueError(f"mf has {p.shape[1]} factors; NeuMF's GMF part has {g}")
            self.user_embeddings_[:, :g] = p
            self.item_embeddings_[:, :g] = q
            self.dense_[out:out + g] = 1.0  # the GMF branch starts as the MF dot product
        if mlp is not None:
            if not isinstance(mlp, MLP) or not np.array_equal(mlp.layers_, layers):
                raise ValueError(f"mlp must be a fitted MLP with layers={layers.tolist()}")
            mlp_dense = to_host(mlp.dense_)
            self.user_embeddings_[:, mlp_columns] = to_host(mlp.user_embeddings_)
            self.item_embeddings_[:, mlp_columns] = to_host(mlp.item_embeddings_)
            self.dense_[:out] = mlp_dense[:out]
            self.dense_[out + g:-1] = (1.0 - alpha) * mlp_dense[out:-1]
        gmf_bias = to_host(gmf.dense_)[-1] if gmf is not None else 0.0
        mlp_bias = to_host(mlp.dense_)[-1] if mlp is not None else 0.0
        if gmf is not None or mlp is not None:
            self.dense_[-1] = alpha * gmf_bias + (1.0 - alpha) * mlp_bias

    def _check_same_ids(self, name, model) -> None:
        if not hasattr(model, "user_ids_"):
            raise ValueError(f"{name} is not fitted")
        if not (np.array_equal(model.user_ids_, self.user_ids_)
                and np.array_equal(model.item_ids_, self.item_ids_)):
            raise ValueError(f"{name} was fitted on other users/items than this data; "
                             f"pretrained models must share the id maps")


class JointNeuMF(NeuMF):
    """NeuMF and biased matrix factorisation trained on one loss: one model that ranks (the
    network's implicit-feedback BCE over sampled negatives) and predicts ratings.

    The loss of a mini-batch is NeuMF's plus, for each observed pair (u, i) with rating r,
    ``rating_weight * ((mu + b_u + b_i + p_u . q_i - r)^2 + rating_reg * (|p_u|^2 + |q_i|^2 +
    b_u^2 + b_i^2))``, where ``p``, ``q`` are the first ``rating_factors`` columns of the GMF
    embeddings the network uses too, ``mu`` the training ratings' mean (fixed) and ``b`` the
    biases (a last column of each embedding row). Both terms are trained in the same kernel
    calls (``ncf_train_epoch`` with ``ratings``), on every backend.

    Parameters
    ----------
    n_factors : GMF embedding width (the rating term's factors are its first
        ``rating_factors`` columns; the others serve the network alone).
    rating_weight : weight of the rating term (>= 0; 0 trains NeuMF's loss alone).
    rating_reg : L2 penalty of the rating term on the factors and biases of each rated pair
        (as MF's ``reg``).
    rating_factors : GMF columns shared with the rating term (1..n_factors); None: MF's
        default rank (64), or all of them when ``n_factors`` is smaller.
        ``rating_factors=n_factors`` shares every GMF column.
    nonnegative : project the rating term's factors (the first ``rating_factors`` GMF
        columns) onto >= 0 after every optimiser step, as NMF's factors (they then start at
        ``|N(0, init_std)|``); the network's own GMF columns stay signed.
    mf_init : start the rating part at a fitted MF's solution: ``fit`` first fits
        ``MF(n_factors=rating_factors)`` (MF's other defaults, well under a second on
        ml-latest-small) on the same training ratings and copies its factors into ``p``,
        ``q`` and its biases into the bias columns; the joint loss then trains from there.
        Unused with ``rating_weight=0``, ``nonnegative=True`` or
        ``fit(X, gmf=...)``/``fit(X, mf=...)``.
    Others as :class:`NeuMF`, whose schedule (8 negatives, early stopping on HR@10 then a
    refit) is the default here too (``loss`` must be "bce": the ratings enter through the
    rating term).

    The defaults (``n_factors=192``, ``rating_factors=64``, ``rating_weight=3``,
    ``rating_reg=0.1``, ``mf_init=True``) were chosen on a validation split of
    ml-latest-small's training part (each user's latest training rating held out; seeds
    0-9): validation RMSE 0.885 against MF's 0.887 and HR@10 0.744 against NeuMF's 0.734;
    re-checked on three such cuts (each user's latest, 2nd and 3rd latest training rating,
    1,830 pairs, seeds 0-9): HR@10 0.747 against 0.743, RMSE 0.891 against 0.895.
    Sharing every GMF column with the rating term (the rating term over all of ``p``, ``q``)
    ranked 0.01-0.03 below NeuMF at every weight tried: the network then has no GMF column
    of its own. On the test pairs (each user's latest rating, mean of seeds 0-2): RMSE 0.951
    against MF's 0.957, NDCG@10 0.500 against NeuMF's 0.495, HR@10 0.739 against 0.741 (1.3
    of 610 users fewer, inside the 610 pairs' noise: 95% interval of the difference -0.016 ..
    +0.012; over seeds 0-9: 0.953 vs 0.956, 0.499 vs 0.497, 0.735 vs 0.739).
    Commands and tables: ``benchmarks/joint_report.py``,
    ``benchmarks/results/joint_report.md``.

    ``fit(X, ...)`` needs the ratings as the values of ``X`` (a sparse matrix, a
    ``(user_ids, item_ids, ratings)`` triple, a DataFrame with ratings or an Interactions);
    every rated pair is also an implicit positive. Fitted attributes as :class:`NeuMF`, with
    embedding rows ``[GMF part, MLP part, bias]``, ``rating_mean_`` (``mu``) and
    ``n_rating_`` (the rating term's GMF columns). :meth:`predict_rating` predicts ratings;
    :meth:`predict`, :meth:`recommend` and :meth:`score` rank as NeuMF's.
    """

    _JOINT = True
    _SCALARS = (*NeuMF._SCALARS, "rating_mean_", "n_rating_")

    def __init__(self, n_factors: int = 192, layers=(64, 32, 16, 8), rating_weight: float = 3.0,
                 rating_reg: float = 0.1, rating_factors: int | None = None,
                 nonnegative: bool = False, mf_init: bool = True, n_epochs: int = 20,
                 batch_size: int = 256, learning_rate: float = 0.001, n_negatives: int = 8,
                 loss: str = "bce", optimizer: str = "adam", beta1: float = 0.9,
                 beta2: float = 0.999, eps: float = 1e-8, init_std: float = 0.01,
                 pretrain_alpha: float = 0.5,
                 dtype="float32", backend: str = "auto", n_threads: int | None = None,
                 random_state: int | None = None, early_stopping: bool = True,
                 validation_fraction: float = 1.0, n_iter_no_change: int = 3,
                 tol: float = 1e-4, refit: bool = True, eval_k: int = 10,
                 n_eval_negatives: int = 99, callbacks=None, duplicates: str = "raise",
                 verbose: bool = False):
        store_params(self, locals())

    def _n_rating(self) -> int:
        """The GMF columns of the rating term: ``rating_factors``, or MF's default rank
        (at most ``n_factors``)."""
        from fastrec.models.mf import MF

        n_gmf, _ = self._architecture()
        if self.rating_factors is None:
            return min(n_gmf, int(MF().n_factors))
        check_positive("rating_factors", self.rating_factors, integer=True)
        if self.rating_factors > n_gmf:
            raise ValueError(f"rating_factors must be at most n_factors={n_gmf}, got "
                             f"{self.rating_factors}")
        return int(self.rating_factors)

    def _init_rating_part(self, data: Interactions, n_threads) -> None:
        """Start the rating part at a fitted MF's solution: ``p``, ``q`` (the rating columns)
        from an ``MF(n_factors=n_rating_)`` (MF's other defaults, this model's seed) fitted on
        the same training ratings, the bias columns from its biases (relative to its mean)."""
        from fastrec.models.mf import MF

        n_rating = int(self.n_rating_)
        mf = MF(n_factors=n_rating, dtype=self.dtype, backend=self.backend, n_threads=n_threads,
                random_state=self.random_state).fit(data)
        shift = mf.global_mean_ - self.rating_mean_  # the same mean; kept exact in the biases
        for emb, factors, bias, extra in (
                (self.user_embeddings_, mf.user_factors_, mf.user_bias_, shift),
                (self.item_embeddings_, mf.item_factors_, mf.item_bias_, 0.0)):
            emb[:, :n_rating] = to_host(factors)
            emb[:, -1] = to_host(bias) + extra

    def predict_rating(self, users, items) -> np.ndarray:
        """Predicted ratings ``mu + b_u + b_i + p_u . q_i`` of the pairs ``(users[j],
        items[j])`` (original ids), float[n] (numpy, also for a model on the GPU)."""
        self._check_fitted()
        users, items = check_pairs(users, items)
        ids = self._ids()
        xp = array_module(self.user_embeddings_)
        pred = self._rating_indices(xp.asarray(ids.user_index(users)),
                                    xp.asarray(ids.item_index(items)))
        return to_host(pred.astype(self.dense_.dtype))

    def _rating_indices(self, users, items):
        """``mu + b_u + b_i + p_u . q_i`` of the pairs of internal indices, in the embeddings'
        dtype and on their device."""
        p, q, g = self.user_embeddings_[users], self.item_embeddings_[items], int(self.n_rating_)
        return self.rating_mean_ + p[:, -1] + q[:, -1] + (p[:, :g] * q[:, :g]).sum(axis=1)


def _check_has_ratings(X) -> None:
    """The rating term needs explicit ratings: a (users, items) pair has none."""
    if isinstance(X, (tuple, list)) and len(X) == 2:
        raise ValueError("JointNeuMF fits explicit ratings beside the implicit feedback: pass "
                         "(user_ids, item_ids, ratings), a ratings matrix or a DataFrame with "
                         "ratings, not (user_ids, item_ids)")


def _with_bias_column(embeddings: np.ndarray, n_nonnegative: int) -> np.ndarray:
    """The embedding rows with a zero rating-bias column appended, their first
    ``n_nonnegative`` columns made non-negative (a non-negative model's rating columns)."""
    embeddings[:, :n_nonnegative] = np.abs(embeddings[:, :n_nonnegative])
    return np.hstack([embeddings, np.zeros((embeddings.shape[0], 1), embeddings.dtype)])
