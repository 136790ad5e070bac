"""Backend-agnostic pieces of GRU4Rec training: the session-parallel schedule, the negative
sampling alias table and the parameter set (arrays shared by every backend's epoch kernel)."""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from fastrec._array import array_module
from fastrec.backends._contract import gru_layout


@dataclass(frozen=True)
class SessionSchedule:
    """Session-parallel mini-batches of one epoch (GRU4Rec, Hidasi et al. 2016).

    ``inputs[s, b]`` is the item slot ``b`` reads at step ``s`` and ``targets[s, b]`` the next
    item of the same session; ``reset[s, b]`` is 1 where a new session starts in the slot. The
    epoch ends when a slot runs dry (as GRU4Rec does), so the last few sessions may be cut.
    """

    inputs: np.ndarray
    targets: np.ndarray
    reset: np.ndarray

    @property
    def n_steps(self) -> int:
        return int(self.inputs.shape[0])


def session_parallel_schedule(items: np.ndarray, offsets: np.ndarray, batch_size: int,
                              session_order: np.ndarray | None = None) -> SessionSchedule:
    """Lay sessions into ``batch_size`` slots: each slot takes the next session as soon as its
    current one ends (ties go to the lowest slot).

    items   : I[n_events]   item indices, sessions contiguous and time-ordered inside (numpy
              or CuPy: the schedule's arrays are made where they are)
    offsets : int64[n_sessions + 1]  session s is ``items[offsets[s]:offsets[s+1]]``; sessions
              shorter than 2 events have nothing to predict and are skipped
    session_order : optional permutation of the sessions (default: stored order)
    """
    lengths = np.diff(offsets)
    order = np.arange(lengths.shape[0]) if session_order is None else session_order
    order = order[lengths[order] >= 2]
    pairs = lengths[order] - 1
    slots = [(0, b) for b in range(batch_size)]
    start = np.empty(order.shape[0], np.int64)
    slot = np.empty(order.shape[0], np.int64)
    for k in range(order.shape[0]):
        free_at, b = heapq.heappop(slots)
        start[k], slot[k] = free_at, b
        heapq.heappush(slots, (free_at + int(pairs[k]), b))
    n_steps = min(s[0] for s in slots)
    index_dtype = items.dtype
    xp = array_module(items)  # the schedule is made where the items are
    inputs = xp.zeros((n_steps, batch_size), index_dtype)
    targets = xp.zeros((n_steps, batch_size), index_dtype)
    reset = xp.zeros((n_steps, batch_size), np.uint8)
    owner = np.repeat(np.arange(order.shape[0]), pairs)
    first = np.repeat(np.cumsum(pairs) - pairs, pairs)
    k = np.arange(owner.shape[0]) - first
    step = start[owner] + k
    keep = step < n_steps
    pos = offsets[order][owner] + k
    at = (xp.asarray(step[keep]), xp.asarray(slot[owner][keep]))
    inputs[at] = items[xp.asarray(pos[keep])]
    targets[at] = items[xp.asarray(pos[keep] + 1)]
    begins = start < n_steps
    reset[xp.asarray(start[begins]), xp.asarray(slot[begins])] = 1
    return SessionSchedule(inputs, targets, reset)


def alias_table(weights: np.ndarray, index_dtype=np.int64) -> tuple[np.ndarray, np.ndarray]:
    """Walker/Vose alias table of a discrete distribution (weights >= 0, not all zero):
    ``(prob float64[n], alias I[n])`` for ``rng_alias_draw`` in gru.h."""
    w = np.asarray(weights, dtype=np.float64)
    n = w.shape[0]
    scaled = w * (n / w.sum())
    prob = np.ones(n, np.float64)
    alias = np.arange(n, dtype=index_dtype)
    small = [i for i in range(n) if scaled[i] < 1.0]
    large = [i for i in range(n) if scaled[i] >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        prob[s], alias[s] = scaled[s], g
        scaled[g] = (scaled[g] + scaled[s]) - 1.0
        (small if scaled[g] < 1.0 else large).append(g)
    return prob, alias


@dataclass
class GRU4RecParams:
    """Every trained array of a GRU4Rec model and its optimizer state (s1, s2 per array)."""

    emb: np.ndarray          # T[n_items, D] embedding, or layer-0 input weights [n_items, 3H]
    gru: np.ndarray          # T[P] flat Wx0 (when embedded), Wx_rest, Wh, b
    out: np.ndarray          # T[n_items, H+1] output vectors + bias column
    state: dict[str, np.ndarray]

    @classmethod
    def init(cls, n_items: int, hidden: int, n_layers: int, embedding: int, dtype,
             rng: np.random.Generator) -> GRU4RecParams:
        """GRU4Rec's uniform init in +-sqrt(6 / (fan_in + fan_out)) per matrix; biases 0."""
        H = hidden
        embedded = embedding > 0
        D = embedding if embedded else 3 * H
        layout = gru_layout(n_layers, H, D, embedded)

        def uniform(shape, fan_in, fan_out):
            bound = np.sqrt(6.0 / (fan_in + fan_out))
            return rng.uniform(-bound, bound, shape).astype(dtype)

        emb = uniform((n_items, D), n_items, D)
        gru = np.zeros(layout.size, dtype)
        w = layout.views(gru)
        if embedded:
            w.wx0[...] = uniform(w.wx0.shape, D, 3 * H)
        w.wx_rest[...] = uniform(w.wx_rest.shape, H, 3 * H)
        w.wh[...] = uniform(w.wh.shape, H, 3 * H)
        out = np.zeros((n_items, H + 1), dtype)
        out[:, :H] = uniform((n_items, H), n_items, H)
        state = {f"{name}_{k}": np.zeros_like(arr) for name, arr in
                 (("emb", emb), ("gru", gru), ("out", out)) for k in ("s1", "s2")}
        return cls(emb, gru, out, state)
