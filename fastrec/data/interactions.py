"""The interactions container every model consumes: dense indices, values and the id maps.

Inputs users know are accepted and validated once here: scipy.sparse matrices (rows are users,
columns items, stored entries are observations, zeros not stored are missing), a
``(user_ids, item_ids, values)`` triple of arbitrary ids, or a pandas DataFrame. CuPy arrays and
cupyx.scipy.sparse matrices are accepted too: copied to the host first (:func:`host_data`), or,
with ``keep_device=True`` (models training on the GPU), mapped and validated where they are by
the same code run with CuPy as the array module (only the id maps come to the host).

One input policy for every kind: a repeated (user, item) pair is an error unless ``duplicates``
says how to merge it ("mean", "last" or "sum"); a missing id (None/NaN) is an error naming its
row; object ids mixing types (``1`` and ``"1"``) are an error; ids map to the sorted distinct
ids whatever their values. The O(nnz) work (dense ranks of small integer ids, the user-major
pattern that finds repeated pairs and later serves as the seen-items CSR) is compiled
(``fastrec.backends.cython._datapath``) with a numpy fallback.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp

from fastrec._array import array_module, host_data, is_device_array, sparse_module, to_host

_USER_COLUMNS = ("user", "user_id", "userid", "uid", "users")
_ITEM_COLUMNS = ("item", "item_id", "itemid", "iid", "movieid", "movie_id", "items")
_VALUE_COLUMNS = ("rating", "ratings", "value", "score", "count", "weight")
_TIME_COLUMNS = ("timestamp", "time", "ts", "datetime")
DUPLICATE_POLICIES = ("raise", "mean", "last", "sum")


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
    pattern : (indptr int64[n_users + 1], indices I[nnz]) or None: the user-major CSR
        structure (rows' items ascending), kept when the constructor checked the pairs for
        repeats (host data); ``None`` when not known. Read it through :meth:`seen_csr`.
    """

    users: np.ndarray
    items: np.ndarray
    values: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    timestamps: np.ndarray | None = None
    pattern: tuple[np.ndarray, np.ndarray] | None = field(default=None, compare=False,
                                                           repr=False)

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
                 allow_empty: bool = False, keep_device: bool = False,
                 duplicates: str = "raise") -> Interactions:
        """Build from a sparse matrix, a (users, items, values) triple, a DataFrame or an
        :class:`Interactions`.

        ``user_ids``/``item_ids`` fix the id maps (e.g. a validation set mapped with the training
        set's ids); ids absent from them raise ``ValueError``. ``duplicates`` is what a repeated
        (user, item) pair means, the same for every input kind: "raise" (default: an error
        naming the first repeat), "mean", "sum" (one observation with the mean or the sum of
        the values, at the first occurrence's place) or "last" (the last occurrence only).
        A cupyx.scipy.sparse matrix, or CuPy arrays in the triple, are copied to the host first
        (:func:`host_data`), unless ``keep_device`` (and no id maps are given): then users,
        items and values stay on the device, validated and mapped there, and only the id maps
        come to the host.
        """
        _check_policy(duplicates)
        if not keep_device or user_ids is not None or item_ids is not None:
            data = host_data(data)
        if isinstance(data, Interactions):
            if data.values.dtype != dtype:
                data = replace(data, values=data.values.astype(dtype))
            out = data if data.pattern is not None else _unique_pairs(data, duplicates)
        elif sparse_module(data).issparse(data):
            out = cls.from_sparse(data, dtype, duplicates=duplicates)
        elif _is_dataframe(data):
            out = cls.from_frame(data, dtype, user_ids=user_ids, item_ids=item_ids,
                                 duplicates=duplicates)
        elif isinstance(data, (tuple, list)) and len(data) in (2, 3, 4):
            values = data[2] if len(data) >= 3 else array_module(data[0]).ones(len(data[0]))
            times = data[3] if len(data) == 4 else None
            out = cls.from_ids(data[0], data[1], values, dtype, user_ids=user_ids,
                               item_ids=item_ids, timestamps=times, duplicates=duplicates)
        else:
            raise TypeError(
                "expected a scipy.sparse matrix, a (user_ids, item_ids, ratings) tuple or a "
                f"pandas DataFrame, got {type(data).__name__}")
        if out.nnz == 0 and not allow_empty:
            raise ValueError("no interactions: the data is empty")
        return out

    @classmethod
    def from_sparse(cls, matrix, dtype=np.float32, duplicates: str = "raise") -> Interactions:
        """Rows are users, columns items; every stored entry is an observation (a
        cupyx.scipy.sparse matrix stays on the device). Repeated entries follow
        ``duplicates`` (see :meth:`from_any`); a canonical CSR matrix has none, and its arrays
        are used without copies when already in the index and value dtypes."""
        _check_policy(duplicates)
        xsp = sparse_module(matrix)
        n_users, n_items = matrix.shape
        index_dtype = _index_dtype(max(n_users, n_items))
        canonical = matrix.format == "csr" and xsp is sp and matrix.has_canonical_format
        coo = matrix.tocoo(copy=False) if xsp is sp else xsp.coo_matrix(matrix)
        if canonical:
            # Rows of a canonical CSR matrix are sorted and repeat-free: its structure is the
            # pattern.
            indices = coo.col.astype(index_dtype, copy=False)
            pattern = (matrix.indptr.astype(np.int64), indices)
        else:
            indices, pattern = coo.col.astype(index_dtype, copy=False), None
        out = cls(coo.row.astype(index_dtype, copy=False), indices, _as_values(coo.data, dtype),
                  np.arange(n_users), np.arange(n_items), pattern=pattern)
        return out if canonical else _unique_pairs(out, duplicates)

    @classmethod
    def from_indices(cls, users, items, values, shape, dtype=np.float32,
                     duplicates: str = "raise") -> Interactions:
        """Dense indices already in ``[0, shape[0])`` x ``[0, shape[1])``; checked, not mapped.
        Repeated pairs follow ``duplicates`` (see :meth:`from_any`)."""
        _check_policy(duplicates)
        users, items = _as_index_array(users, "users"), _as_index_array(items, "items")
        values = _as_values(values, dtype)
        _check_lengths(users, items, values)
        n_users, n_items = int(shape[0]), int(shape[1])
        for name, idx, n in (("user", users, n_users), ("item", items, n_items)):
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                bad = int(np.sum((idx < 0) | (idx >= n)))
                raise ValueError(f"{bad} {name} indices are negative or >= {n} (out of range)")
        index_dtype = _index_dtype(max(n_users, n_items))
        out = cls(users.astype(index_dtype, copy=False), items.astype(index_dtype, copy=False),
                  values, np.arange(n_users), np.arange(n_items))
        return _unique_pairs(out, duplicates)

    @classmethod
    def from_ids(cls, users, items, values, dtype=np.float32, user_ids=None, item_ids=None,
                 timestamps=None, duplicates: str = "raise") -> Interactions:
        """Arbitrary user/item ids (ints, floats holding integers, or strings; one kind per
        argument), mapped to dense indices (the sorted distinct ids). Missing ids (None, NaN)
        and object ids of mixed types raise ``ValueError`` naming the first offending row.
        Repeated pairs follow ``duplicates`` (see :meth:`from_any`). CuPy ids and values are
        mapped on the device (without ``user_ids``/``item_ids``)."""
        _check_policy(duplicates)
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
        out = cls(user_index.astype(index_dtype, copy=False),
                  item_index.astype(index_dtype, copy=False), values, user_map, item_map, times)
        return _unique_pairs(out, duplicates)

    @classmethod
    def from_frame(cls, frame, dtype=np.float32, user_ids=None, item_ids=None,
                   columns: tuple[str, str, str] | None = None,
                   duplicates: str = "raise") -> Interactions:
        """DataFrame with user, item and (optional) rating columns, found by common names
        (``user``/``userId``/..., ``item``/``movieId``/..., ``rating``/...) or given by
        ``columns``; a timestamp column is kept when present. Repeated pairs follow
        ``duplicates`` (see :meth:`from_any`)."""
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
                            dtype, user_ids=user_ids, item_ids=item_ids, timestamps=times,
                            duplicates=duplicates)

    # -- conversion and lookup ---------------------------------------------------------------
    def to_csr(self) -> sp.csr_matrix:
        """float CSR [n_users, n_items] where the arrays are (scipy or cupyx); duplicates are
        summed."""
        return sparse_module(self.values).csr_matrix((self.values, (self.users, self.items)),
                                                     shape=self.shape)

    def to_sorted_csr(self, n_threads: int) -> sp.csr_matrix:
        """:meth:`to_csr` of duplicate-free data: on the host by the compiled user-major
        pattern and its order, each row's items ascending (entry for entry scipy's CSR after
        sorting, which took a tenth of a ratings-sized NMF fit); on the device or without the
        extensions :meth:`to_csr` itself."""
        compiled = None if is_device_array(self.values) else _datapath()
        if compiled is None:
            return self.to_csr()
        indptr, indices, order, _ = compiled.pattern(
            np.ascontiguousarray(self.users), np.ascontiguousarray(self.items), self.n_users,
            True, n_threads)
        return sp.csr_matrix((self.values[order], indices, indptr), shape=self.shape)

    def seen_csr(self) -> sp.csr_matrix:
        """int8 CSR [n_users, n_items] of the observed pairs (ones; rows' items sorted, no
        repeats), from the pattern kept at construction when there is one (host data).
        Its indices alias :attr:`items`'s dtype; built in O(nnz + n_users)."""
        indptr, indices = self.pattern if self.pattern is not None else \
            _unique_pairs(self, "sum").pattern
        return sp.csr_matrix((np.ones(indices.shape[0], np.int8), indices, indptr),
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


def _check_policy(duplicates) -> None:
    if duplicates not in DUPLICATE_POLICIES:
        raise ValueError(f"duplicates must be one of {DUPLICATE_POLICIES}, got {duplicates!r}")


def _datapath():
    """The compiled data path, or None when the Cython extensions are not built."""
    try:
        from fastrec.backends.cython import _datapath
    except ImportError:
        return None
    return _datapath


def _n_threads() -> int:
    """All usable cores: the data path's loops share out work dynamically or in large chunks,
    so a core that another process keeps busy costs its share, not a wait at every step."""
    from fastrec.backends.threads import usable_cores

    return usable_cores()


def _unique_pairs(data: Interactions, policy: str) -> Interactions:
    """``data`` with repeated (user, item) pairs handled by ``policy`` and, on the host, its
    user-major pattern kept. The check is the pattern's construction (compiled: a counting sort
    by user and a sort of each row); merging, the rare path, groups pairs by a stable sort."""
    xp = array_module(data.users)
    compiled = _datapath() if xp is np else None
    if compiled is not None:
        indptr, indices, _, repeated = compiled.pattern(
            np.ascontiguousarray(data.users), np.ascontiguousarray(data.items), data.n_users,
            False, _n_threads())
        if not repeated:
            return replace(data, pattern=(indptr, indices))
    key = data.users.astype(np.int64) * data.n_items + data.items
    order = xp.argsort(key, kind="stable")
    sorted_key = key[order]
    first = xp.ones(data.nnz, dtype=bool)
    first[1:] = sorted_key[1:] != sorted_key[:-1]
    if bool(first.all()):
        if xp is not np:
            return data
        users = data.users[order]
        indptr = np.zeros(data.n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(users, minlength=data.n_users), out=indptr[1:])
        return replace(data, pattern=(indptr, data.items[order]))
    starts = xp.nonzero(first)[0]
    if policy == "raise":
        repeats = order[~first]
        at = int(repeats.min())
        p = int(xp.nonzero(order == at)[0][0])
        earlier = int(order[int(starts[int(xp.searchsorted(starts, p, side="right")) - 1])])
        pair = (data.user_ids[int(data.users[at])].item(),
                data.item_ids[int(data.items[at])].item())
        raise ValueError(
            f"duplicate (user, item) pair {pair!r} at entry {at} (first at entry {earlier}): "
            f"{int((~first).sum())} repeated pairs in the data; pass duplicates='mean', 'last' "
            f"or 'sum' to merge them")
    ends = xp.concatenate([starts[1:], xp.asarray([data.nnz])])
    if policy == "last":
        keep = order[ends - 1]
        values = data.values[keep]
    else:
        keep = order[starts]
        # Each pair summed on its own: a difference of one running sum would give a pair the
        # rounding of every value before it.
        pair = xp.cumsum(first) - 1
        values = xp.bincount(pair, weights=data.values[order].astype(np.float64),
                             minlength=len(starts))
        if policy == "mean":
            values = values / (ends - starts)
    place = xp.argsort(keep)
    keep, values = keep[place], values[place].astype(data.values.dtype)
    times = None if data.timestamps is None else data.timestamps[to_host(keep)]
    merged = Interactions(data.users[keep], data.items[keep], values, data.user_ids,
                          data.item_ids, times)
    return _unique_pairs(merged, "raise")


def _map_ids(raw, known, what):
    """Dense indices for raw ids and the id map (the sorted distinct ids unless ``known`` is
    given). CuPy ids are mapped on the device (the indices stay there, the id map comes to the
    host); ``known`` maps need host ids."""
    xp = array_module(raw)
    if raw.ndim != 1:
        raise ValueError(f"{what} ids must be 1-D, got shape {raw.shape}")
    if xp is not np:
        if raw.dtype.kind == "f":
            if not bool(xp.isfinite(raw).all()):
                raise ValueError(f"{what} ids contain NaN or inf")
            if bool((raw == xp.round(raw)).all()):
                raw = raw.astype(np.int64)
        ids, index = xp.unique(raw, return_inverse=True)
        return index.ravel(), to_host(ids)
    if known is not None:
        return _lookup(raw, known, what, "raise"), known
    if raw.dtype == object:
        codes, uniques = _factorize_objects(raw, what)
        return _sorted_codes(codes, uniques)
    raw = _normalize_ids(raw, what)
    if raw.dtype.kind in "iu" and raw.size:
        low, high = int(raw.min()), int(raw.max())
        compiled = _datapath()
        if compiled is not None and low >= 0 and high < 2 * raw.size + 1024:
            # Small non-negative integers: ranks from a presence table, no sort, no hashing.
            return compiled.rank_ids(np.ascontiguousarray(raw, dtype=_rank_dtype(raw)), high,
                                     _n_threads())
    import pandas as pd

    codes, uniques = pd.factorize(raw)
    return _sorted_codes(codes, np.asarray(uniques))


def _rank_dtype(raw):
    return np.int32 if raw.dtype.itemsize <= 4 and raw.dtype.kind == "i" else np.int64


def _sorted_codes(codes, uniques):
    """(index, ids): factorized ``codes`` renumbered so that the ids come out sorted."""
    order = np.argsort(uniques, kind="stable")
    rank = np.empty(order.shape[0], dtype=np.int64)
    rank[order] = np.arange(order.shape[0])
    return rank[codes], uniques[order]


def _id_kind(value) -> str:
    if isinstance(value, (str, np.str_)):
        return "str"
    if isinstance(value, (bytes, np.bytes_)):
        return "bytes"
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
            value, (bool, np.bool_)):
        return "number"
    return type(value).__name__


def _factorize_objects(raw, what):
    """(codes int64[n], uniques): object ids hashed (pandas.factorize), after checking that none
    is missing and all are of one kind (numbers, strings or bytes); uniques is a homogeneous
    array (integral numbers as int64)."""
    import pandas as pd

    missing = pd.isna(raw)
    if missing.any():
        row = int(np.argmax(missing))
        raise ValueError(f"{what} ids: missing id {raw[row]!r} at row {row}")
    codes, uniques = pd.factorize(raw)
    kinds = [_id_kind(v) for v in uniques]
    odd = next((k for k, kind in enumerate(kinds) if kind != kinds[0]), None)
    if odd is not None:
        rows = [int(np.argmax(codes == k)) for k in (0, odd)]
        raise ValueError(
            f"{what} ids mix types: {uniques[0]!r} ({kinds[0]}) at row {rows[0]} and "
            f"{uniques[odd]!r} ({kinds[odd]}) at row {rows[1]}; give ids of one type")
    if kinds and kinds[0] not in ("str", "bytes", "number"):
        raise ValueError(f"{what} ids must be integers, floats or strings, got "
                         f"{uniques[0]!r} ({kinds[0]}) at row 0")
    values = np.asarray(list(uniques)) if len(uniques) else np.empty(0, np.int64)
    return codes, _normalize_ids(values, what)


def _normalize_ids(raw, what):
    """Host ids as one homogeneous array: floats holding integers become int64, booleans
    int64; NaN, inf, missing and mixed-type object ids raise naming the first bad row."""
    if raw.dtype == object:
        codes, uniques = _factorize_objects(raw, what)
        return uniques[codes]
    if raw.dtype.kind == "f":
        bad = ~np.isfinite(raw)
        if bad.any():
            row = int(np.argmax(bad))
            label = "missing id" if np.isnan(raw[row]) else "id"
            raise ValueError(f"{what} ids: {label} {raw[row].item()!r} at row {row}")
        if np.array_equal(raw, np.round(raw)):
            return raw.astype(np.int64)
    if raw.dtype.kind == "b":
        return raw.astype(np.int64)
    return raw


def _lookup(ids, known, what, missing):
    """Indices of ``ids`` in the id map ``known``; ids are normalised as at fit time, so an id
    means the same whatever the other ids are (an integer id never matches a string id)."""
    ids = _normalize_ids(np.atleast_1d(np.asarray(ids)), what)
    if known.dtype == object:
        known = known.astype(str)
    numeric = ids.dtype.kind in "iuf", known.dtype.kind in "iuf"
    if numeric[0] != numeric[1] or (not numeric[0] and ids.dtype.kind != known.dtype.kind):
        bad = np.ones(ids.shape, bool)
        index = np.zeros(ids.shape, np.int64)
    elif known.dtype.kind in "iu" and ids.dtype.kind in "iu" and known.shape[0] and \
            known[0] == 0 and known[-1] == known.shape[0] - 1:
        # Identity map (sparse input, or ids 0..n-1): ids are the indices themselves.
        index = ids.astype(np.int64)
        bad = (index < 0) | (index >= known.shape[0])
    else:
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
