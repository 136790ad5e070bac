"""Reproducing, from partitioned data, the two O(nnz) quantities of a local MF fit whose exact
bits depend on the whole array: the float64 mean of the ratings and the random tie-break keys
of the block layout. Pure numpy, no Dask: the fit sends each partition its part of the work.

numpy's ``mean(values, dtype=float64)`` is a pairwise sum (blocks of at most 128 elements, split
at multiples of 8) over the whole array for float64 values; float32 values are cast in buffers
of 8192 elements, each summed pairwise and added in order. Every node of that tree that lies
inside one partition is ``np.sum`` of a slice there (the same function of the same elements);
only the few leaves that straddle partition boundaries (at most 128 elements each) travel.

``BlockedRatings.build`` draws ``rng.integers(0, 1 << 20, nnz)``: numpy takes draw ``j`` from
half ``j % 2`` (low half first) of the ``j // 2``-th raw 64-bit output, as ``x >> 12`` (Lemire's
method without rejection for a power-of-two range). A partition at global offset ``o`` jumps
there with ``PCG64.advance``; the client advances its own generator past all ``nnz`` draws.
"""

from __future__ import annotations

import numpy as np

_LEAF = 128  # numpy's PW_BLOCKSIZE: at most this many elements are summed without splitting
_CAST_BUFFER = 8192  # numpy's default ufunc buffer size (elements) for casting reductions
TIE_BITS = 20


def mean_plan(lengths: list[int], dtype) -> tuple[list, list[list[tuple[int, int]]]]:
    """The summation tree of ``np.mean(concatenate(parts), dtype=float64)``.

    lengths : the partitions' lengths, in order; dtype : float32 or float64 (the values').
    Returns ``(roots, requests)``: ``requests[p]`` lists the ``(start, stop)`` slices of
    partition ``p`` whose sums (``slice_sums``) the tree needs; ``roots`` is read by
    :func:`mean_from_plan` with the answers.
    """
    bounds = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
    total = int(bounds[-1])
    requests: list[list[tuple[int, int]]] = [[] for _ in lengths]

    def where(start: int) -> int:
        return int(np.searchsorted(bounds, start, side="right")) - 1

    def node(start: int, n: int):
        p = where(start)
        if start + n <= bounds[p + 1]:
            requests[p].append((start - int(bounds[p]), start - int(bounds[p]) + n))
            return ("slice", p, len(requests[p]) - 1)
        if n <= _LEAF:
            pieces = []
            at = start
            while at < start + n:
                q = where(at)
                stop = min(start + n, int(bounds[q + 1]))
                requests[q].append((at - int(bounds[q]), stop - int(bounds[q])))
                pieces.append((q, len(requests[q]) - 1))
                at = stop
            return ("leaf", pieces)
        half = n // 2
        half -= half % 8
        return ("split", node(start, half), node(start + half, n - half))

    if np.dtype(dtype) == np.float64:
        roots = [node(0, total)] if total else []
    else:
        roots = [node(s, min(_CAST_BUFFER, total - s)) for s in range(0, total, _CAST_BUFFER)]
    return roots, requests


def slice_sums(values: np.ndarray, slices: list[tuple[int, int]]) -> list:
    """What partition ``values`` answers to its requests of :func:`mean_plan`: the float64
    sum of each slice longer than a leaf, the slice itself otherwise (leaves that straddle a
    boundary are summed once their pieces meet)."""
    return [values[a:b].copy() if b - a <= _LEAF else float(np.sum(values[a:b], dtype=np.float64))
            for a, b in slices]


def mean_from_plan(roots: list, answers: list[list], total: int) -> float:
    """The mean, bit for bit as numpy's, from the partitions' :func:`slice_sums`."""
    def value(tree) -> float:
        kind = tree[0]
        if kind == "slice":
            got = answers[tree[1]][tree[2]]
            return got if isinstance(got, float) else float(np.sum(got, dtype=np.float64))
        if kind == "leaf":
            joined = np.concatenate([answers[p][i] for p, i in tree[1]])
            return float(np.sum(joined, dtype=np.float64))
        return value(tree[1]) + value(tree[2])

    acc = 0.0
    for root in roots:
        acc += value(root)
    return acc / total


def tie_keys(state: dict, offset: int, n: int) -> np.ndarray:
    """int64[n]: draws ``offset .. offset + n - 1`` of ``rng.integers(0, 1 << 20, nnz)`` made
    by a PCG64 generator in ``state`` (its ``bit_generator.state``)."""
    halves = _halves(state, int(offset), int(n))
    return (halves >> np.uint64(32 - TIE_BITS)).astype(np.int64)


def skip_tie_keys(rng: np.random.Generator, nnz: int) -> None:
    """Advance ``rng`` exactly as ``rng.integers(0, 1 << 20, nnz)`` would."""
    nnz = int(nnz)
    if nnz == 0:
        return
    state = rng.bit_generator.state
    buffered = int(state["has_uint32"])
    fresh = nnz - buffered  # halves taken from new 64-bit outputs
    rng.bit_generator.advance(fresh // 2)
    # An odd count leaves the high half of one more output buffered for the next 32-bit draw.
    high = int(rng.bit_generator.random_raw()) >> 32 if fresh % 2 else 0
    after = rng.bit_generator.state
    after["has_uint32"], after["uinteger"] = int(fresh % 2), high
    rng.bit_generator.state = after


def _halves(state: dict, offset: int, n: int) -> np.ndarray:
    """uint64[n]: 32-bit draws ``offset ..`` of the generator in ``state``: its buffered half
    first (when it has one), then the low and high halves of each new 64-bit output."""
    buffered = int(state["has_uint32"])
    out = np.empty(n, dtype=np.uint64)
    head = max(0, min(buffered - offset, n))
    out[:head] = state["uinteger"]
    fresh_start = offset + head - buffered
    bits = np.random.PCG64()
    bits.state = state
    bits.advance(fresh_start // 2)
    first = fresh_start % 2
    raw = bits.random_raw((first + n - head + 1) // 2).astype(np.uint64)
    halves = np.empty(2 * raw.shape[0], dtype=np.uint64)
    halves[0::2] = raw & np.uint64(0xFFFFFFFF)
    halves[1::2] = raw >> np.uint64(32)
    out[head:] = halves[first:first + n - head]
    return out
