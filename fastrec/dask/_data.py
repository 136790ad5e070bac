"""Ratings held by a Dask cluster: partitions validated and id-mapped where they live.

Every partition becomes a :class:`fastrec.data.Interactions` on its worker (the local
estimators' validation, with their error messages). Only the distinct ids (merged as a tree on
the workers), the partition lengths and O(1) summaries reach the client; the ratings never do.
"""

from __future__ import annotations

import operator
import uuid
from dataclasses import dataclass

import numpy as np

from fastrec.data import interactions
from fastrec.data.interactions import DUPLICATE_POLICIES, Interactions


class WorkerLostError(RuntimeError):
    """A worker holding part of a distributed fit left the cluster; the fit was abandoned and
    the estimator keeps its previous state. The message names the worker."""


def get_client(client):
    """``client``, or the current default Dask client (as ``xgboost.dask`` and LightGBM)."""
    try:
        from distributed import default_client
    except ImportError as exc:
        raise ImportError("fastrec.dask needs Dask's distributed scheduler: "
                          'pip install "fastrec[dask]"') from exc
    if client is not None:
        return client

    try:
        return default_client()
    except ValueError as exc:
        raise ValueError("fastrec.dask needs a Dask client: pass client=Client(...) or create "
                         "one first (e.g. Client(LocalCluster()) or Client('tcp://host:8786'))"
                         ) from exc


def task_key(name: str) -> tuple[str, str]:
    """A unique key in task group ``name`` (the dashboard's group view shows ``name``, e.g.
    ``fastrec-sgd-epoch-3-worker-0``; its task stream colours by the name without numbers)."""
    return name, uuid.uuid4().hex


def submit(client, fn, *args, name: str, **kwargs):
    return client.submit(fn, *args, key=task_key(name), pure=False, **kwargs)


def tree_reduce(client, futures: list, fn, name: str):
    """Combine ``futures`` pairwise, level by level, on the workers; returns one future."""
    level = list(futures)
    while len(level) > 1:
        pairs = zip(level[::2], level[1::2], strict=False)
        nxt = [submit(client, fn, a, b, name=name) for a, b in pairs]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


@dataclass
class DistributedRatings:
    """Validated partitions on the cluster (futures of :class:`Interactions`, each with its
    partition's own id maps), with the global id maps and partition lengths on the client."""

    parts: list
    lengths: list[int]
    user_ids: np.ndarray
    item_ids: np.ndarray

    @property
    def nnz(self) -> int:
        return int(sum(self.lengths))

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.user_ids.shape[0]), int(self.item_ids.shape[0])


def load_ratings(client, X, dtype, columns=None, duplicates="raise") -> DistributedRatings:
    """Validate and summarise ratings given as a ``dask.dataframe.DataFrame`` (user, item and
    optional rating columns, found by the local loaders' names or given as ``columns``), a Dask
    array [nnz, 2 or 3] of COO triples (user, item[, rating]), or a tuple of three 1-D Dask
    arrays with the same chunks. Raises the local estimators' errors for bad data; repeated
    (user, item) pairs anywhere in the data follow ``duplicates`` as locally ("raise", or
    merged by "mean", "last" or "sum" into one entry where the local estimators keep it)."""
    if duplicates not in DUPLICATE_POLICIES:
        raise ValueError(f"duplicates must be one of {DUPLICATE_POLICIES}, got {duplicates!r}")
    delayed_parts = _partitions(X, dtype, columns)
    parts = client.compute(delayed_parts)
    lengths = [submit(client, operator.attrgetter("nnz"), p, name="fastrec-count")
               for p in parts]
    ids = []
    for field in ("user_ids", "item_ids"):
        pieces = [submit(client, operator.attrgetter(field), p, name="fastrec-distinct-ids")
                  for p in parts]
        ids.append(tree_reduce(client, pieces, np.union1d, "fastrec-merge-ids"))
    lengths, user_ids, item_ids = client.gather([lengths, *ids])
    if sum(lengths) == 0:
        raise ValueError("no interactions: the data is empty")
    data = DistributedRatings(parts, [int(n) for n in lengths], _integral(user_ids),
                              _integral(item_ids))
    return _unique_pairs(client, data, duplicates)


def _unique_pairs(client, data: DistributedRatings, policy: str) -> DistributedRatings:
    """``data`` with repeated (user, item) pairs handled by ``policy`` as the local
    ``Interactions`` does, on the cluster: the pairs are shuffled by user into contiguous user
    ranges (a pair's repeats meet in one shard, whatever partitions they came from); each
    shard finds its repeats and either the facts of the local error or, to merge them, the
    edits each input partition needs (entries to drop, merged values). Only counts and the
    error's one pair reach the client; the merged partitions replace the originals, in input
    order, so positions, the mean and everything after them are those of the local merge."""
    n_shards = len(data.parts)
    offsets = np.concatenate([[0], np.cumsum(data.lengths)]).astype(np.int64)
    maps = client.scatter([data.user_ids, data.item_ids], broadcast=True, hash=False)
    keyed = [submit(client, _pair_pieces, part, *maps, int(offsets[p]), n_shards,
                    name="fastrec-pair-keys") for p, part in enumerate(data.parts)]
    shards = [submit(client, _shard_repeats, policy, offsets,
                     *[submit(client, operator.itemgetter(s), k, name="fastrec-pair-shuffle")
                       for k in keyed], name="fastrec-find-repeats")
              for s in range(n_shards)]
    facts = client.gather([submit(client, operator.itemgetter(0), s,
                                  name="fastrec-repeats-found") for s in shards])
    found = [f for f in facts if f is not None]
    if not found:
        return data
    if policy == "raise":
        _, at, earlier, key = min(found, key=lambda f: f[1])
        user, item = divmod(key, data.item_ids.shape[0])
        pair = (data.user_ids[user].item(), data.item_ids[item].item())
        raise ValueError(
            f"duplicate (user, item) pair {pair!r} at entry {at} (first at entry {earlier}): "
            f"{sum(f[0] for f in found)} repeated pairs in the data; pass duplicates='mean', "
            "'last' or 'sum' to merge them")
    edits = [submit(client, operator.itemgetter(1), s, name="fastrec-merge-edits")
             for s in shards]
    parts = [submit(client, _merge_partition, part, p, *edits, name="fastrec-merge-repeats")
             for p, part in enumerate(data.parts)]
    lengths = client.gather([submit(client, operator.attrgetter("nnz"), p, name="fastrec-count")
                             for p in parts])
    return DistributedRatings(parts, [int(n) for n in lengths], data.user_ids, data.item_ids)


def _pair_pieces(part: Interactions, user_ids, item_ids, offset: int, n_shards: int) -> list:
    """A partition's (pair key, entry, value) split into ``n_shards`` contiguous user ranges
    (input order kept within each piece)."""
    users, items = global_index(part, user_ids, item_ids)
    keys = users * item_ids.shape[0] + items
    shard = users * n_shards // user_ids.shape[0]
    order = np.argsort(shard, kind="stable")
    cuts = np.searchsorted(shard[order], np.arange(n_shards + 1))
    entries = np.arange(offset, offset + part.nnz, dtype=np.int64)
    return [tuple(a[order[cuts[s]:cuts[s + 1]]] for a in (keys, entries, part.values))
            for s in range(n_shards)]


def _shard_repeats(policy: str, offsets, *pieces):
    """Repeated pairs of a shard (all the entries of its users, from every partition): returns
    ``(facts, edits)``, both None without repeats. ``policy="raise"``: facts are (count, the
    earliest repeat's entry, the entry of that pair's first occurrence, its pair key).
    Otherwise facts is the count of entries merged away and edits, for each input partition,
    (its positions to drop, positions to update, their new values): the local merge keeps a
    pair's last entry ("last") or its first, with the float64 sum or mean of the pair's
    values ("sum", "mean")."""
    keys, entries, values = (np.concatenate(a) for a in zip(*pieces, strict=True))
    order = np.argsort(keys, kind="stable")  # pieces arrive in input order: ties by entry
    sorted_keys = keys[order]
    first = np.ones(order.shape[0], dtype=bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    if bool(first.all()):
        return None, None
    n_repeats = int((~first).sum())
    starts = np.flatnonzero(first)
    sizes = np.diff(np.append(starts, order.shape[0]))
    if policy == "raise":
        repeats = np.flatnonzero(~first)
        j = repeats[np.argmin(entries[order[repeats]])]
        start = starts[np.searchsorted(starts, j, side="right") - 1]
        return (n_repeats, int(entries[order[j]]), int(entries[order[start]]),
                int(sorted_keys[j])), None
    multi = sizes > 1
    kept = (starts + sizes - 1 if policy == "last" else starts)[multi]
    drop = np.repeat(multi, sizes)
    drop[kept] = False
    dropped = np.sort(entries[order[drop]])
    updated, new_values = np.empty(0, np.int64), values[:0]
    if policy != "last":
        sums = np.add.reduceat(values[order].astype(np.float64), starts)[multi]
        new_values = (sums / sizes[multi] if policy == "mean" else sums).astype(values.dtype)
        updated = entries[order[kept]]
    edits = []
    for p in range(offsets.shape[0] - 1):
        a, b = np.searchsorted(dropped, offsets[p:p + 2])
        mine = (updated >= offsets[p]) & (updated < offsets[p + 1])
        edits.append((dropped[a:b] - offsets[p], updated[mine] - offsets[p], new_values[mine]))
    return n_repeats, edits


def _merge_partition(part: Interactions, p: int, *edits) -> Interactions:
    """Partition ``p`` with the shards' ``edits`` applied (entries dropped, values merged)."""
    found = [e[p] for e in edits if e is not None]
    if not found:
        return part
    values = part.values.copy()
    keep = np.ones(part.nnz, dtype=bool)
    for dropped, updated, new_values in found:
        keep[dropped] = False
        values[updated] = new_values
    return Interactions(part.users[keep], part.items[keep], values[keep], part.user_ids,
                        part.item_ids)


def _integral(ids: np.ndarray) -> np.ndarray:
    """Float ids that are all whole numbers become int64, as the local id mapping does for the
    whole column (partitions may disagree: one all-integral, another not)."""
    if ids.dtype.kind == "f" and bool((ids == np.round(ids)).all()):
        return ids.astype(np.int64)
    return ids


def global_index(data: Interactions, user_ids: np.ndarray, item_ids: np.ndarray):
    """int64 indices of a partition's users and items in the global (sorted) id maps."""
    users = np.searchsorted(user_ids, data.user_ids.astype(user_ids.dtype, copy=False))
    items = np.searchsorted(item_ids, data.item_ids.astype(item_ids.dtype, copy=False))
    return users[data.users].astype(np.int64), items[data.items].astype(np.int64)


def _partitions(X, dtype, columns):
    import dask
    import dask.array as da
    import dask.dataframe as dd

    if isinstance(X, dd.DataFrame):
        # The column lookup (and its error) runs on the client on the empty metadata frame.
        picked = _frame_columns(X._meta, dtype, columns)
        frame = X[[c for c in picked if c is not None]]
        return [dask.delayed(_from_frame)(p, picked, dtype) for p in frame.to_delayed()]
    if isinstance(X, da.Array):
        if X.ndim != 2 or X.shape[1] not in (2, 3):
            raise ValueError("a Dask array of COO triples must have shape [nnz, 3] (user, "
                             f"item, rating) or [nnz, 2], got {X.shape}")
        blocks = X.rechunk({1: X.shape[1]}).to_delayed().ravel()
        return [dask.delayed(_from_block)(b, dtype) for b in blocks]
    if isinstance(X, (tuple, list)) and len(X) == 3 and all(isinstance(a, da.Array) for a in X):
        if any(a.ndim != 1 for a in X) or len({a.chunks for a in X}) != 1:
            raise ValueError("users, items and ratings must be 1-D Dask arrays with the same "
                             "chunks")
        return [dask.delayed(_from_triple)(u, i, r, dtype) for u, i, r in
                zip(*(a.to_delayed() for a in X), strict=True)]
    raise TypeError("fastrec.dask estimators take a dask.dataframe.DataFrame, a Dask array "
                    "[nnz, 3] of (user, item, rating) triples or a tuple of three Dask arrays, "
                    f"got {type(X).__name__}; fit in-memory data with fastrec.MF / fastrec.NMF")


def _frame_columns(meta, dtype, columns):
    """(user, item, rating-or-None) column names, found as ``Interactions.from_frame`` does."""
    if columns is not None:
        if len(columns) != 3 or any(c not in meta.columns for c in columns):
            raise ValueError(f"columns must name (user, item, rating) columns of the frame, "
                             f"got {columns!r} for columns {list(meta.columns)}")
        return tuple(columns)
    Interactions.from_frame(meta, dtype)  # raises the local estimators' error for a missing column
    lower = {str(c).lower(): c for c in meta.columns}
    from fastrec.data import interactions as names

    picked = []
    for options in (names._USER_COLUMNS, names._ITEM_COLUMNS, names._VALUE_COLUMNS):
        picked.append(next((lower[n] for n in options if n in lower), None))
    return tuple(picked)


def _from_frame(frame, picked, dtype) -> Interactions:
    user, item, rating = picked
    values = frame[rating].to_numpy() if rating is not None else np.ones(len(frame))
    return _from_ids(frame[user].to_numpy(), frame[item].to_numpy(), values, dtype)


def _from_block(block, dtype) -> Interactions:
    values = block[:, 2] if block.shape[1] == 3 else np.ones(block.shape[0])
    return _from_ids(block[:, 0], block[:, 1], values, dtype)


def _from_triple(users, items, ratings, dtype) -> Interactions:
    return _from_ids(users, items, ratings, dtype)


def _from_ids(users, items, values, dtype) -> Interactions:
    """``Interactions.from_ids`` (its validation, id mapping and errors) without its check for
    repeated pairs: a pair may repeat in another partition, so :func:`_unique_pairs` handles
    repeats for the whole data at once."""
    values = interactions._as_values(values, dtype)
    users, items = np.asarray(users), np.asarray(items)
    interactions._check_lengths(users, items, values)
    user_index, user_map = interactions._map_ids(users, None, "user")
    item_index, item_map = interactions._map_ids(items, None, "item")
    index_dtype = interactions._index_dtype(max(user_map.shape[0], item_map.shape[0]))
    return Interactions(user_index.astype(index_dtype, copy=False),
                        item_index.astype(index_dtype, copy=False), values, user_map, item_map)


def wait_for(client, futures: list, owners, what: str):
    """Gather ``futures``; if a worker of ``owners`` leaves meanwhile, raise
    :class:`WorkerLostError` naming it (tasks pinned to a lost worker would wait forever)."""
    try:
        # One result at a time, with a timeout: a lost worker takes results with it that Dask
        # cannot recompute on another worker, and a plain wait or gather would wait for them
        # forever.
        results = []
        for future in futures:
            while True:
                try:
                    results.append(future.result(timeout=1.0))
                    break
                except TimeoutError:
                    check_workers(client, owners, what)
        return results
    except WorkerLostError:
        raise
    except Exception as exc:
        # Futures cancelled because their data died with a worker, or a task error: name the
        # lost worker when there is one, else let the task's own error through.
        check_workers(client, owners, what, cause=exc)
        raise


def check_workers(client, owners, what: str, cause=None) -> None:
    alive = set(client.nthreads())
    lost = sorted(set(owners) - alive)
    if lost:
        raise WorkerLostError(
            f"worker {', '.join(lost)} left the cluster during {what}; it held row blocks of "
            "this fit, so the fit was abandoned and the estimator keeps its previous state. "
            "Fit again (the remaining workers take over).") from cause
