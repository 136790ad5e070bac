"""Top-n for serving, shared by every model: ``recommend``, ``similar_items`` and GRU4Rec's
``recommend_next`` score a batch against the items and keep each row's best ``n``.

Compiled on the host (Cython + OpenMP: a heap per row fed block by block, excluded items skipped
in the same pass, GIL released, BLAS single-threaded while it runs) and on the GPU (CUDA);
``backend="numpy"`` is the reference. Memory is O(batch * n) with ``n`` capped at the number of
items, never O(n) for an arbitrary ``n``.

Edge behaviour, the same on every backend: the result always has ``min(n, n_items)`` columns;
a row with fewer eligible items (excluded ones and NaN scores do not count) is padded at the end
with index :data:`PAD_INDEX` (-1) and score ``-inf``. Ties rank the lower item index first.
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import scipy.sparse as sp

from fastrec._array import is_device_array
from fastrec.backends import BackendUnavailable, default_n_threads

log = logging.getLogger("fastrec")

PAD_INDEX = -1


def top_n(query, item_factors, item_bias=None, n: int = 10, exclude=None, exclude_rows=None,
          n_threads: int | None = None, backend: str = "auto"):
    """Best ``n`` items per row of ``query @ item_factors.T + item_bias``.

    query T[b, k], item_factors T[m, k], item_bias T[m] or None (T float32 or float64; query and
    bias are cast to item_factors' dtype). ``exclude``: a CSR matrix [rows, m] of items to skip
    (e.g. the seen matrix); row r of the batch skips ``exclude[exclude_rows[r]]``
    (``exclude_rows`` int[b], default ``arange(b)``). ``backend``: ``"auto"`` (CUDA for CuPy
    arrays, else Cython when built, else numpy), ``"cython"``, ``"cuda"``, ``"numpy"``.

    Returns ``(indices int64[b, n'], scores T[b, n'])`` with ``n' = min(n, m)``, best first,
    padded with index -1 and score -inf (see the module docstring); on the arrays' device.
    """
    n_out = _check_n(n, item_factors.shape[0])
    dtype = _float_dtype(item_factors)
    xp = _xp(item_factors)
    item_factors = xp.ascontiguousarray(item_factors)
    query = xp.ascontiguousarray(query, dtype=dtype)
    if query.ndim != 2 or item_factors.ndim != 2 or query.shape[1] != item_factors.shape[1]:
        raise ValueError(f"query [b, k] and item_factors [m, k] do not match: {query.shape} and "
                         f"{item_factors.shape}")
    if item_bias is not None:
        item_bias = xp.ascontiguousarray(item_bias, dtype=dtype)
        if item_bias.shape != (item_factors.shape[0],):
            raise ValueError(f"item_bias must have shape ({item_factors.shape[0]},), got "
                             f"{item_bias.shape}")
    kernels = _kernels(backend, query)
    csr = _exclusion(exclude, exclude_rows, query.shape[0], item_factors.shape[0], xp)
    return kernels.topn_factors(query, item_factors, item_bias, n_out, *csr,
                                _threads(n_threads))


def top_n_scores(scores, n: int = 10, exclude=None, exclude_rows=None,
                 n_threads: int | None = None, backend: str = "auto"):
    """:func:`top_n` for precomputed scores T[b, m] (read only), e.g. a neural model's output."""
    xp = _xp(scores)
    scores = xp.ascontiguousarray(scores, dtype=_float_dtype(scores))
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D [b, m], got shape {scores.shape}")
    n_out = _check_n(n, scores.shape[1])
    kernels = _kernels(backend, scores)
    csr = _exclusion(exclude, exclude_rows, scores.shape[0], scores.shape[1], xp)
    return kernels.topn_scores(scores, n_out, *csr, _threads(n_threads))


def _check_n(n, n_items: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    return int(min(n, n_items))


def _float_dtype(array) -> np.dtype:
    dtype = np.dtype(array.dtype)
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)


def _xp(array):
    if is_device_array(array):
        import cupy

        return cupy
    return np


def _threads(n_threads) -> int:
    if n_threads is None:
        return default_n_threads()
    if int(n_threads) < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    return int(n_threads)


def _exclusion(exclude, exclude_rows, b: int, n_items: int, xp):
    """(indptr, indices, rows) of the exclusion CSR with sorted rows, one index dtype; empty
    ``rows`` when nothing is excluded."""
    if exclude is None:
        empty = xp.zeros(1, np.int32)
        return empty, empty[:0], xp.zeros(0, np.int64)
    if not (sp.issparse(exclude) or (xp is not np and hasattr(exclude, "tocsr"))):
        raise ValueError("exclude must be a scipy.sparse (or, for CuPy arrays, "
                         f"cupyx.scipy.sparse) CSR matrix, got {type(exclude)}")
    exclude = exclude.tocsr()
    if exclude.shape[1] != n_items:
        raise ValueError(f"exclude has {exclude.shape[1]} columns, there are {n_items} items")
    if not exclude.has_sorted_indices:
        exclude = exclude.sorted_indices()
    if exclude_rows is None:
        if exclude.shape[0] != b:
            raise ValueError(f"exclude has {exclude.shape[0]} rows for a batch of {b}: pass "
                             "exclude_rows")
        rows = xp.arange(b, dtype=np.int64)
    else:
        rows = xp.ascontiguousarray(xp.asarray(exclude_rows), dtype=np.int64)
        if rows.shape != (b,):
            raise ValueError(f"exclude_rows must have shape ({b},), got {rows.shape}")
        if b and (int(rows.min()) < 0 or int(rows.max()) >= exclude.shape[0]):
            raise ValueError(f"exclude_rows must lie in [0, {exclude.shape[0]})")
    index_dtype = np.result_type(exclude.indptr.dtype, exclude.indices.dtype)
    return (xp.ascontiguousarray(xp.asarray(exclude.indptr), dtype=index_dtype),
            xp.ascontiguousarray(xp.asarray(exclude.indices), dtype=index_dtype), rows)


class _Host:
    """Allocates the outputs and calls a compiled or reference module with one signature."""

    def __init__(self, module, reference: bool):
        self._module, self._reference = module, reference

    def topn_factors(self, query, item_factors, item_bias, n, indptr, indices, rows, n_threads):
        if self._reference:
            return self._module.topn_factors(query, item_factors, item_bias, n, indptr, indices,
                                             rows)
        ids, scores = _outputs(query.shape[0], n, item_factors.dtype)
        bias = item_bias if item_bias is not None else item_factors[:0, 0]
        self._module.topn_factors(query, item_factors, np.ascontiguousarray(bias), indptr,
                                  indices, rows, ids, scores, n_threads)
        return ids, scores

    def topn_scores(self, scores, n, indptr, indices, rows, n_threads):
        if self._reference:
            return self._module.topn_scores(scores, n, indptr, indices, rows)
        ids, best = _outputs(scores.shape[0], n, scores.dtype)
        self._module.topn_scores(scores, indptr, indices, rows, ids, best, n_threads)
        return ids, best


def _outputs(b: int, n: int, dtype):
    return np.empty((b, n), np.int64), np.empty((b, n), dtype)


def _kernels(backend: str, array):
    device = is_device_array(array)
    if backend == "auto":
        backend = "cuda" if device else ("cython" if _compiled() is not None else "numpy")
    if backend not in ("cython", "cuda", "numpy"):
        raise ValueError(f"backend must be 'auto', 'cython', 'cuda' or 'numpy', got {backend!r}")
    if backend == "cuda":
        if not device:
            raise ValueError("backend 'cuda' takes CuPy arrays")
        from fastrec.backends.cuda import topn as cuda_topn

        return cuda_topn
    if device:
        raise ValueError(f"backend {backend!r} runs on the host: pass numpy arrays")
    if backend == "cython":
        compiled = _compiled()
        if compiled is None:
            raise BackendUnavailable("the cython top-n kernel is not built: reinstall fastrec "
                                     "with a C++17 compiler")
        return _Host(compiled, reference=False)
    from fastrec.backends.reference import topn

    return _Host(topn, reference=True)


@functools.cache
def _compiled():
    try:
        from fastrec.backends.cython import _topn
    except ImportError as exc:
        log.warning("the compiled top-n is not built (%s): top-n runs on the numpy reference, "
                    "which is much slower; reinstall fastrec with a C++17 compiler", exc)
        return None
    return _topn
