"""The interactions container every model consumes: dense indices, values and the id maps.

Inputs users know are accepted and validated once here: scipy.sparse matrices (rows are users,
columns items, stored entries are observations, zeros not stored are missing), a
``(user_ids, item_ids, values)`` triple of arbitrary ids, or a pandas DataFrame. CuPy arrays and
cupyx.scipy.sparse matrices are accepted too: copied to the host first (:func:`host_data`), or,
with ``keep_device=True`` (models training on the GPU), mapped and validated where they are by
the same code run with CuPy as the array module (only the id maps come to the host).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from fastrec._array import array_module, host_data, is_device_array, sparse_module, to_host

_USER_COLUMNS = ("user", "user_id", "userid", "uid", "users")
_ITEM_COLUMNS = ("item", "item_id", "itemid", "iid", "movieid", "movie_id", "items")
_VALUE_COLUMNS = ("rating", "ratings", "value", "score", "count", "weight")
_TIME_COLUMNS = ("timestamp", "time", "ts", "datetime")


@dataclass(frozen=True)
class Interactions:
    """Observed (user, item, value) triples with dense indices and the ids they stand for.

    Attributes
    ----------
    users, items : int32[nnz] or int64[nnz]   dense indices in ``[0, n_users)``, ``[0, n_items)``
    values : float32[nnz] or float64[nnz]
        (these three are CuPy arrays when built from device input with ``keep_device=True``)
    user_ids : ndarray[n_users]    original id of each user index (identity for sparse input;
        always numpy)
    item_ids : ndarray[n_items]
    timestamps : ndarray[nnz] or None
    """

    users: np.ndarray
    items: np.ndarray
    values: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    timestamps: np.ndarray | None = None

    @property
    def n_users(self) -> int:
        return int(self.user_ids.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.item_ids.shape[0])

    @property
    def nnz(self) -> int:
        return int(self.users.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_users, self.n_items

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_any(cls, data, dtype=np.float32, user_ids=None, item_ids=None,
                 allow_empty: bool = False, keep_device: bool = False) -> Interactions:
        """Build from a sparse matrix, a (users, items, values) triple or a DataFrame.

        ``user_ids``/``item_ids`` fix the id maps (e.g. a validation set mapped with the training
        set's ids); ids absent from them raise ``ValueError``. A cupyx.scipy.sparse matrix, or
        CuPy arrays in the triple, are copied to the host first (:func:`host_data`), unless
        ``keep_device`` (and no id maps are given): then users, items and values stay on the
        device, validated and mapped there, and only the id maps come to the host.
        """
        if not keep_device or user_ids is not None or item_ids is not None:
            data = host_data(data)
        if isinstance(data, Interactions):
            if data.values.dtype != dtype:
                data = replace(data, values=data.values.astype(dtype))
            if data.nnz == 0 and not allow_empty:
                raise ValueError("no interactions: the data is empty")
            return data
        if sparse_module(data).issparse(data):
            out = cls.from_sparse(data, dtype)
        elif _is_dataframe(data):
            out = cls.from_frame(data, dtype, user_ids=user_ids, item_ids=item_ids)
        elif isinstance(data, (tuple, list)) and len(data) in (2, 3, 4):
            values = data[2] if len(data) >= 3 else array_module(data[0]).ones(len(data[0]))
            times = data[3] if len(data) == 4 else None
            out = cls.from_ids(data[0], data[1], values, dtype, user_ids=user_ids,
                               item_ids=item_ids, timestamps=times)
        else:
            raise TypeError(
                "expected a scipy.sparse matrix, a (user_ids, item_ids, ratings) tuple or a "
                f"pandas DataFrame, got {type(data).__name__}")
        if out.nnz == 0 and not allow_empty:
            raise ValueError("no interactions: the data is empty")
        return out

    @classmethod
    def from_sparse(cls, matrix, dtype=np.float32) -> Interactions:
        """Rows are users, columns items; every stored entry is an observation (a
        cupyx.scipy.sparse matrix stays on the device)."""
        coo = sparse_module(matrix).coo_matrix(matrix)
        coo.sum_duplicates()
        n_users, n_items = coo.shape
        values = _as_values(coo.data, dtype)
        index_dtype = _index_dtype(max(n_users, n_items))
        return cls(coo.row.astype(index_dtype), coo.col.astype(index_dtype), values,
                   np.arange(n_users), np.arange(n_items))

    @classmethod
    def from_indices(cls, users, items, values, shape, dtype=np.float32) -> Interactions:
        """Dense indices already in ``[0, shape[0])`` x ``[0, shape[1])``; checked, not mapped."""
        users, items = _as_index_array(users, "users"), _as_index_array(items, "items")
        values = _as_values(values, dtype)
        _check_lengths(users, items, values)
        n_users, n_items = int(shape[0]), int(shape[1])
        for name, idx, n in (("user", users, n_users), ("item", items, n_items)):
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                bad = int(np.sum((idx < 0) | (idx >= n)))
                raise ValueError(f"{bad} {name} indices are negative or >= {n} (out of range)")
        index_dtype = _index_dtype(max(n_users, n_items))
        return cls(users.astype(index_dtype), items.astype(index_dtype), values,
                   np.arange(n_users), np.arange(n_items))

    @classmethod
    def from_ids(cls, users, items, values, dtype=np.float32, user_ids=None, item_ids=None,
                 timestamps=None) -> Interactions:
        """Arbitrary user/item ids (ints or strings), mapped to dense indices (sorted ids). CuPy
        ids and values are mapped on the device (without ``user_ids``/``item_ids``)."""
        values = _as_values(values, dtype)
        users_raw, items_raw = _as_array(users), _as_array(items)
        _check_lengths(users_raw, items_raw, values)
        user_index, user_map = _map_ids(users_raw, user_ids, "user")
        item_index, item_map = _map_ids(items_raw, item_ids, "item")
        index_dtype = _index_dtype(max(user_map.shape[0], item_map.shape[0]))
        times = None
        if timestamps is not None:
            times = np.asarray(to_host(timestamps))
            _check_lengths(values, times)
        return cls(user_index.astype(index_dtype), item_index.astype(index_dtype), values,
                   user_map, item_map, times)

    @classmethod
    def from_frame(cls, frame, dtype=np.float32, user_ids=None, item_ids=None,
                   columns: tuple[str, str, str] | None = None) -> Interactions:
        """DataFrame with user, item and (optional) rating columns, found by common names
        (``user``/``userId``/..., ``item``/``movieId``/..., ``rating``/...) or given by
        ``columns``; a timestamp column is kept when present."""
        lower = {str(c).lower(): c for c in frame.columns}

        def find(names, what, required=True):
            for n in names:
                if n in lower:
                    return lower[n]
            if required:
                raise ValueError(f"no {what} column in DataFrame with columns "
                                 f"{list(frame.columns)}; name it one of {names}")
            return None

        if columns is not None:
            user_col, item_col, value_col = columns
        else:
            user_col = find(_USER_COLUMNS, "user")
            item_col = find(_ITEM_COLUMNS, "item")
            value_col = find(_VALUE_COLUMNS, "rating", required=False)
        time_col = find(_TIME_COLUMNS, "timestamp", required=False)
        values = frame[value_col].to_numpy() if value_col is not None else np.ones(len(frame))
        times = frame[time_col].to_numpy() if time_col is not None else None
        return cls.from_ids(frame[user_col].to_numpy(), frame[item_col].to_numpy(), values,
                            dtype, user_ids=user_ids, item_ids=item_ids, timestamps=times)

    # -- conversion and lookup ---------------------------------------------------------------
    def to_csr(self) -> sp.csr_matrix:
        """float CSR [n_users, n_items] where the arrays are (scipy or cupyx); duplicates are
        summed."""
        return sparse_module(self.values).csr_matrix((self.values, (self.users, self.items)),
                                                     shape=self.shape)

    def user_index(self, ids, missing: str = "raise") -> np.ndarray:
        """Dense indices of user ids; ``missing="raise"`` or ``-1`` for unknown ids."""
        return _lookup(ids, self.user_ids, "user", missing)

    def item_index(self, ids, missing: str = "raise") -> np.ndarray:
        return _lookup(ids, self.item_ids, "item", missing)

    def subset(self, mask_or_index) -> Interactions:
        """The same id maps with a subset of the observations (for splits)."""
        t = None if self.timestamps is None else self.timestamps[mask_or_index]
        return Interactions(self.users[mask_or_index], self.items[mask_or_index],
                            self.values[mask_or_index], self.user_ids, self.item_ids, t)


def _map_ids(raw, known, what):
    """Dense indices for raw ids and the id map (sorted unique ids unless ``known`` is given).
    CuPy ids are mapped on the device (the indices stay there, the id map comes to the host);
    ``known`` maps need host ids."""
    xp = array_module(raw)
    if raw.ndim != 1:
        raise ValueError(f"{what} ids must be 1-D, got shape {raw.shape}")
    if raw.dtype.kind == "f":
        if not bool(xp.isfinite(raw).all()):
            raise ValueError(f"{what} ids contain NaN or inf")
        if bool((raw == xp.round(raw)).all()):
            raw = raw.astype(np.int64)
    if raw.dtype == object:
        raw = raw.astype(str)
    if known is None:
        ids, index = xp.unique(raw, return_inverse=True)
        return index.ravel(), to_host(ids)
    index = _lookup(raw, known, what, "raise")
    return index, known


def _lookup(ids, known, what, missing):
    ids = np.atleast_1d(np.asarray(ids))
    if ids.dtype == object:
        ids = ids.astype(str)
    if known.dtype.kind in "iu" and np.array_equal(known, np.arange(known.shape[0])):
        # Identity map (sparse input): ids are the indices themselves.
        if ids.dtype.kind not in "iu":
            raise ValueError(f"{what} ids must be integer indices for a model fitted on a matrix")
        index = ids.astype(np.int64)
        bad = (index < 0) | (index >= known.shape[0])
    else:
        if ids.dtype.kind != known.dtype.kind and not (
                ids.dtype.kind in "iuf" and known.dtype.kind in "iuf"):
            ids = ids.astype(known.dtype)
        pos = np.searchsorted(known, ids)
        pos_clipped = np.minimum(pos, max(known.shape[0] - 1, 0))
        bad = (pos >= known.shape[0]) | (known[pos_clipped] != ids) if known.shape[0] else \
            np.ones(ids.shape, bool)
        index = pos_clipped.astype(np.int64)
    if np.any(bad):
        if missing == "raise":
            examples = ids[bad][:5].tolist()
            raise ValueError(
                f"{int(bad.sum())} unknown or out-of-range {what} ids, e.g. {examples}")
        index = np.where(bad, -1, index)
    return index


def _is_dataframe(obj) -> bool:
    return type(obj).__name__ == "DataFrame" and hasattr(obj, "columns")


def _index_dtype(n: int):
    return np.int32 if n < np.iinfo(np.int32).max else np.int64


def _as_index_array(arr, name):
    arr = np.asarray(arr)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must be integer indices")
    elif arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integer indices, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _as_array(a):
    """``a`` as an array where it is: CuPy arrays as they are, anything else through numpy."""
    return a if is_device_array(a) else np.asarray(a)


def _as_values(values, dtype) -> np.ndarray:
    values = _as_array(values)
    xp = array_module(values)
    if values.ndim != 1:
        raise ValueError(f"ratings must be 1-D, got shape {values.shape}")
    if values.dtype.kind not in "biuf":
        raise ValueError(f"ratings must be numeric, got dtype {values.dtype}")
    values = values.astype(dtype, copy=False)
    bad = int(xp.count_nonzero(~xp.isfinite(values)))
    if bad:
        raise ValueError(f"{bad} ratings are NaN or inf")
    return xp.ascontiguousarray(values)


def _check_lengths(*arrays):
    lengths = {a.shape[0] for a in arrays}
    if len(lengths) > 1:
        raise ValueError(f"users, items and ratings must have the same length, got "
                         f"{[a.shape[0] for a in arrays]}")
