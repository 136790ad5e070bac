"""What every fastrec estimator shares: scikit-learn parameter handling, data preparation,
backend resolution, and for factor models prediction, top-N, similar items, fold-in and files.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import time

import numpy as np
import scipy.sparse as sp

from fastrec import io
from fastrec._algorithms.fit_loop import History, fit_epochs
from fastrec._algorithms.topn import top_n, top_n_scores
from fastrec._array import (
    Placement,
    array_module,
    host_data,
    is_device_array,
    sparse_module,
    to_device,
    to_host,
)
from fastrec.backends import Backend, auto_choice, default_n_threads, get_backend
from fastrec.data.interactions import Interactions
from fastrec.exceptions import DivergenceError, ModelFileError, NotFittedError
from fastrec.model_selection import LeaveLastOut, RatingSplit

log = logging.getLogger("fastrec")

_RECOMMEND_CHUNK = 1024  # users scored at once: bounds memory at chunk * n_items floats


class Estimator:
    """scikit-learn conventions: ``__init__`` stores parameters, ``fit`` validates and returns
    ``self``, fitted attributes end in ``_``.

    Fitting is a transaction: the family's fit body runs on a scratch copy of the estimator
    and its fitted attributes replace this estimator's only when it returns (or raises
    :class:`DivergenceError`, whose documented promise is the last good epoch of the new fit).
    Any other error leaves the previous fitted model exactly as it was.

    Files: ``_ARRAYS`` (required fitted arrays) and ``_SCALARS`` (fitted numbers) are written by
    :meth:`save` with the training metadata; :meth:`load` checks every array against
    :meth:`_check_consistent` before returning.
    """

    _ARRAYS: tuple[str, ...] = ()
    _SCALARS: tuple[str, ...] = ()
    _METADATA = ("backend_", "fit_time_", "n_epochs_")
    _CURVES = ("loss_curve_", "validation_curve_")

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for {type(self).__name__}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = inspect.signature(type(self).__init__).parameters
        changed = [f"{k}={v!r}" for k, v in self.get_params().items()
                   if defaults[k].default is not v and defaults[k].default != v]
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self):
        """scikit-learn's estimator tags (scikit-learn >= 1.6 asks every estimator for them;
        scikit-learn stays optional, so it is imported only when scikit-learn asks)."""
        from sklearn.utils import InputTags, Tags, TargetTags

        return Tags(estimator_type=None, target_tags=TargetTags(required=False),
                    input_tags=InputTags(two_d_array=False, sparse=True))

    # -- fitting as a transaction ----------------------------------------------------------
    def _fitted_names(self) -> list[str]:
        return [name for name in vars(self) if name.endswith("_") and not name.startswith("_")]

    def _transaction(self, body, *args, **kwargs):
        """Run ``body(scratch, *args, **kwargs)`` on a copy of this estimator without fitted
        state and adopt the copy's fitted attributes when it returns (or diverges)."""
        scratch = copy.copy(self)
        for name in scratch._fitted_names():
            delattr(scratch, name)
        scratch.__dict__.pop("_train_seconds", None)
        start = time.perf_counter()
        try:
            result = body(scratch, *args, **kwargs)
        except DivergenceError:
            scratch._finish_timing(start)
            self._adopt(scratch)
            raise
        scratch._finish_timing(start)
        self._adopt(scratch)
        return result

    def _finish_timing(self, start: float) -> None:
        total = time.perf_counter() - start
        train = getattr(self, "_train_seconds", 0.0)
        self.fit_time_ = total
        self.timings_ = {"prepare": total - train, "train": train}

    def _adopt(self, scratch: Estimator) -> None:
        for name in self._fitted_names():
            delattr(self, name)
        for name in scratch._fitted_names():
            setattr(self, name, getattr(scratch, name))

    def _holdout(self, X, validation_data):
        """``(X, validation_data)`` to fit on: unchanged unless ``early_stopping`` has no
        ``validation_data``. Then, as scikit-learn's ``MLPClassifier``, a
        ``validation_fraction`` of ``X`` is held out, seeded by ``random_state``, the way the
        family is evaluated (:meth:`_split_off`), and the model trains on the rest."""
        if not self.early_stopping or validation_data is not None:
            return X, validation_data
        fraction = self.validation_fraction
        whole = self._HOLDOUT == "latest"  # every user's latest is still a fraction of X
        number = isinstance(fraction, (float, int, np.floating)) and not isinstance(fraction, bool)
        if not number or not (0.0 < fraction < 1.0 or (whole and fraction == 1.0)):
            raise ValueError(f"validation_fraction must be in (0, 1{']' if whole else ')'}, "
                             f"got {fraction!r}")
        X, self._held_out = self._split_off(X, float(fraction))
        return X, self._held_out

    # How _split_off holds validation data out: "ratings" (a random fraction of the ratings,
    # Surprise's protocol), "latest" (the latest interaction of a random fraction of the users,
    # NCF's) or "sessions" (the latest fraction of the sessions, GRU4Rec's).
    _HOLDOUT = "ratings"

    def _split_off(self, X, fraction: float):
        """``(training part, validation part)`` of the fit input ``X``."""
        raise NotImplementedError

    def _train(self, trainer, n_epochs: int, backend_name: str, finish=None) -> History:
        """Run the shared fit loop with this estimator's loop parameters (``early_stopping``,
        ``n_iter_no_change``, ``tol``, ``callbacks``, ``verbose``); whatever happens, record
        what it measured and then call ``finish()`` (the family's fitted attributes from the
        trained arrays)."""
        history = History()
        try:
            fit_epochs(trainer, n_epochs, early_stopping=self.early_stopping,
                       n_iter_no_change=self.n_iter_no_change, tol=self.tol,
                       callbacks=self.callbacks, verbose=self.verbose, history=history)
        finally:
            self._record(history, backend_name)
            if finish is not None:
                finish()
            self._absorb_held_out()
        return history

    def _absorb_held_out(self) -> None:
        """After a fit on an internal split: what the held-out part changes in the fitted
        model besides the weights (nothing by default)."""

    def _record(self, history: History, backend_name: str) -> None:
        """Copy what the shared fit loop measured into the fitted attributes."""
        self.loss_curve_ = list(history.loss_curve)
        self.validation_curve_ = list(history.validation_curve)
        self.n_epochs_ = history.n_epochs
        # the epoch (from 1) whose weights early stopping kept, None without early stopping
        self.best_epoch_ = None if history.best_epoch is None else history.best_epoch + 1
        self.backend_ = backend_name
        self._train_seconds = getattr(self, "_train_seconds", 0.0) + history.train_seconds

    def _check_fitted(self) -> None:
        if "backend_" not in vars(self):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit first")

    def _fitted_array_names(self) -> list[str]:
        return [name for name in self._fitted_names()
                if isinstance(getattr(self, name), np.ndarray)
                or is_device_array(getattr(self, name))]

    @property
    def device_(self) -> str:
        """``"cuda"`` while fitted arrays live on the GPU (after a fit with ``backend="cuda"``
        or ``to("cuda")``), else ``"cpu"``."""
        names = self._fitted_array_names()
        return "cuda" if any(is_device_array(getattr(self, n)) for n in names) else "cpu"

    # Fitted arrays read on the host whatever the device (id maps looked up with numpy, string
    # ids CuPy cannot hold); ``to("cuda")`` leaves them there.
    _HOST_ARRAYS = ("user_ids_", "item_ids_")

    def to(self, device: str):
        """Move the fitted arrays to ``"cpu"`` (numpy) or ``"cuda"`` (CuPy), in place; returns
        self. Moving to CUDA needs the ``cuda`` backend to be available; the id maps stay on
        the host."""
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if device == "cuda":
            get_backend("cuda")  # raises with the reason when there is no usable GPU
        move = to_device if device == "cuda" else to_host
        for name in self._fitted_array_names():
            if device == "cpu" or name not in self._HOST_ARRAYS:
                setattr(self, name, move(getattr(self, name)))
        return self

    def to_numpy(self):
        """A copy of the model whose fitted arrays are numpy arrays; this model is unchanged."""
        return copy.copy(self).to("cpu")

    def _check_on_host(self, what: str) -> None:
        if self.device_ != "cpu":
            raise RuntimeError(f"{what} runs on the CPU and this {type(self).__name__}'s arrays "
                               "are on the GPU: use model.to('cpu') or model.to_numpy() first")

    def _resolve_backend(self, require: tuple[str, ...]) -> Backend:
        backend = get_backend(self.backend, require)
        if self.backend == "auto":
            _, passed_over = auto_choice(require)
            for name, why in passed_over.items():
                log.info("backend %s not used: %s", name, why)
        return backend

    def _placement(self, backend: Backend) -> Placement:
        """Where this call's arrays live, from the backend: the one device decision of a fit
        (the same policy for every family; see :class:`fastrec._array.Placement`)."""
        return Placement(backend.on_device)

    def _n_threads(self) -> int:
        if self.n_threads is None:
            return default_n_threads()
        if int(self.n_threads) < 1:
            raise ValueError(f"n_threads must be >= 1, got {self.n_threads}")
        return int(self.n_threads)

    # -- files -----------------------------------------------------------------------------
    def save(self, path):
        """Write the fitted model as an npz archive (no pickle; host arrays, also for a model
        on the GPU). ``path`` gets the ``.npz`` suffix if it has none; :meth:`load` accepts
        the path with or without it. Returns the path written."""
        self._check_fitted()
        arrays = {name: np.asarray(to_host(getattr(self, name))) for name in self._ARRAYS}
        for name in self._SCALARS:
            arrays[name] = np.asarray(getattr(self, name))
        for name in self._CURVES:
            arrays[name] = np.asarray(getattr(self, name, []), np.float64)
        seen = getattr(self, "seen_", None)
        if seen is not None:
            seen = to_host(seen)
            arrays["seen_indptr"], arrays["seen_indices"] = seen.indptr, seen.indices
        fitted = {name: getattr(self, name, None) for name in self._METADATA}
        arrays["__fitted__"] = np.array(json.dumps(fitted))
        return io.save_arrays(path, type(self).__name__, _json_params(self.get_params()), arrays)

    @classmethod
    def load(cls, path):
        """Read a model written by :meth:`save` (a CPU model). Refuses files that are not
        fastrec models of this class, and files whose arrays do not fit together (shapes,
        dtypes, index ranges), with :class:`ModelFileError`."""
        _, params, arrays = io.load_arrays(path, expected_class=cls.__name__)
        model = cls(**{k: v for k, v in params.items() if k in cls._param_names()})
        missing = [n for n in (*cls._ARRAYS, *cls._SCALARS) if n not in arrays]
        if missing:
            raise ModelFileError(f"{path} lacks arrays {missing}")
        for name in cls._ARRAYS:
            setattr(model, name, arrays[name])
        try:
            for name in cls._SCALARS:
                value = arrays[name]
                if value.ndim != 0 or value.dtype.kind not in "biuf":
                    raise ValueError(f"{name} is not a number")
                setattr(model, name, value.item())
            fitted = json.loads(str(arrays.get("__fitted__", "{}")))
            for name in cls._METADATA:
                setattr(model, name, fitted.get(name))
            if model.backend_ is None:
                model.backend_ = "unknown"
            for name in cls._CURVES:
                setattr(model, name, [float(v) for v in arrays.get(name, np.zeros(0))])
            model._set_sizes()
            if "seen_indptr" in arrays:
                model.seen_ = _checked_pattern(arrays["seen_indptr"], arrays["seen_indices"],
                                               (model.n_users_, model.n_items_))
            elif hasattr(model, "n_users_"):
                model.seen_ = None
            model._check_consistent()
        except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
            raise ModelFileError(f"{path} is inconsistent: {exc}") from exc
        return model

    def _set_sizes(self) -> None:
        """Derive the size attributes (``n_users_``, ``n_items_``) from loaded arrays."""

    def _check_consistent(self) -> None:
        """Raise ValueError when the fitted arrays do not fit together."""


def store_params(estimator, arguments: dict) -> None:
    """Store an ``__init__``'s arguments (its ``locals()``) as attributes of the same names,
    unchanged, as scikit-learn's estimator convention asks (``get_params`` reads them back)."""
    for name, value in arguments.items():
        if name not in ("self", "__class__"):
            setattr(estimator, name, value)


def check_pairs(users, items) -> tuple[np.ndarray, np.ndarray]:
    """``(users, items)`` as host vectors of the same length: the pairs to score."""
    users, items = np.atleast_1d(to_host(users)), np.atleast_1d(to_host(items))
    if users.shape != items.shape:
        raise ValueError(f"users and items must have the same length, got {users.shape} and "
                         f"{items.shape}")
    return users, items


def check_dtype(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def check_flag(name: str, value) -> None:
    """``value`` must be True or False (a numpy bool too)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def check_positive(name: str, value, integer: bool = False, allow_zero: bool = False) -> None:
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    ok = is_int or (not integer and isinstance(value, (float, np.floating)))
    # Python ints of any size are finite; np.isfinite cannot take those beyond 64 bits
    if not ok or (not is_int and not np.isfinite(value)) or value < 0 or (
            value == 0 and not allow_zero):
        kind = "integer" if integer else "number"
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite {kind} {bound}, got {value!r}")


class UserItemModel(Estimator):
    """Models of users and items: id maps, validation data mapped with them, and the shared
    top-N (``recommend``) over the family's ``_score_users``.

    Fitted attributes: ``user_ids_``/``item_ids_`` (original ids of each index), ``n_users_``,
    ``n_items_``, ``seen_`` (CSR pattern of the training pairs, or None).
    """

    def _set_sizes(self) -> None:
        for name in ("user_ids_", "item_ids_"):
            ids = getattr(self, name)
            if ids.ndim != 1 or ids.dtype.kind not in "iufUS":
                raise ValueError(f"{name} is not a vector of ids")
            if ids.size > 1 and not (ids[1:] > ids[:-1]).all():
                raise ValueError(f"{name} is not sorted and unique")
        self.n_users_, self.n_items_ = self.user_ids_.shape[0], self.item_ids_.shape[0]

    # -- data ------------------------------------------------------------------------------
    def _split_off(self, X, fraction: float) -> tuple[Interactions, Interactions]:
        """Both parts keep the id maps of all of ``X`` (an id seen only in validation is a
        known, untrained one); device input is split where it is."""
        data = Interactions.from_any(X, dtype=check_dtype(self.dtype), keep_device=True,
                                     duplicates=getattr(self, "duplicates", "raise"))
        if self._HOLDOUT == "ratings":
            fit_rows, held = next(RatingSplit(1, fraction, self.random_state).split(
                range(data.nnz)))
        else:
            fit_rows, held = next(LeaveLastOut().split(data))
            if fraction < 1.0:
                chosen = np.random.default_rng(self.random_state).random(held.shape[0]) < fraction
                fit_rows, held = np.sort(np.r_[fit_rows, held[~chosen]]), held[chosen]
        if held.size == 0 or fit_rows.size == 0:
            raise ValueError(f"validation_fraction={fraction} of {data.nnz} interactions leaves "
                             "an empty training or validation part: pass validation_data")
        return data.subset(fit_rows), data.subset(held)

    # False where ``seen_`` is part of the model (SVD++'s N(u)) rather than a filter.
    _SEEN_FILTERS_ONLY = True

    def _absorb_held_out(self) -> None:
        """``seen_`` (the items ``recommend`` skips) gets the held-out pairs too: the users
        interacted with them, even if training did not see them."""
        held = self.__dict__.pop("_held_out", None)
        if held is None or getattr(self, "seen_", None) is None or not self._SEEN_FILTERS_ONLY:
            return
        on_device = is_device_array(self.seen_.indices)
        extra = sp.csr_matrix((np.ones(held.nnz, np.int8), (held.users, held.items)),
                              shape=held.shape)
        both = (to_host(self.seen_).astype(np.int8) + extra).tocsr()
        both.sort_indices()
        move = to_device if on_device else (lambda a: a)
        self.seen_ = pattern_matrix(move(both.indptr), move(both.indices), both.shape)

    def _training_data(self, X, dtype) -> Interactions:
        """Interactions from anything ``Interactions.from_any`` takes, already placed
        (:meth:`_placement`): validated and mapped where its arrays are."""
        return Interactions.from_any(X, dtype=dtype, keep_device=True,
                                     duplicates=getattr(self, "duplicates", "raise"))

    def _mapped(self, X, dtype, what: str = "validation") -> Interactions:
        """Data mapped with the fitted id maps; pairs with unseen ids are dropped (logged).
        Device input (CuPy, cupyx.scipy.sparse) is copied to the host first."""
        X = host_data(X)
        if sp.issparse(X):
            data = Interactions.from_sparse(X, dtype)
            if data.shape != (self.n_users_, self.n_items_):
                raise ValueError(f"{what} matrix has shape {data.shape}, the model "
                                 f"{(self.n_users_, self.n_items_)}")
            return data
        if isinstance(X, Interactions) and X.shape == (self.n_users_, self.n_items_) and (
                X.user_ids is self.user_ids_ and X.item_ids is self.item_ids_):
            return X
        data = Interactions.from_any(X, dtype=dtype,
                                     duplicates=getattr(self, "duplicates", "raise"))
        users = self._user_index(data.user_ids[data.users], missing="drop")
        items = self._item_index(data.item_ids[data.items], missing="drop")
        keep = (users >= 0) & (items >= 0)
        if not keep.all():
            log.warning("%s: %d of %d pairs have users or items unseen in training; dropped",
                        what, int((~keep).sum()), keep.shape[0])
        index_dtype = np.int32 if max(self.n_users_, self.n_items_) < 2**31 - 1 else np.int64
        return Interactions(users[keep].astype(index_dtype), items[keep].astype(index_dtype),
                            data.values[keep], self.user_ids_, self.item_ids_)

    def _id_space(self) -> Interactions:
        empty = np.empty(0, np.int64)
        return Interactions(empty, empty, np.empty(0), self.user_ids_, self.item_ids_)

    def _user_index(self, users, missing="raise") -> np.ndarray:
        return self._id_space().user_index(users, "raise" if missing == "raise" else "-1")

    def _item_index(self, items, missing="raise") -> np.ndarray:
        return self._id_space().item_index(items, "raise" if missing == "raise" else "-1")

    def _score_users(self, u: np.ndarray):
        """Scores of every item for user indices ``u``: T[len(u), n_items] (numpy or CuPy)."""
        raise NotImplementedError

    def _recommend_chunk(self) -> int:
        """Users scored at once: bounds memory at chunk * n_items scores."""
        return _RECOMMEND_CHUNK

    @property
    def padding_id_(self):
        """The id that pads top-N rows with fewer eligible items than asked for (their score is
        -inf): -1, NaN or "" by id type, or for integer ids that include -1, one below the
        smallest id."""
        return padding_id(self.item_ids_)

    def recommend(self, users, n: int = 10, filter_seen: bool = True, items=None):
        """Top-``n`` items for each user (original ids), best first.

        Returns ``(item_ids, scores)``, each [len(users), min(n, candidates)] where candidates
        is the number of items (or of ``items``, which restricts them). Rows with fewer
        eligible items (after filtering the seen ones) end with padding: score -inf and id
        :attr:`padding_id_`, which is never a real item id. Memory is bounded by the scoring
        chunk, not by ``n``. Thread-safe (reads fitted state only); for a model on the GPU the
        scoring runs there and the selection on the host.
        """
        self._check_fitted()
        check_positive("n", n, integer=True)
        u = self._user_index(np.atleast_1d(to_host(users)))
        candidates = None if items is None else self._item_index(np.atleast_1d(to_host(items)))
        n_out = min(int(n), self.n_items_ if candidates is None else candidates.shape[0])
        seen = to_host(getattr(self, "seen_", None)) if filter_seen else None
        if candidates is None:
            top, scores = self._top_items(u, n_out, seen)
        else:
            top, scores = self._top_candidates(u, n_out, seen, candidates)
        return item_ids_padded(self.item_ids_, top), scores

    def _score_dtype(self) -> np.dtype:
        raise NotImplementedError

    def _top_items(self, u: np.ndarray, n: int, seen):
        """Best ``n`` item indices and scores per user index (padding: index -1, score -inf),
        from the family's scores, a chunk of users at a time, by the compiled top-n."""
        tops, scores = [], []
        for start in range(0, u.shape[0], self._recommend_chunk()):
            rows_u = u[start:start + self._recommend_chunk()]
            best, best_scores = top_n_scores(to_host(self._score_users(rows_u)), n, seen,
                                             rows_u, self._n_threads())
            tops.append(to_host(best))
            scores.append(to_host(best_scores))
        return _stack(tops, (0, n), np.int64), _stack(scores, (0, n), self._score_dtype())

    def _top_candidates(self, u: np.ndarray, n: int, seen, candidates: np.ndarray):
        """:meth:`_top_items` among the item indices ``candidates`` only."""
        tops, scores = [], []
        for start in range(0, u.shape[0], self._recommend_chunk()):
            rows_u = u[start:start + self._recommend_chunk()]
            s = to_host(self._score_users(rows_u))
            if seen is not None:
                rows = seen[rows_u]
                s[np.repeat(np.arange(rows_u.shape[0]), np.diff(rows.indptr)),
                  rows.indices] = -np.inf
            best, best_scores = top_n_scores(s[:, candidates], n, None, None, self._n_threads())
            best = np.where(best >= 0, candidates[np.maximum(best, 0)], -1)
            tops.append(best)
            scores.append(best_scores)
        return _stack(tops, (0, n), np.int64), _stack(scores, (0, n), self._score_dtype())


class FactorModel(UserItemModel):
    """Shared fitted state of models that score ``mu + b_u + b_i + p_u . q_i``.

    Fitted attributes: ``user_factors_`` T[n_users, k], ``item_factors_`` T[n_items, k],
    ``user_bias_`` T[n_users], ``item_bias_`` T[n_items], ``global_mean_`` float,
    ``user_ids_``/``item_ids_`` (original ids of each index), ``n_users_``, ``n_items_``.
    """

    _ARRAYS = ("user_factors_", "item_factors_", "user_bias_", "item_bias_", "user_ids_",
               "item_ids_")
    _SCALARS = ("global_mean_",)

    def _check_consistent(self) -> None:
        p, q = self.user_factors_, self.item_factors_
        if p.ndim != 2 or q.ndim != 2 or p.shape[1] != q.shape[1]:
            raise ValueError(f"factor tables of shapes {p.shape} and {q.shape} do not match")
        if p.shape[0] != self.n_users_ or q.shape[0] != self.n_items_:
            raise ValueError("factor rows do not match the id maps")
        if self.user_bias_.shape != (self.n_users_,) or self.item_bias_.shape != (
                self.n_items_,):
            raise ValueError("bias lengths do not match the id maps")
        for name in ("user_factors_", "item_factors_", "user_bias_", "item_bias_"):
            value = getattr(self, name)
            if value.dtype != p.dtype or p.dtype not in (np.float32, np.float64):
                raise ValueError(f"{name} has dtype {value.dtype}, the model {p.dtype}")
            if not np.isfinite(value).all():
                raise ValueError(f"{name} holds NaN or inf")
        k = getattr(self, "n_factors", None)
        if isinstance(k, (int, np.integer)) and p.shape[1] != k:
            raise ValueError(f"factors are {p.shape[1]} wide, n_factors={k}")

    def _score_dtype(self) -> np.dtype:
        return self.user_factors_.dtype

    def _top_items(self, u: np.ndarray, n: int, seen):
        # mu + b_u is the same for every item of a row: rank p_u . q_i + b_i, then add it.
        best, best_scores = top_n(self._user_vectors(u), self.item_factors_, self.item_bias_,
                                  n, seen, u, self._n_threads())
        best, best_scores = to_host(best), to_host(best_scores)
        shift = (self.global_mean_ + to_host(self.user_bias_)[u]).astype(best_scores.dtype)
        return best, best_scores + shift[:, None]

    # -- prediction ------------------------------------------------------------------------
    def predict(self, users, items, unknown: str = "raise") -> np.ndarray:
        """Predicted ratings, float[n], for the pairs ``(users[j], items[j])`` (original ids).

        ``unknown="raise"`` refuses ids unseen in training; ``"baseline"`` scores them with
        the global mean plus whatever bias is known (Surprise's fallback).
        """
        self._check_fitted()
        if unknown not in ("raise", "baseline"):
            raise ValueError("unknown must be 'raise' or 'baseline'")
        users, items = check_pairs(users, items)
        u = self._user_index(users, missing=unknown)
        i = self._item_index(items, missing=unknown)
        return to_host(self._predict_indices(u, i))

    def _predict_indices(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        """Predictions for dense indices (-1 = unknown), on the device of the fitted arrays."""
        xp = array_module(self.user_factors_)
        u, i = xp.asarray(u), xp.asarray(i)
        known_u, known_i = u >= 0, i >= 0
        uu, ii = xp.where(known_u, u, 0), xp.where(known_i, i, 0)
        dot = xp.sum(self.user_factors_[uu] * self.item_factors_[ii], axis=1)
        out = (self.global_mean_ + xp.where(known_u, self.user_bias_[uu], 0)
               + xp.where(known_i, self.item_bias_[ii], 0) + xp.where(known_u & known_i, dot, 0))
        return out.astype(self.user_factors_.dtype, copy=False)

    def score(self, X, y=None) -> float:
        """Negative RMSE on ``X`` (higher is better, as scikit-learn's ``score``)."""
        self._check_fitted()
        data = self._mapped(X, self.user_factors_.dtype, "score")
        pred = to_host(self._predict_indices(data.users, data.items))
        return -float(np.sqrt(np.mean((pred.astype(np.float64) - data.values) ** 2)))

    def _user_vectors(self, u: np.ndarray):
        """The vectors user indices ``u`` score items with (``p_u``), on the factors' device."""
        return self.user_factors_[array_module(self.user_factors_).asarray(u)]

    def _score_users(self, u: np.ndarray) -> np.ndarray:
        return self.user_factors_[u] @ self.item_factors_.T + self.item_bias_[None, :] + (
            self.global_mean_ + self.user_bias_[u])[:, None]

    def similar_items(self, items, n: int = 10):
        """The ``n`` most similar items to each item by cosine similarity of item factors,
        excluding the item itself. Returns ``(item_ids, similarities)``, each
        [len(items), min(n, n_items - 1)]; by the compiled top-n, on the factors' device."""
        self._check_fitted()
        check_positive("n", n, integer=True)
        i = self._item_index(np.atleast_1d(to_host(items)))
        if self.n_items_ < 2:
            raise ValueError("similar_items needs a model with at least two items")
        xp = array_module(self.item_factors_)
        norms = xp.linalg.norm(self.item_factors_, axis=1)
        normed = self.item_factors_ / xp.maximum(norms, np.finfo(norms.dtype).tiny)[:, None]
        itself = sp.csr_matrix((np.ones(i.shape[0], np.int8), i, np.arange(i.shape[0] + 1)),
                               shape=(i.shape[0], self.n_items_))
        best, sims = top_n(normed[xp.asarray(i)], normed, None, min(int(n), self.n_items_ - 1),
                           itself, None, self._n_threads())
        return self.item_ids_[to_host(best)], to_host(sims)

    # -- fold-in ---------------------------------------------------------------------------
    def fold_in(self, items, ratings) -> tuple[float, np.ndarray]:
        """Factors of a new user from their ratings, without refitting.

        Solves the model's regularised least squares for ``(b_u, p_u)`` with the item side
        fixed (regularisation scaled by the number of ratings, as SGD's per-rating penalty).
        Returns ``(user_bias, user_factors: float[k])``.
        """
        self._check_on_host("fold_in")
        i, r = self._fold_in_ratings(items, ratings)
        q = self.item_factors_[i].astype(np.float64)
        target = r - self.global_mean_ - self.item_bias_[i]
        reg_f, reg_b = self._fold_in_regularisation()
        biased = bool(getattr(self, "biased", True))
        design = np.hstack([np.ones((q.shape[0], 1)), q]) if biased else q
        penalty = np.full(design.shape[1], reg_f * max(len(r), 1))
        if biased:
            penalty[0] = reg_b * max(len(r), 1)
        solution = np.linalg.solve(design.T @ design + np.diag(penalty), design.T @ target)
        if biased:
            return float(solution[0]), solution[1:].astype(self.user_factors_.dtype)
        return 0.0, solution.astype(self.user_factors_.dtype)

    def _fold_in_ratings(self, items, ratings) -> tuple[np.ndarray, np.ndarray]:
        """Item indices and float64 ratings of a new user, checked."""
        self._check_fitted()
        i = self._item_index(np.atleast_1d(items))
        r = np.asarray(ratings, dtype=np.float64)
        if r.shape != i.shape:
            raise ValueError("items and ratings must have the same length")
        if not np.all(np.isfinite(r)):
            raise ValueError("ratings contain NaN or inf")
        return i, r

    def _fold_in_regularisation(self) -> tuple[float, float]:
        return float(self.reg), float(getattr(self, "reg_bias", self.reg))

    def recommend_from_ratings(self, items, ratings, n: int = 10, filter_seen: bool = True):
        """Top-``n`` for a user unseen in training, given their ratings (fold-in then rank).
        Returns ``(item_ids: [n], scores: [n])``."""
        self._check_fitted()
        self._check_on_host("recommend_from_ratings")
        bias, factors = self.fold_in(items, ratings)
        s = self.item_factors_ @ factors + self.item_bias_ + self.global_mean_ + bias
        if filter_seen:
            s[self._item_index(np.atleast_1d(items))] = -np.inf
        best = _top_n(s[None, :], min(n, self.n_items_))[0]
        return self.item_ids_[best], s[best]


def seen_matrix(data: Interactions) -> sp.csr_matrix:
    """Boolean-ish CSR of the observed pairs (for filtering already-seen items), where the
    interactions are: scipy (int8 ones) or, for device interactions, cupyx.scipy.sparse
    (float32 ones: cuSPARSE has no int8 type); only its indptr and indices are read."""
    if not is_device_array(data.users):
        return data.seen_csr()
    xp, xsp = array_module(data.users), sparse_module(data.users)
    ones = xp.ones(data.nnz, pattern_dtype(xp))
    m = xsp.csr_matrix((ones, (data.users, data.items)), shape=data.shape)
    m.sum_duplicates()
    m.data[:] = 1
    return m


def pattern_matrix(indptr, indices, shape) -> sp.csr_matrix:
    """:func:`seen_matrix` of a CSR structure whose rows are sorted and free of duplicates."""
    xp, xsp = array_module(indices), sparse_module(indices)
    ones = xp.ones(indices.shape[0], pattern_dtype(xp))
    return xsp.csr_matrix((ones, indices, indptr), shape=shape)


def pattern_dtype(xp):
    """Dtype of the ones of a pattern matrix in array module ``xp``: int8 on the host, float32
    on the device (cuSPARSE has no int8 type)."""
    return np.int8 if xp is np else np.float32


def _stack(parts: list, empty_shape, dtype) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(empty_shape, dtype)


def _top_n(scores: np.ndarray, n: int) -> np.ndarray:
    """Column indices of the n largest scores per row, best first (ties: lower index first)."""
    if n >= scores.shape[1]:
        return np.argsort(-scores, axis=1, kind="stable")[:, :n]
    part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def item_ids_padded(item_ids: np.ndarray, top: np.ndarray) -> np.ndarray:
    """The original ids of top-N item indices, where index -1 (padding) becomes
    :func:`padding_id` of ``item_ids``."""
    ids = item_ids[np.maximum(top, 0)]
    if (top < 0).any():
        pad = padding_id(item_ids)
        ids = ids.astype(np.result_type(ids.dtype, np.asarray(pad).dtype))
        ids[top < 0] = pad
    return ids


def padding_id(ids: np.ndarray):
    """An id that is not among ``ids``, of a type that fits them."""
    if ids.dtype.kind in "iu":
        if ids.size == 0 or ids.dtype.kind == "u" or -1 not in ids:
            return -1 if ids.dtype.kind == "i" or ids.size == 0 else np.iinfo(np.int64).min
        return int(ids.min()) - 1
    if ids.dtype.kind == "f":
        return np.nan
    if ids.dtype.kind in "US" and "" not in ids:
        return ""
    return None


def _json_params(params: dict) -> dict:
    """Parameters as JSON values: dtypes by name, sequences as lists; what JSON cannot hold
    (callables such as callbacks) is not saved and loads as the default."""
    out = {}
    for name, value in params.items():
        if isinstance(value, (type, np.dtype)):
            value = np.dtype(value).name
        elif isinstance(value, (tuple, list, np.ndarray)):
            value = [v.item() if isinstance(v, np.generic) else v for v in value]
        elif isinstance(value, np.generic):
            value = value.item()
        try:
            json.dumps(value)
        except TypeError:
            continue
        out[name] = value
    return out


def _checked_pattern(indptr: np.ndarray, indices: np.ndarray, shape) -> sp.csr_matrix:
    """The seen-items CSR of a model file, after checking it is a valid structure."""
    if indptr.ndim != 1 or indices.ndim != 1 or indptr.shape[0] != shape[0] + 1:
        raise ValueError("seen_ has the wrong number of rows")
    if indptr.dtype.kind not in "iu" or indices.dtype.kind not in "iu":
        raise ValueError("seen_ indices are not integers")
    if indptr[0] != 0 or indptr[-1] != indices.shape[0] or (np.diff(indptr) < 0).any():
        raise ValueError("seen_ row pointers are not monotone")
    if indices.size and (indices.min() < 0 or indices.max() >= shape[1]):
        raise ValueError("seen_ indices are out of range")
    return pattern_matrix(indptr, indices, shape)
