"""Distributed NMF by multiplicative updates: map-reduce over row partitions of X.

Each worker holds row partitions of X (CSR) with their rows of W (and user biases). One
iteration, as the local alternating loop (W then H):

- W step (map): every partition updates its W rows with fastrec's own kernel
  (``nmf_update_full`` / ``nmf_update_observed``) against the broadcast H; row updates are
  independent, so these rows get exactly the local kernel's bits for the same H;
- H step (reduce): every partition computes its share of the sums H's step needs, in float64
  (full Frobenius: X_p^T W_p and the Gram W_p^T W_p; full KL: (X / WH)_p^T W_p and W_p's
  column sums; observed: the per-item numerators and denominators over the partition's
  observations, and with biases first the per-item residual sums); the shares are added as a
  tree on the workers and one task applies the multiplicative step to H, which then goes to
  every worker for the next W step.

The H step sums in float64 in partition order where the local kernel sums in the working dtype
in row order, so iterates agree with the local fit up to that rounding (tested: relative 1e-4
on float32 factors after 10 iterations, 1e-9 in float64).
"""

from __future__ import annotations

import math
import time

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

import fastrec
from fastrec._algorithms.nmf_mu import pad_columns, random_init
from fastrec.dask._data import (
    get_client,
    global_index,
    load_ratings,
    submit,
    tree_reduce,
    wait_for,
)
from fastrec.dask._estimator import ClusterEstimator
from fastrec.dask._exact import mean_from_plan, mean_plan, slice_sums
from fastrec.dask._mf import _bounds, _worker_backend

NMF_EPSILON = 1.1920928955078125e-07  # csrc/include/fastrec/nmf.h: float32's machine epsilon
_KERNELS = {"full": ("nmf_update_full", "nmf_loss_full"),
            "observed": ("nmf_update_observed", "nmf_loss_observed")}

# The fitted attributes to_local() sets on a fastrec.NMF (kept stable by the local estimator).
FITTED = ("user_factors_", "item_factors_", "user_bias_", "item_bias_", "components_",
          "global_mean_", "rating_mean_", "user_ids_", "item_ids_", "n_users_", "n_items_",
          "n_components_", "n_features_in_", "n_iter_", "n_epochs_", "loss_curve_",
          "validation_curve_", "reconstruction_err_", "backend_", "fit_time_", "timings_")


class NMF(ClusterEstimator):
    """Non-negative matrix factorisation by multiplicative updates on a Dask cluster.

    Parameters: those of :class:`fastrec.NMF` (same meanings), plus ``client`` (None: the
    current default client) and ``n_partitions`` of fit. ``init``: "random" or "custom"
    (NNDSVD needs an SVD of all of X: not distributed); None means "random" here.
    ``n_threads``: the kernel's threads per task (None: 1). The stopping test (``tol``),
    penalties and biases are the local ones. ``early_stopping=True`` raises ValueError (it
    stops on a held-out split, and this estimator takes no ``validation_data`` and holds no
    ratings out); ``validation_fraction`` and ``n_iter_no_change`` are accepted as
    ``fastrec.NMF``'s parameters and unused.

    Fitted attributes: those of :class:`fastrec.NMF` listed in ``FITTED`` (numpy, on the
    client); :meth:`to_local` returns a fitted ``fastrec.NMF``.
    """

    local = fastrec.NMF

    def _validate_params(self) -> tuple[np.dtype, int]:
        if self.init in ("nndsvd", "nndsvda"):
            raise ValueError(f"init={self.init!r} needs an SVD of all of X, which fastrec.dask "
                             "does not distribute: use init='random' or 'custom'")
        # the local estimator's rules (they read only parameters), then the cluster's own
        dtype, beta = fastrec.NMF._validate_params(self)
        self._check_cluster_params("use tol (the stopping test) instead")
        return dtype, beta

    def _alphas(self) -> tuple[float, float, float, float]:
        return fastrec.NMF._alphas(self)

    def fit(self, X, y=None, W=None, H=None, columns=None, n_partitions: int | None = None):
        """Fit and return self.

        X : full mode: a 2-D Dask array [n_samples, n_features] (numpy or scipy.sparse chunks),
            >= 0; its row chunks are the partitions. Observed mode: ratings as
            :meth:`fastrec.dask.MF.fit` takes them (>= 0), regrouped into ``n_partitions``
            contiguous user ranges (None: one per worker thread).
        W, H : numpy [n_samples, k] and [k, n_features] for ``init="custom"``.
        """
        start = time.perf_counter()
        dtype, beta = self._validate_params()
        client = get_client(self.client)
        workers = sorted(client.nthreads())
        if not workers:
            raise ValueError("the Dask cluster has no workers")
        rng = np.random.default_rng(self.random_state)
        if self.mode == "full":
            parts, shape, summary = _full_partitions(client, X, dtype)
            user_ids, item_ids = np.arange(shape[0]), np.arange(shape[1])
            global_mean = 0.0
        else:
            data = load_ratings(client, X, dtype, columns, self.duplicates)
            shape = data.shape
            n_parts = min(n_partitions or sum(client.nthreads().values()), shape[0])
            parts, summary = _observed_partitions(client, data, n_parts, dtype)
            user_ids, item_ids = data.user_ids, data.item_ids
            global_mean = _exact_mean(client, data, dtype) if self.biased else 0.0
        owners = [workers[p % len(workers)] for p in range(len(parts))]
        n, m = shape
        k = fastrec.NMF._n_components(self, shape)
        rating_mean = summary["sum"] / summary["nnz"] if summary["nnz"] else 0.0
        w, h = self._initial_factors(shape, k, W, H, rng, dtype, summary)
        backend_name, k_pad = client.submit(_backend_width, self.backend, self.mode, k,
                                            dtype).result()
        w, ht = pad_columns(w, k_pad), pad_columns(h.T, k_pad)
        row_bounds = np.cumsum([0, *summary["rows"]])
        # A partition's state (W rows, user biases) stays on its worker as one future.
        states = [client.scatter([(w[row_bounds[p]:row_bounds[p + 1]],
                                   np.zeros(summary["rows"][p], dtype))], workers=[owners[p]],
                                 hash=False)[0] for p in range(len(parts))]
        ht_f = client.scatter([ht], hash=False)[0]
        bi_f = client.scatter([np.zeros(m, dtype)], hash=False)[0]
        del w, ht
        l1_w, l2_w, l1_h, l2_h = self._alphas()
        if self.mode == "full":
            l1_w, l2_w, l1_h, l2_h = m * l1_w, m * l2_w, n * l1_h, n * l2_h
        counts = tree_reduce(client, [submit(client, _column_counts, p, m,
                                             name="fastrec-nmf-counts") for p in parts],
                             np.add, "fastrec-nmf-reduce")
        settings = dict(mode=self.mode, beta=beta, biased=bool(self.biased),
                        mu=float(global_mean), l1_w=l1_w, l2_w=l2_w, l1_h=l1_h, l2_h=l2_h,
                        reg_bias=float(self.reg_bias), backend=self.backend,
                        n_threads=int(self.n_threads or 1), k=k, dtype=np.dtype(dtype).str)

        def objective(states, ht_f, bi_f) -> tuple[float, float]:
            """(the local loop's error or objective, the data term)."""
            terms = wait_for(client, [
                submit(client, _partition_objective, part, state, ht_f, bi_f, settings,
                       name="fastrec-nmf-loss", workers=[owner], allow_other_workers=False)
                for part, state, owner in zip(parts, states, owners, strict=True)
            ] + [submit(client, _item_penalty, ht_f, bi_f, counts, settings,
                        name="fastrec-nmf-loss")], owners, "the loss")
            data_term = sum(t[0] for t in terms[:-1])
            if self.mode == "full":
                return math.sqrt(max(2.0 * data_term, 0.0)), data_term
            return data_term + sum(t[1] for t in terms), data_term

        prepared = time.perf_counter()
        at_init = previous = objective(states, ht_f, bi_f)[0]
        callbacks = list(self.callbacks or ())
        curve = [at_init]
        max_iter, tol = fastrec.NMF._max_iter(self), float(self.tol)
        n_iter = 0
        with tqdm(total=max_iter, disable=not self.verbose, desc="fastrec.dask.NMF",
                  unit="iteration", leave=False) as bar:
            for n_iter in range(1, max_iter + 1):
                states = [submit(client, _update_rows, part, state, ht_f, bi_f, settings,
                                 name="fastrec-nmf-update-w", workers=[owner],
                                 allow_other_workers=False)
                          for part, state, owner in zip(parts, states, owners, strict=True)]
                ht_f, bi_f = _h_step(client, parts, states, ht_f, bi_f, counts, owners, settings)
                check = tol > 0 and n_iter % 10 == 0
                metrics, stop = {}, False
                if self.verbose or check:
                    value = objective(states, ht_f, bi_f)[0]
                    curve.append(value)
                    metrics["loss"] = value
                    bar.set_postfix_str(f"objective {value:.6g}")
                    if check:
                        stop = at_init > 0 and (previous - value) / at_init < tol
                        previous = value
                for callback in callbacks:
                    stop = bool(callback(n_iter, dict(metrics))) or stop
                bar.update(1)
                if stop:
                    break
        _, data_term = objective(states, ht_f, bi_f)
        gathered = wait_for(client, [*states, ht_f, bi_f], owners, "collection")
        w = np.concatenate([state[0] for state in gathered[:-2]])[:, :k]
        ht = np.ascontiguousarray(gathered[-2][:, :k])
        self.user_factors_, self.item_factors_ = np.ascontiguousarray(w), ht
        self.user_bias_ = np.concatenate([state[1] for state in gathered[:-2]])
        self.item_bias_ = gathered[-1]
        self.components_ = np.ascontiguousarray(ht.T)
        self.reconstruction_err_ = float(np.sqrt(max(2.0 * data_term, 0.0)))
        self.loss_curve_, self.validation_curve_ = curve, []
        self.n_iter_ = self.n_epochs_ = n_iter
        self.global_mean_, self.rating_mean_ = float(global_mean), float(rating_mean)
        self.user_ids_, self.item_ids_ = user_ids, item_ids
        self.n_users_, self.n_items_ = n, m
        self.n_components_, self.n_features_in_ = k, m
        self.backend_ = backend_name
        self._pattern = (client, parts, owners, row_bounds)
        self.fit_time_ = time.perf_counter() - start
        self.timings_ = {"prepare": prepared - start, "train": self.fit_time_ - (prepared - start)}
        return self

    def _initial_factors(self, shape, k, W, H, rng, dtype, summary):
        if self.init == "custom":
            out = []
            for name, arr, want in (("W", W, (shape[0], k)), ("H", H, (k, shape[1]))):
                if arr is None:
                    raise ValueError("init='custom' needs both W and H")
                arr = np.asarray(arr)
                if arr.shape != want:
                    raise ValueError(f"custom {name} must have shape {want}, got {arr.shape}")
                if not np.all(np.isfinite(arr)) or np.any(arr < 0):
                    raise ValueError(f"custom {name} must be finite and non-negative")
                out.append(np.array(arr, dtype=dtype, order="C"))
            return out
        if W is not None or H is not None:
            raise ValueError("W and H are only used with init='custom'")
        if self.mode == "observed":
            mean = summary["sum"] / summary["nnz"]
        else:
            mean = summary["sum"] / (shape[0] * shape[1])
        return random_init(mean, (shape[0], k), (k, shape[1]), rng, dtype)

    def to_local(self, include_seen: bool = True):
        """A fitted :class:`fastrec.NMF` (``FITTED`` attributes copied; ``init`` becomes
        "random" when it was None, as fitted). ``include_seen`` gathers the pattern of X
        (O(nnz) indices) as ``seen_``."""
        return self._to_local(FITTED, include_seen, init=self.init or "random")

    def _seen_pattern(self) -> sp.csr_matrix:
        client, parts, owners, row_bounds = self._pattern
        pieces = wait_for(client, [submit(client, _pattern, p, name="fastrec-seen")
                                   for p in parts], owners, "to_local")
        offsets = np.cumsum([0] + [indices.shape[0] for _, indices in pieces])
        indptr = np.concatenate([[0]] + [ptr[1:] + offsets[p]
                                         for p, (ptr, _) in enumerate(pieces)])
        indices = np.concatenate([indices for _, indices in pieces])
        return sp.csr_matrix((np.ones(indices.shape[0], np.int8), indices, indptr),
                             shape=(self.n_users_, self.n_items_))


# -- client-side steps ---------------------------------------------------------------------------
def _h_step(client, parts, states, ht_f, bi_f, counts, owners, settings):
    """Submit H's step: per-partition shares, reduced as a tree, one step task; returns the
    futures of the new H^T and item biases."""
    if settings["biased"]:
        residuals = tree_reduce(client, [
            submit(client, _item_residuals, part, state, ht_f, settings,
                   name="fastrec-nmf-h-residuals", workers=[owner], allow_other_workers=False)
            for part, state, owner in zip(parts, states, owners, strict=True)],
            np.add, "fastrec-nmf-reduce")
        bi_f = submit(client, _solve_item_bias, residuals, counts, settings,
                      name="fastrec-nmf-item-bias")
    stats = tree_reduce(client, [
        submit(client, _h_shares, part, state, ht_f, bi_f, settings,
               name="fastrec-nmf-h-shares", workers=[owner], allow_other_workers=False)
        for part, state, owner in zip(parts, states, owners, strict=True)],
        _add_pair, "fastrec-nmf-reduce")
    ht_f = submit(client, _step_h, ht_f, stats, counts, settings, name="fastrec-nmf-update-h")
    return ht_f, bi_f


def _full_partitions(client, X, dtype):
    import dask.array as da

    if not isinstance(X, da.Array) or X.ndim != 2:
        raise TypeError("fastrec.dask.NMF(mode='full') takes a 2-D Dask array [n_samples, "
                        f"n_features] (numpy or scipy.sparse chunks), got {type(X).__name__}")
    if min(X.shape) < 1:
        raise ValueError(f"X is empty (shape {X.shape})")
    blocks = X.rechunk({1: X.shape[1]}).to_delayed().ravel()
    parts = client.compute([_delayed(_full_part)(b, dtype) for b in blocks])
    summaries = client.gather([submit(client, _summary, p, name="fastrec-nmf-summary")
                               for p in parts])
    return parts, X.shape, _merge_summaries(summaries)


def _observed_partitions(client, data, n_parts, dtype):
    n_users, _ = data.shape
    bounds = _bounds(n_users, n_parts)
    maps = client.scatter([data.user_ids, data.item_ids], broadcast=True, hash=False)
    pieces = [submit(client, _split_rows, part, *maps, bounds, name="fastrec-map-ids")
              for part in data.parts]
    workers = sorted(client.nthreads())
    parts = [submit(client, _observed_part, p, bounds, data.shape[1], dtype,
                    *[submit(client, _item, piece, p, name="fastrec-shuffle") for piece in pieces],
                    name="fastrec-nmf-partition", workers=[workers[p % len(workers)]],
                    allow_other_workers=False) for p in range(n_parts)]
    summaries = client.gather([submit(client, _summary, p, name="fastrec-nmf-summary")
                               for p in parts])
    return parts, _merge_summaries(summaries)


def _merge_summaries(summaries) -> dict:
    negative = sum(s["negative"] for s in summaries)
    bad = sum(s["nonfinite"] for s in summaries)
    if bad:
        raise ValueError(f"X has {bad} NaN or infinite entries")
    if negative:
        raise ValueError(f"X has {negative} negative entries; NMF needs non-negative data")
    return {"rows": [s["rows"] for s in summaries], "nnz": sum(s["nnz"] for s in summaries),
            "sum": math.fsum(s["sum"] for s in summaries)}


def _exact_mean(client, data, dtype) -> float:
    roots, requests = mean_plan(data.lengths, dtype)
    answers = client.gather([submit(client, _values_sums, part, req, name="fastrec-mean")
                             for part, req in zip(data.parts, requests, strict=True)])
    return mean_from_plan(roots, answers, data.nnz)


def _delayed(fn):
    import dask

    return dask.delayed(fn)


# -- tasks (run on the workers) ------------------------------------------------------------------
def _item(pieces, p):
    return pieces[p]


def _values_sums(data, slices):
    return slice_sums(data.values, slices)


def _full_part(block, dtype) -> sp.csr_matrix:
    """A row chunk of X as a float CSR with explicit zeros dropped; NaN/negative entries are
    counted by :func:`_summary`, which the client checks before any iteration."""
    matrix = sp.csr_matrix(block, dtype=dtype, copy=True) if sp.issparse(block) else \
        sp.csr_matrix(np.asarray(block).astype(dtype, copy=False))
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    matrix.sort_indices()
    return matrix


def _split_rows(data, user_ids, item_ids, bounds):
    users, items = global_index(data, user_ids, item_ids)
    part = np.searchsorted(bounds, users, side="right") - 1
    order = np.argsort(part, kind="stable")
    cuts = np.searchsorted(part[order], np.arange(bounds.shape[0]))
    return [(users[o] - bounds[p], items[o], data.values[o])
            for p, o in enumerate(np.split(order, cuts[1:-1]))]


def _observed_part(p, bounds, n_items, dtype, *pieces) -> sp.csr_matrix:
    users, items, values = (np.concatenate(a) for a in zip(*pieces, strict=True))
    rows = int(bounds[p + 1] - bounds[p])
    matrix = sp.csr_matrix((values.astype(dtype), (users, items)), shape=(rows, n_items))
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix


def _summary(matrix) -> dict:
    data = matrix.data
    finite = np.isfinite(data)
    return {"rows": matrix.shape[0], "nnz": int(matrix.nnz),
            "sum": float(np.sum(data[finite], dtype=np.float64)),
            "nonfinite": int(np.count_nonzero(~finite)),
            "negative": int(np.count_nonzero(data < 0))}


def _csr_arrays(matrix):
    index = np.int32 if max(matrix.nnz, *matrix.shape) < np.iinfo(np.int32).max else np.int64
    return (np.ascontiguousarray(matrix.indptr, index), np.ascontiguousarray(matrix.indices, index),
            np.ascontiguousarray(matrix.data))


def _backend_width(name, mode, k, dtype):
    """(a worker's backend for ``mode``, the NMF row width its kernels want at rank k)."""
    backend = _worker_backend(name, _KERNELS[mode])
    return backend.name, backend.row_width("nmf", k, dtype)


def _column_counts(matrix, n_items):
    return np.bincount(matrix.indices, minlength=n_items).astype(np.float64)


def _update_rows(matrix, state, ht, bi, settings):
    """The W step of one partition with the local kernel; returns new (W_p, b_u)."""
    backend = _worker_backend(settings["backend"], _KERNELS[settings["mode"]])
    w, bu = pad_columns(state[0], state[0].shape[1]), state[1].copy()
    if settings["mode"] == "full":
        backend.nmf_update_full(*_csr_arrays(matrix), w, ht, settings["beta"], settings["l1_w"],
                                settings["l2_w"], settings["n_threads"])
    else:
        backend.nmf_update_observed(*_csr_arrays(matrix), w, ht, bu, bi, settings["mu"],
                                    settings["beta"], settings["l1_w"], settings["l2_w"],
                                    settings["reg_bias"], settings["biased"],
                                    settings["n_threads"])
    return w, bu


def _dots(matrix, w, ht):
    """float64[nnz]: w_u . h_i at the stored entries of the partition."""
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    return np.einsum("nk,nk->n", w[rows].astype(np.float64), ht[matrix.indices].astype(np.float64))


def _item_residuals(matrix, state, ht, settings):
    """Per item: sum over the partition's observations of r - mu - b_u - w_u . h_i."""
    w, bu = state
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    residual = (matrix.data.astype(np.float64) - settings["mu"] - bu[rows].astype(np.float64)
                - _dots(matrix, w, ht))
    return np.bincount(matrix.indices, weights=residual, minlength=matrix.shape[1])


def _solve_item_bias(residuals, counts, settings):
    """The item biases' exact minimisers (nmf_bias_solve), in the working dtype."""
    scale = np.where(counts > 0, counts + counts * settings["reg_bias"], 1.0)
    return np.where(counts > 0, residuals / scale, 0.0).astype(settings["dtype"])


def _h_shares(matrix, state, ht, bi, settings):
    """This partition's share of H's numerator and denominator sums, float64."""
    w, bu = state
    w64 = w.astype(np.float64)
    transposed = matrix.T.tocsr()
    if settings["mode"] == "full":
        if settings["beta"] == 2:
            return transposed @ w64, w64.T @ w64
        ratio = matrix.data / np.maximum(_dots(matrix, w, ht), NMF_EPSILON)
        weighted = sp.csr_matrix((ratio, matrix.indices, matrix.indptr), shape=matrix.shape)
        return weighted.T @ w64, w64.sum(axis=0)
    dots = _dots(matrix, w, ht)
    if settings["beta"] == 2:
        target = matrix.data.astype(np.float64)
        if settings["biased"]:
            rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
            target = target - settings["mu"] - bi[matrix.indices] - bu[rows]
        pos, neg = np.maximum(target, 0.0), dots + np.maximum(-target, 0.0)
    else:
        pos, neg = matrix.data / np.maximum(dots, NMF_EPSILON), np.ones_like(dots)
    num = sp.csr_matrix((pos, matrix.indices, matrix.indptr), shape=matrix.shape).T @ w64
    den = sp.csr_matrix((neg, matrix.indices, matrix.indptr), shape=matrix.shape).T @ w64
    return num, den


def _add_pair(a, b):
    return a[0] + b[0], a[1] + b[1]


def _step_h(ht, stats, counts, settings):
    """The multiplicative step of H^T from the reduced sums (nmf_mu_step with the penalties of
    nmf_regularised_denominator); padding columns stay zero."""
    k = settings["k"]
    num, den_stat = stats
    h = ht[:, :k].astype(np.float64)
    if settings["mode"] == "full":
        den = h @ den_stat[:k, :k] if settings["beta"] == 2 else \
            np.broadcast_to(den_stat[:k], h.shape)
        l1, l2 = settings["l1_h"], settings["l2_h"]
    else:
        den = den_stat[:, :k]
        l1, l2 = counts[:, None] * settings["l1_h"], counts[:, None] * settings["l2_h"]
    den = (den + l1) + l2 * h
    den = np.where(den == 0, NMF_EPSILON, den)
    out = ht.copy()
    out[:, :k] = (h * (num[:, :k] / den)).astype(ht.dtype)
    return out


def _partition_objective(matrix, state, ht, bi, settings):
    """(data term of the partition's rows, the W-side penalties of observed mode)."""
    w, bu = state
    backend = _worker_backend(settings["backend"], _KERNELS[settings["mode"]])
    arrays = _csr_arrays(matrix)
    if settings["mode"] == "full":
        return backend.nmf_loss_full(*arrays, w, ht, settings["beta"], settings["n_threads"]), 0.0
    data = backend.nmf_loss_observed(*arrays, w, ht, bu, bi, settings["mu"], settings["beta"],
                                     settings["biased"], settings["n_threads"])
    nu = np.diff(matrix.indptr).astype(np.float64)
    w64 = w.astype(np.float64)
    penalty = float(nu @ (settings["l1_w"] * w64.sum(1) + 0.5 * settings["l2_w"]
                          * (w64 ** 2).sum(1)))
    if settings["biased"]:
        penalty += 0.5 * settings["reg_bias"] * float(nu @ bu.astype(np.float64) ** 2)
    return data, penalty


def _item_penalty(ht, bi, counts, settings):
    """(0, the H-side penalties of observed mode) for the objective's sum."""
    if settings["mode"] == "full":
        return 0.0, 0.0
    h64 = ht.astype(np.float64)
    penalty = float(counts @ (settings["l1_h"] * h64.sum(1) + 0.5 * settings["l2_h"]
                              * (h64 ** 2).sum(1)))
    if settings["biased"]:
        penalty += 0.5 * settings["reg_bias"] * float(counts @ bi.astype(np.float64) ** 2)
    return 0.0, penalty


def _pattern(matrix):
    return matrix.indptr.astype(np.int64), matrix.indices.astype(np.int64)
