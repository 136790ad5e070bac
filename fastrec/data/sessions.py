"""Session (sequence) data for next-item models: the ``Sessions`` container, loaders for the
DIGINETICA and SASRec sequence formats, and the two usual splits (last days as test, last item
of each sequence as test)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fastrec._array import array_module, is_device_array, to_host

log = logging.getLogger("fastrec")

_SESSION_COLUMNS = ("session_id", "session", "sessionid", "user_id", "user", "userid")
_ITEM_COLUMNS = ("item_id", "item", "itemid", "items")
_TIME_COLUMNS = ("timestamp", "time", "ts", "datetime")


def _pick(frame: pd.DataFrame, names, what: str, required: bool = True):
    lower = {str(c).lower(): c for c in frame.columns}
    for name in names:
        if name in lower:
            return lower[name]
    if required:
        raise ValueError(f"no {what} column: expected one of {names}, got {list(frame.columns)}")
    return None


@dataclass(frozen=True)
class Sessions:
    """Events grouped into sessions, time-ordered inside each session.

    items      : int32[n_events] or int64  dense item indices (into ``item_ids``)
    offsets    : int64[n_sessions + 1]     session s is ``items[offsets[s]:offsets[s+1]]``
    item_ids   : ndarray[n_items]          original id of each item index
    session_ids: ndarray[n_sessions]
    start_times: float64[n_sessions] or None  first timestamp of each session
    """

    items: np.ndarray
    offsets: np.ndarray
    item_ids: np.ndarray
    session_ids: np.ndarray
    start_times: np.ndarray | None = None

    @property
    def n_sessions(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @property
    def n_events(self) -> int:
        return int(self.items.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.item_ids.shape[0])

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, item_ids: np.ndarray | None = None,
                   session_col: str | None = None, item_col: str | None = None,
                   time_col: str | None = None, unknown: str = "raise") -> Sessions:
        """Build from a DataFrame of events (session id, item id and, optionally, timestamp).

        Events are sorted by session and timestamp (stable, so ties keep their order); without
        a timestamp column the stored order is taken as time order within each session.
        ``item_ids`` fixes the item index space (e.g. a trained model's); events with items
        outside it raise (``unknown="raise"``) or are dropped (``"drop"``).
        """
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"expected a pandas DataFrame, got {type(frame).__name__}")
        s_col = session_col or _pick(frame, _SESSION_COLUMNS, "session")
        i_col = item_col or _pick(frame, _ITEM_COLUMNS, "item")
        t_col = time_col or _pick(frame, _TIME_COLUMNS, "timestamp", required=False)
        if frame[[s_col, i_col]].isna().any().any():
            raise ValueError("session or item ids contain missing values")
        times = None
        if t_col is not None:
            times = frame[t_col]
            if np.issubdtype(times.dtype, np.datetime64):
                times = times.to_numpy().astype("datetime64[ns]").astype(np.int64) / 1e9
            times = np.asarray(times, dtype=np.float64)
            if not np.all(np.isfinite(times)):
                raise ValueError("timestamps contain NaN or inf")
        sessions = frame[s_col].to_numpy()
        raw_items = frame[i_col].to_numpy()
        if times is not None:
            order = np.lexsort((np.arange(len(frame)), times, sessions))
        else:
            order = np.argsort(sessions, kind="stable")
        sessions, raw_items = sessions[order], raw_items[order]
        times = times[order] if times is not None else None
        if item_ids is None:
            item_ids, items = np.unique(raw_items, return_inverse=True)
        else:
            items = index_of(item_ids, raw_items)
            bad = items < 0
            if bad.any():
                if unknown == "raise":
                    raise ValueError(f"{int(bad.sum())} events have items unseen in training, "
                                     f"e.g. {raw_items[bad][:5].tolist()}")
                log.info("dropped %d events with items unseen in training", int(bad.sum()))
                keep = ~bad
                sessions, items = sessions[keep], items[keep]
                times = times[keep] if times is not None else None
        index_dtype = np.int32 if len(item_ids) < 2**31 - 1 else np.int64
        starts = np.flatnonzero(np.r_[True, sessions[1:] != sessions[:-1]]) if len(sessions) \
            else np.zeros(0, np.int64)
        offsets = np.r_[starts, len(sessions)].astype(np.int64)
        return cls(items.astype(index_dtype), offsets, np.asarray(item_ids),
                   sessions[starts], times[starts] if times is not None else None)

    @classmethod
    def from_arrays(cls, session_ids, item_ids, timestamps=None, /, **kwargs) -> Sessions:
        """Parallel arrays of events; ``kwargs`` (e.g. the ``item_ids`` index of a fitted model,
        ``unknown``) go to :meth:`from_frame`, hence the positional-only arrays. CuPy arrays
        without a fixed item index are grouped on the device (:meth:`_from_device_arrays`)."""
        if kwargs.get("item_ids") is None and is_device_array(item_ids):
            return cls._from_device_arrays(session_ids, item_ids, timestamps)
        data = {"session_id": np.asarray(session_ids), "item_id": np.asarray(item_ids)}
        if timestamps is not None:
            data["timestamp"] = np.asarray(timestamps)
        lengths = {len(v) for v in data.values()}
        if len(lengths) != 1:
            raise ValueError(f"session, item and timestamp arrays differ in length: {lengths}")
        return cls.from_frame(pd.DataFrame(data), **kwargs)

    @classmethod
    def _from_device_arrays(cls, session_ids, raw_items, timestamps) -> Sessions:
        """:meth:`from_frame`'s grouping, run where the arrays are (CuPy): events sorted by
        session id, then time, then stored order; ``items`` stays on the device, the id maps,
        offsets and start times (one entry per session or item) come to the host."""
        xp = array_module(raw_items)
        arrays = [a for a in (session_ids, raw_items, timestamps) if a is not None]
        if len({a.shape[0] for a in arrays}) != 1 or any(a.ndim != 1 for a in arrays):
            raise ValueError("session, item and timestamp arrays must be 1-D of one length")
        n = raw_items.shape[0]
        sessions, session_code = xp.unique(session_ids, return_inverse=True)
        keys = [xp.arange(n, dtype=np.float64), session_code.ravel().astype(np.float64)]
        if timestamps is not None:
            times = timestamps.astype(np.float64)
            if not bool(xp.isfinite(times).all()):
                raise ValueError("timestamps contain NaN or inf")
            keys.insert(1, times)
        order = xp.lexsort(xp.stack(keys))
        code = session_code.ravel()[order]
        item_ids, items = xp.unique(raw_items[order], return_inverse=True)
        starts = xp.flatnonzero(xp.concatenate([xp.ones(min(n, 1), bool), code[1:] != code[:-1]]))
        offsets = np.r_[to_host(starts), n].astype(np.int64)
        index_dtype = np.int32 if item_ids.shape[0] < 2**31 - 1 else np.int64
        return cls(items.ravel().astype(index_dtype), offsets, to_host(item_ids), to_host(sessions),
                   None if timestamps is None else to_host(xp.take(times, order[starts])))

    def subset(self, sessions: np.ndarray) -> Sessions:
        """The listed sessions (indices), in the given order."""
        lengths = self.lengths[sessions]
        starts = self.offsets[sessions]
        pos = np.repeat(starts - np.r_[0, np.cumsum(lengths)[:-1]], lengths) + np.arange(
            lengths.sum())
        return Sessions(self.items[pos], np.r_[0, np.cumsum(lengths)].astype(np.int64),
                        self.item_ids, self.session_ids[sessions],
                        None if self.start_times is None else self.start_times[sessions])


def index_of(ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of each value in ``ids`` (any order); -1 when absent."""
    if len(ids) == 0:
        return np.full(len(values), -1, np.int64)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    pos = np.clip(np.searchsorted(sorted_ids, values), 0, len(ids) - 1)
    return np.where(sorted_ids[pos] == values, order[pos], -1)


# -- loaders ---------------------------------------------------------------------------------------
def load_diginetica(path) -> pd.DataFrame:
    """DIGINETICA item views (``session_id;user_id;item_id;timeframe;eventdate``) as a frame with
    ``session_id, item_id, timestamp``: seconds since the epoch of the event date plus the
    session-relative ``timeframe`` (ms)."""
    path = Path(path)
    if path.is_dir():
        path = path / "sample_train-item-views.csv"
    frame = pd.read_csv(path, sep=";", usecols=["session_id", "item_id", "timeframe",
                                                   "eventdate"])
    day = pd.to_datetime(frame["eventdate"]).to_numpy().astype("datetime64[s]").astype(np.int64)
    return pd.DataFrame({"session_id": frame["session_id"].to_numpy(),
                         "item_id": frame["item_id"].to_numpy(),
                         "timestamp": day + frame["timeframe"].to_numpy() / 1000.0})


def load_sasrec_sequences(path) -> pd.DataFrame:
    """SASRec-preprocessed sequences (``user item`` per line, each user's lines in time order) as
    ``session_id, item_id, timestamp`` with the line number as timestamp."""
    path = Path(path)
    if path.is_dir():
        found = [p for p in sorted(path.glob("*.txt")) if p.name != "PROVENANCE.txt"]
        if not found:
            raise FileNotFoundError(f"no sequence .txt file in {path}")
        path = found[0]
    frame = pd.read_csv(path, sep=" ", header=None, names=["session_id", "item_id"])
    frame["timestamp"] = np.arange(len(frame), dtype=np.float64)
    return frame


# -- splits ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SessionSplit:
    """Train events and test sessions; in each test session the events from position
    ``eval_from`` on are the targets to predict (the earlier ones are context)."""

    train: pd.DataFrame
    test: pd.DataFrame
    eval_from: str  # "second" (every next event) or "last" (only the last event)


def split_last_days(frame: pd.DataFrame, n_days: float = 1.0) -> SessionSplit:
    """GRU4Rec's split: sessions that end in the last ``n_days`` of the data are the test set;
    test events on items absent from training are dropped, then test sessions shorter than 2."""
    t_max = frame.groupby("session_id")["timestamp"].max()
    cut = t_max.max() - 86400.0 * n_days
    test_ids = t_max.index[t_max >= cut]
    is_test = frame["session_id"].isin(test_ids)
    train, test = frame[~is_test], frame[is_test]
    test = test[test["item_id"].isin(train["item_id"].unique())]
    size = test.groupby("session_id")["item_id"].transform("size")
    return SessionSplit(train.reset_index(drop=True), test[size >= 2].reset_index(drop=True),
                        "second")


def split_last_item(frame: pd.DataFrame) -> SessionSplit:
    """Leave-last-out per sequence: training has every event but each sequence's last; the test
    set has the whole sequences of length >= 2 whose last item was seen in training, and only
    that last event is scored."""
    ordered = frame.sort_values(["session_id", "timestamp"], kind="stable")
    last = ordered.groupby("session_id").cumcount(ascending=False) == 0
    size = ordered.groupby("session_id")["item_id"].transform("size")
    train = ordered[~last]
    test = ordered[size >= 2]
    known = set(train["item_id"].unique())
    ok = test[last[size >= 2].to_numpy()].set_index("session_id")["item_id"].isin(known)
    test = test[test["session_id"].isin(ok.index[ok.to_numpy()])]
    return SessionSplit(train.reset_index(drop=True), test.reset_index(drop=True), "last")


# -- synthetic data -------------------------------------------------------------------------------
def synthetic_sessions(n_sessions: int = 500, n_items: int = 50, mean_length: float = 6.0,
                       p_follow: float = 0.8, random_state: int | None = 0) -> pd.DataFrame:
    """Sessions with planted transitions: every item has one fixed successor, taken with
    probability ``p_follow`` (otherwise a uniformly random item), so a model that learns the
    transitions reaches a next-item Recall@20 of about ``p_follow``. Session lengths are
    2 + Poisson(mean_length - 2). Returns ``session_id, item_id, timestamp`` rows."""
    rng = np.random.default_rng(random_state)
    successor = rng.permutation(n_items)
    lengths = 2 + rng.poisson(max(mean_length - 2.0, 0.0), n_sessions)
    sessions, items = [], []
    for s, length in enumerate(lengths):
        item = int(rng.integers(n_items))
        for _ in range(length):
            sessions.append(s)
            items.append(item)
            item = int(successor[item]) if rng.random() < p_follow else int(rng.integers(n_items))
    return pd.DataFrame({"session_id": np.asarray(sessions, np.int64),
                         "item_id": np.asarray(items, np.int64),
                         "timestamp": np.arange(len(items), dtype=np.float64)})
