"""What every fastrec estimator shares: scikit-learn parameter handling, data preparation,
backend resolution, and for factor models prediction, top-N, similar items, fold-in and files.
"""

from __future__ import annotations

import copy
import inspect
import logging

import numpy as np
import scipy.sparse as sp

from fastrec import io
from fastrec._algorithms.topn import top_n, top_n_scores
from fastrec._array import (
    array_module,
    host_data,
    is_device_array,
    sparse_module,
    to_device,
    to_host,
)
from fastrec.backends import Backend, auto_choice, default_n_threads, get_backend
from fastrec.data.interactions import Interactions

log = logging.getLogger("fastrec")

_RECOMMEND_CHUNK = 1024  # users scored at once: bounds memory at chunk * n_items floats


class NotFittedError(RuntimeError):
    """The estimator is used before ``fit``."""


class Estimator:
    """scikit-learn conventions: ``__init__`` stores parameters, ``fit`` validates and returns
    ``self``, fitted attributes end in ``_``."""

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

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_users_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit first")

    def _fitted_array_names(self) -> list[str]:
        return [name for name, value in vars(self).items()
                if name.endswith("_") and not name.startswith("_")
                and (isinstance(value, np.ndarray) or is_device_array(value))]

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

    def _n_threads(self) -> int:
        if self.n_threads is None:
            return default_n_threads()
        if int(self.n_threads) < 1:
            raise ValueError(f"n_threads must be >= 1, got {self.n_threads}")
        return int(self.n_threads)


def check_dtype(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def check_positive(name: str, value, integer: bool = False, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, np.integer)) if integer else isinstance(
        value, (int, float, np.integer, np.floating))
    if not ok or isinstance(value, bool) or not np.isfinite(value) or value < 0 or (
            value == 0 and not allow_zero):
        kind = "integer" if integer else "number"
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite {kind} {bound}, got {value!r}")


class FactorModel(Estimator):
    """Shared fitted state of models that score ``mu + b_u + b_i + p_u . q_i``.

    Fitted attributes: ``user_factors_`` T[n_users, k], ``item_factors_`` T[n_items, k],
    ``user_bias_`` T[n_users], ``item_bias_`` T[n_items], ``global_mean_`` float,
    ``user_ids_``/``item_ids_`` (original ids of each index), ``n_users_``, ``n_items_``.
    """

    _ARRAYS = ("user_factors_", "item_factors_", "user_bias_", "item_bias_", "user_ids_",
               "item_ids_")

    # -- data ------------------------------------------------------------------------------
    def _training_data(self, X, dtype, keep_device: bool = False) -> Interactions:
        """Interactions from anything ``Interactions.from_any`` takes. CuPy arrays and
        cupyx.scipy.sparse matrices are copied to the host, or with ``keep_device`` (a fit on
        the GPU) stay on the device, mapped and validated there."""
        return Interactions.from_any(X, dtype=dtype, keep_device=keep_device)

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
        data = Interactions.from_any(X, dtype=dtype)
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

    # -- prediction ------------------------------------------------------------------------
    def predict(self, users, items, unknown: str = "raise") -> np.ndarray:
        """Predicted ratings, float[n], for the pairs ``(users[j], items[j])`` (original ids).

        ``unknown="raise"`` refuses ids unseen in training; ``"baseline"`` scores them with
        the global mean plus whatever bias is known (Surprise's fallback).
        """
        self._check_fitted()
        if unknown not in ("raise", "baseline"):
            raise ValueError("unknown must be 'raise' or 'baseline'")
        users, items = np.atleast_1d(users), np.atleast_1d(items)
        if users.shape != items.shape:
            raise ValueError(f"users and items must have the same length, got {users.shape} and "
                             f"{items.shape}")
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

    def score(self, X) -> float:
        """Negative RMSE on ``X`` (higher is better, as scikit-learn's ``score``)."""
        data = self._mapped(X, self.user_factors_.dtype, "score")
        pred = to_host(self._predict_indices(data.users, data.items))
        return -float(np.sqrt(np.mean((pred.astype(np.float64) - data.values) ** 2)))

    def recommend(self, users, n: int = 10, filter_seen: bool = True, items=None):
        """Top-``n`` items for each user, best first.

        Returns ``(item_ids, scores)``, each [len(users), min(n, n_candidates)]; when fewer
        items are eligible the rows are padded at the end with id -1 (or the id dtype's
        equivalent) and score -inf. ``items`` restricts the candidates. Scored and selected
        by the compiled top-n (:mod:`fastrec._algorithms.topn`): memory O(len(users) * n).
        Thread-safe (reads fitted state only); releases the GIL.
        """
        self._check_fitted()
        self._check_on_host("recommend")
        check_positive("n", n, integer=True)
        u = self._user_index(np.atleast_1d(users))
        seen = self.seen_ if filter_seen and getattr(self, "seen_", None) is not None else None
        if items is None:
            top, scores = top_n(self.user_factors_[u], self.item_factors_, self.item_bias_, n,
                                seen, exclude_rows=None if seen is None else u,
                                n_threads=self._n_threads())
            scores += (self.global_mean_ + self.user_bias_[u]).astype(scores.dtype)[:, None]
        else:
            top, scores = self._recommend_among(u, self._item_index(np.atleast_1d(items)), n,
                                                seen)
        ids = np.where(top >= 0, self.item_ids_[np.maximum(top, 0)], _missing_id(self.item_ids_))
        return ids, scores

    def _recommend_among(self, u, candidates, n, seen):
        """recommend restricted to the item indices ``candidates``: scores chunk by chunk
        (memory: 1024 * len(candidates)), seen pairs marked NaN (never ranked)."""
        n_out = min(n, candidates.shape[0])
        top = np.empty((u.shape[0], n_out), np.int64)
        scores = np.empty((u.shape[0], n_out), self.user_factors_.dtype)
        for start in range(0, u.shape[0], _RECOMMEND_CHUNK):
            chunk = u[start:start + _RECOMMEND_CHUNK]
            s = self._score_users(chunk)[:, candidates]
            if seen is not None:
                s[seen[chunk][:, candidates].toarray() != 0] = np.nan
            best, best_scores = top_n_scores(s, n_out, n_threads=self._n_threads())
            top[start:start + chunk.shape[0]] = np.where(best >= 0, candidates[best], -1)
            scores[start:start + chunk.shape[0]] = best_scores
        return top, scores

    def _score_users(self, u: np.ndarray) -> np.ndarray:
        return self.user_factors_[u] @ self.item_factors_.T + self.item_bias_[None, :] + (
            self.global_mean_ + self.user_bias_[u])[:, None]

    def similar_items(self, items, n: int = 10):
        """The ``n`` most similar items to each item by cosine similarity of item factors,
        excluding the item itself. Returns ``(item_ids, similarities)``, each [len(items), n]."""
        self._check_fitted()
        self._check_on_host("similar_items")
        check_positive("n", n, integer=True)
        i = self._item_index(np.atleast_1d(items))
        norms = np.linalg.norm(self.item_factors_, axis=1)
        normed = self.item_factors_ / np.maximum(norms, np.finfo(norms.dtype).tiny)[:, None]
        sims = normed[i] @ normed.T
        sims[np.arange(i.shape[0]), i] = -np.inf
        n_out = min(n, self.n_items_ - 1)
        best = _top_n(sims, n_out)
        return self.item_ids_[best], np.take_along_axis(sims, best, axis=1)

    # -- fold-in ---------------------------------------------------------------------------
    def fold_in(self, items, ratings) -> tuple[float, np.ndarray]:
        """Factors of a new user from their ratings, without refitting.

        Solves the model's regularised least squares for ``(b_u, p_u)`` with the item side
        fixed (regularisation scaled by the number of ratings, as SGD's per-rating penalty).
        Returns ``(user_bias, user_factors: float[k])``.
        """
        self._check_fitted()
        self._check_on_host("fold_in")
        i = self._item_index(np.atleast_1d(items))
        r = np.asarray(ratings, dtype=np.float64)
        if r.shape != i.shape:
            raise ValueError("items and ratings must have the same length")
        if not np.all(np.isfinite(r)):
            raise ValueError("ratings contain NaN or inf")
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

    # -- files -----------------------------------------------------------------------------
    def save(self, path):
        """Write the fitted model as an npz archive (no pickle). Returns the path written."""
        self._check_fitted()
        arrays = {name: to_host(getattr(self, name)) for name in self._ARRAYS}
        arrays["global_mean_"] = np.array(self.global_mean_)
        if getattr(self, "seen_", None) is not None:
            seen = to_host(self.seen_)
            arrays["seen_indptr"], arrays["seen_indices"] = seen.indptr, seen.indices
        for name in getattr(self, "_EXTRA_ARRAYS", ()):
            arrays[name] = np.asarray(to_host(getattr(self, name)))
        params = {k: (v if not isinstance(v, type) and not isinstance(v, np.dtype) else
                      np.dtype(v).name) for k, v in self.get_params().items()}
        return io.save_arrays(path, type(self).__name__, params, arrays)

    @classmethod
    def load(cls, path):
        """Read a model written by :meth:`save`; refuses files that are not fastrec models."""
        _, params, arrays = io.load_arrays(path, expected_class=cls.__name__)
        model = cls(**{k: v for k, v in params.items() if k in cls._param_names()})
        missing = [n for n in cls._ARRAYS if n not in arrays]
        if missing:
            raise io.ModelFileError(f"{path} lacks arrays {missing}")
        for name in (*cls._ARRAYS, *getattr(cls, "_EXTRA_ARRAYS", ())):
            setattr(model, name, arrays[name])
        model.global_mean_ = float(arrays["global_mean_"])
        model.n_users_, model.n_items_ = model.user_ids_.shape[0], model.item_ids_.shape[0]
        if model.user_factors_.shape[0] != model.n_users_ or (
                model.item_factors_.shape[0] != model.n_items_):
            raise io.ModelFileError(f"{path} is inconsistent: factor rows do not match id maps")
        if "seen_indptr" in arrays:
            indices = arrays["seen_indices"]
            model.seen_ = sp.csr_matrix((np.ones(indices.shape[0], np.int8), indices,
                                         arrays["seen_indptr"]),
                                        shape=(model.n_users_, model.n_items_))
        else:
            model.seen_ = None
        return model


def seen_matrix(data: Interactions) -> sp.csr_matrix:
    """Boolean-ish CSR of the observed pairs (for filtering already-seen items), where the
    interactions are: scipy (int8 ones) or, for device interactions, cupyx.scipy.sparse
    (float32 ones: cuSPARSE has no int8 type); only its indptr and indices are read."""
    xp, xsp = array_module(data.users), sparse_module(data.users)
    ones = xp.ones(data.nnz, _pattern_dtype(xp))
    m = xsp.csr_matrix((ones, (data.users, data.items)), shape=data.shape)
    m.sum_duplicates()
    m.data[:] = 1
    return m


def pattern_matrix(indptr, indices, shape) -> sp.csr_matrix:
    """:func:`seen_matrix` of a CSR structure whose rows are sorted and free of duplicates."""
    xp, xsp = array_module(indices), sparse_module(indices)
    ones = xp.ones(indices.shape[0], _pattern_dtype(xp))
    return xsp.csr_matrix((ones, indices, indptr), shape=shape)


def _pattern_dtype(xp):
    return np.int8 if xp is np else np.float32


def _top_n(scores: np.ndarray, n: int) -> np.ndarray:
    """Column indices of the n largest scores per row, best first (ties: lower index first)."""
    if n >= scores.shape[1]:
        return np.argsort(-scores, axis=1, kind="stable")[:, :n]
    part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def _missing_id(ids: np.ndarray):
    if ids.dtype.kind in "iu":
        return -1
    if ids.dtype.kind == "f":
        return np.nan
    return ""
