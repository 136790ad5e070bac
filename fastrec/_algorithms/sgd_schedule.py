"""Stratified block layout and per-epoch schedule for parallel, deterministic SGD (DSGD/FPSGD).

Users and items are dealt at random into ``G`` row and ``G`` column blocks, cutting the rating
matrix into a ``G x G`` grid. A stratum is ``G`` blocks that share no row block and no column
block, so its blocks can be updated concurrently without locks and without changing the result:
every thread count gives the same model. ``G`` depends only on the data, never on the thread
count (raise ``n_blocks`` to at least twice the thread count on many-core machines).

As in LIBMF the deal is a random relabelling followed by contiguous ranges: the kernels work on
factor tables whose rows are in *working order* (``user_rows[u]`` is user ``u``'s row), so a
block's rows are one contiguous stretch of memory (streamed by the hardware prefetcher, few TLB
misses) and two threads never write rows that share a cache line (with scattered rows, k=100
float32 rows of 400 bytes did, and 2 threads ran no faster than 1).

Within a block the ratings are grouped by user, as in LIBMF, so a user's factor row stays in L1
across its ratings, and the block's user-sorted list is cut into two runs that are interleaved
rating by rating: consecutive updates then belong to different users, so the CPU overlaps two
independent update chains instead of waiting on one.

The layout is built where the ratings are: with numpy, or with CuPy for device ratings (a GPU
fit on CuPy input), by the same code. The random draws (relabellings, tie-break keys) come from
the host generator either way, so a seed gives the same layout for host and device input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastrec._array import aligned_zeros, array_module
from fastrec.backends.threads import usable_cores

DEFAULT_N_BLOCKS = 16


def choose_n_blocks(n_users: int, n_items: int) -> int:
    """Grid side ``G``: 16 (room for load balance on a few cores), fewer for tiny matrices."""
    return max(1, min(DEFAULT_N_BLOCKS, n_users, n_items))


@dataclass(frozen=True)
class BlockedRatings:
    """Ratings regrouped by grid block in the order the kernels process them."""

    users: np.ndarray  # I[nnz]
    items: np.ndarray  # I[nnz]
    ratings: np.ndarray  # T[nnz]
    block_ptr: np.ndarray  # int64[G*G + 1]
    n_blocks: int  # G
    user_rows: np.ndarray  # int64[n_users]: working row of each user (numpy)
    item_rows: np.ndarray  # int64[n_items]: working row of each item (numpy)

    @classmethod
    def build(cls, users, items, ratings, n_users, n_items, n_blocks, rng,
              n_threads: int | None = None) -> BlockedRatings:
        """The layout of ``users``, ``items``, ``ratings`` (numpy, or CuPy: then the first four
        fields are CuPy arrays too, built on the device; the draws of ``rng`` are uploaded).

        The order is defined as a sort: blocks in row-major grid order, and within a block by
        (working user row, a random 20-bit key per rating, input position), then the block's
        halves interleaved. Host ratings go through the compiled counting sort
        (``_datapath.layout``, ``n_threads`` threads, default all usable cores; the same layout
        at any count; it draws the keys run by run), device ratings through two stable sorts,
        which give the same layout.
        No sort key packs two fields, so nothing overflows for any ``G <= 4096`` and up to
        2^42 users or items.
        """
        xp = array_module(ratings)
        g = n_blocks
        nnz = users.shape[0]
        # A random relabelling balances popular users and items across the contiguous blocks.
        user_rows, item_rows = _random_rows(n_users, rng), _random_rows(n_items, rng)
        compiled = _compiled_layout() if xp is np else None
        if compiled is not None:
            # The compiled layout draws the keys run by run as it deals the ratings (all nnz
            # keys at once would be its largest temporary): the same keys as one draw.
            users, items, ratings, block_ptr = compiled(
                np.ascontiguousarray(users), np.ascontiguousarray(items),
                np.ascontiguousarray(ratings), user_rows, item_rows, g,
                lambda n: tie_keys(rng, n), n_threads or usable_cores())
        else:
            users, items, ratings, block_ptr = _sorted_layout(
                xp, users, items, ratings, user_rows, item_rows, g, xp.asarray(tie_keys(rng, nnz)))
        return cls(users, items, ratings, block_ptr, g, user_rows, item_rows)

    def to_working_order(self, state: dict[str, np.ndarray],
                         width: int | None = None) -> dict[str, np.ndarray]:
        """Copies of user tables (names starting with "user") and item tables in working order;
        factor tables (2-D) get ``width`` columns (the kernels' row width,
        ``Backend.row_width("sgd", k, dtype)``; default k), zero-padded, in 64-byte aligned
        memory."""
        out = {}
        for name, table in state.items():
            if table.ndim == 2:
                width = table.shape[1] if width is None else max(width, table.shape[1])
                out[name] = aligned_zeros((table.shape[0], width), table.dtype)
                out[name][self._rows(name), :table.shape[1]] = table
            else:
                out[name] = np.empty_like(table)
                out[name][self._rows(name)] = table
        return out

    def to_id_order(self, state: dict[str, np.ndarray], k: int) -> dict[str, np.ndarray]:
        """The inverse of :meth:`to_working_order` for rank ``k`` (numpy or CuPy tables)."""
        out = {}
        for name, table in state.items():
            rows = table[array_module(table).asarray(self._rows(name))]
            out[name] = rows[:, :k].copy() if rows.ndim == 2 else rows
        return out

    def _rows(self, name: str) -> np.ndarray:
        return self.user_rows if name.startswith("user") else self.item_rows

    def epoch_schedule(self, rng) -> np.ndarray:
        """int64[G, G]: stratum s runs blocks (r_b, c_{(b + s) mod G}) under fresh random
        permutations r, c of the row and column blocks, in a random stratum order."""
        g = self.n_blocks
        rows, cols, strata = rng.permutation(g), rng.permutation(g), rng.permutation(g)
        b = np.arange(g)
        schedule = rows[None, :] * g + cols[(b[None, :] + strata[:, None]) % g]
        return np.ascontiguousarray(schedule, dtype=np.int64)


def _sorted_layout(xp, users, items, ratings, user_rows, item_rows, g, keys):
    """:meth:`BlockedRatings.build`'s layout by array sorts (CuPy input, or no compiled path):
    a stable sort by key, then a stable one by (block, user) (< G^2 * n_users <= 2^55)."""
    n_users, n_items = user_rows.shape[0], item_rows.shape[0]
    nnz = users.shape[0]
    users = xp.asarray(user_rows)[users].astype(users.dtype)
    items = xp.asarray(item_rows)[items].astype(items.dtype)
    block = (users.astype(np.int64) * g // n_users) * g + items.astype(np.int64) * g // n_items
    counts = xp.bincount(block, minlength=g * g)
    block_ptr = xp.zeros(g * g + 1, dtype=np.int64)
    xp.cumsum(counts, out=block_ptr[1:])
    order = xp.argsort(keys, kind="stable")
    order = order[xp.argsort((block * n_users + users)[order], kind="stable")]
    # Interleave the block's two halves: position j of the first half (length h) goes to
    # slot 2j, position j of the second half to slot 2(j - h) + 1; a bijection, no sort.
    start = block_ptr[block[order]]
    position = xp.arange(nnz) - start
    half = (counts[block[order]] + 1) // 2
    slot = xp.where(position < half, 2 * position, 2 * (position - half) + 1)
    interleaved = xp.empty_like(order)
    interleaved[start + slot] = order
    order = interleaved
    return (xp.ascontiguousarray(users[order]), xp.ascontiguousarray(items[order]),
            xp.ascontiguousarray(ratings[order]), block_ptr)


def tie_keys(rng, n: int) -> np.ndarray:
    """The next ``n`` tie-break keys, uint32[n] in [0, 2^20). Each key takes exactly 32 random
    bits (a power-of-two range is never rejected) and NumPy keeps a spare half of a 64-bit draw
    in the generator's state, so draws of n1, n2, ... keys give the keys of one draw of
    n1 + n2 + ... and leave the generator in the same state."""
    return rng.integers(0, 1 << 20, n, dtype=np.uint32)


def _compiled_layout():
    """``_datapath.layout`` when the Cython extensions are built, else None."""
    try:
        from fastrec.backends.cython import _datapath
    except ImportError:
        return None
    return _datapath.layout


def _random_rows(n: int, rng) -> np.ndarray:
    rows = np.empty(n, dtype=np.int64)
    rows[rng.permutation(n)] = np.arange(n)
    return rows
