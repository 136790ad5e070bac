"""Distributed stratified SGD (DSGD, Gemulla et al. 2011) for biased MF on a Dask cluster.

The grid, relabelling, block order and per-epoch stratum schedule are those of the local fit
(:class:`fastrec._algorithms.sgd_schedule.BlockedRatings`), drawn from the same generator in
the same order, so the result equals ``fastrec.MF`` bit for bit for the same seed and
``n_blocks``, at any worker count:

- row block ``r`` (its ratings, user factors and user biases) lives on worker ``r mod W`` for
  the whole fit and never moves: its tables sit in that worker process's memory and the
  epoch tasks update them in place;
- one task per worker (``fastrec-sgd-epochs-1-to-<E>-worker-<i>``; with callbacks, which
  may stop the fit after any epoch, one per worker and epoch, ``fastrec-sgd-epoch-<e>-...``)
  runs all of that worker's blocks of the epochs' strata with fastrec's own ``sgd_epoch``
  kernel (a 1 x 1 schedule per block; a debug log line per block names its epoch and
  stratum): the scheduler is not between strata or epochs. Each worker's share of an
  epoch's loss waits in its mailbox for the client, which asks for it ahead of time (an
  actor call) to show progress and check for divergence epoch by epoch;
- column block ``c``'s tables (item factors and biases) exist once, and are the only data
  that moves between workers: the task that updated them hands them straight to the
  worker of ``c``'s next block, through that worker's mailbox (a Dask actor: one direct
  worker-to-worker call, no scheduler round trip and no copy left behind);
- a block runs once its row's previous block ran and its column block arrived in the
  worker's mailbox (the first such block in schedule order), so every row and column block
  sees its updates in the local order; the critical path between strata is that one call.

A row block's tables exist once, on its worker: a worker that holds row blocks and leaves
the cluster ends the fit with :class:`WorkerLostError` naming it (Dask cannot recompute
them), and the estimator keeps its previous state.
"""

from __future__ import annotations

import asyncio
import logging
import math
import operator
import threading
import time
import uuid
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

import fastrec
from fastrec._algorithms.fit_loop import learning_rate_at
from fastrec._algorithms.sgd_schedule import BlockedRatings
from fastrec._array import aligned_zeros
from fastrec.backends import BackendUnavailable, get_backend
from fastrec.dask._data import (
    WorkerLostError,
    check_workers,
    get_client,
    global_index,
    load_ratings,
    submit,
    wait_for,
)
from fastrec.dask._estimator import ClusterEstimator
from fastrec.dask._exact import mean_from_plan, mean_plan, skip_tie_keys, slice_sums, tie_keys
from fastrec.exceptions import DivergenceError

log = logging.getLogger("fastrec")

# The fitted attributes to_local() sets on a fastrec.MF (kept stable by the local estimator).
FITTED = ("user_factors_", "item_factors_", "user_bias_", "item_bias_", "global_mean_",
          "user_ids_", "item_ids_", "n_users_", "n_items_", "loss_curve_", "validation_curve_",
          "n_epochs_", "backend_", "fit_time_", "timings_")


class MF(ClusterEstimator):
    """Biased MF trained by distributed stratified SGD on a Dask cluster.

    Parameters: those of :class:`fastrec.MF` (same meanings and defaults), plus ``client``
    (a ``distributed.Client``; None: the current default client). ``n_threads`` is the
    kernel's thread count per block (None: 1, since a worker runs one block per thread).
    ``n_blocks`` is the grid side G (None: the cluster's total thread count, at least 1 and
    capped at the numbers of users and items, as locally). Row block ``r`` lives on worker
    ``r mod W`` (workers sorted by address), so a G that is a multiple of the worker count
    balances the load. ``early_stopping=True`` raises ValueError: it stops on a held-out split,
    and this estimator takes no ``validation_data`` and holds no ratings out, so
    ``validation_fraction``, ``n_iter_no_change`` and ``tol`` are accepted (the same
    parameters as ``fastrec.MF``, e.g. for ``clone``) and unused; set ``n_epochs`` (chosen
    locally on a sample with early stopping, say), or stop from a ``callbacks`` entry.

    Fitted attributes (numpy, on the client, O((users + items) k)): those of
    :class:`fastrec.MF` listed in ``FITTED``; ``n_blocks_``, ``epoch_times_`` (each epoch's
    seconds on the cluster: the workers' mean time from the end of their previous epoch, or
    the start of their task, to the end of this one; they wait for each other's column
    blocks, so their totals agree, while any one epoch's times differ by the jitter of
    when each sees the epoch end).
    :meth:`to_local` returns a fitted ``fastrec.MF``.
    """

    local = fastrec.MF

    _PENALTIES = fastrec.MF._PENALTIES  # read by the local rules below

    def _validate_params(self) -> np.dtype:
        # the local estimator's rules (they read only parameters), then the cluster's own
        dtype = fastrec.MF._validate_params(self)
        self._check_cluster_params("set n_epochs instead")
        return dtype

    def fit(self, X, columns=None):
        """Fit on ratings held by the cluster.

        X : ``dask.dataframe.DataFrame`` with user, item and rating columns (found by the names
            the local loaders know, or given as ``columns=(user, item, rating)``), a Dask array
            [nnz, 3] of (user, item, rating) triples, or a tuple of three 1-D Dask arrays.
            Partition order is rating order: the fit equals ``fastrec.MF().fit`` on the
            concatenated partitions. Ids are mapped by the cluster; ratings stay on it.
            Repeated (user, item) pairs, in one partition or several, follow ``duplicates``
            as locally (checked, or merged, on the cluster before any epoch).

        The layout is the local one's sort (block, user, 20 random bits, input position), so
        the equality with the local fit holds for any data. A fit that raises (bad input,
        :class:`WorkerLostError`, ``DivergenceError``) leaves the estimator as it was.
        Returns self.
        """
        start = time.perf_counter()
        dtype = self._validate_params()
        client = get_client(self.client)
        rng = np.random.default_rng(self.random_state)
        if not isinstance(rng.bit_generator, np.random.PCG64):
            raise ValueError("random_state must be an int, None or a PCG64 Generator")
        workers = sorted(client.nthreads())
        if not workers:
            raise ValueError("the Dask cluster has no workers")
        data = load_ratings(client, X, dtype, columns, self.duplicates)
        n_users, n_items = data.shape
        k = int(self.n_factors)
        g = min(self.n_blocks or max(1, sum(client.nthreads().values())), n_users, n_items)
        owners = [workers[r % len(workers)] for r in range(g)]

        # The local fit's draws, in its order: factors, relabellings, tie keys, schedules.
        state = {
            "user_factors_": rng.normal(0.0, self.init_std, (n_users, k)).astype(dtype),
            "item_factors_": rng.normal(0.0, self.init_std, (n_items, k)).astype(dtype),
            "user_bias_": np.zeros(n_users, dtype),
            "item_bias_": np.zeros(n_items, dtype),
        }
        index_dtype = np.int32 if max(n_users, n_items) < np.iinfo(np.int32).max else np.int64
        empty = np.empty(0, index_dtype)
        layout = BlockedRatings.build(empty, empty, np.empty(0, dtype), n_users, n_items, g, rng)
        tie_state = rng.bit_generator.state
        skip_tie_keys(rng, data.nnz)
        mean = self._global_mean(client, data, dtype)

        maps = client.scatter([data.user_ids, data.item_ids, layout.user_rows,
                               layout.item_rows], broadcast=True, hash=False)
        offsets = np.concatenate([[0], np.cumsum(data.lengths)])
        pieces = [submit(client, _row_block_pieces, part, *maps, index_dtype, g, n_users,
                         n_items, tie_state, int(offsets[p]), name="fastrec-map-ids")
                  for p, part in enumerate(data.parts)]
        row_blocks = [
            submit(client, _build_row_block, r, g, n_users, n_items, self.backend, (k, dtype),
                   *[submit(client, operator.itemgetter(r), piece, name="fastrec-shuffle")
                     for piece in pieces], name="fastrec-row-block", workers=[owners[r]],
                   allow_other_workers=False)
            for r in range(g)]
        infos = wait_for(client, [submit(client, operator.itemgetter(1), rb,
                                         name="fastrec-row-block-info") for rb in row_blocks],
                         owners, "the data shuffle")
        del pieces
        data.parts = []  # the row blocks hold the ratings now

        working = layout.to_working_order(state, infos[0]["width"])
        backend = infos[0]["backend"]
        fit_id = uuid.uuid4().hex
        try:
            tables = self._train(client, fit_id, layout, rng, working, row_blocks, owners,
                                 (float(mean), float(self.reg), float(self.reg_bias),
                                  bool(self.biased), int(self.n_threads or 1)), backend,
                                 data.nnz)
        finally:
            client.run(_forget, fit_id, on_error="ignore")
        del working, state
        curve, epoch_times = tables.pop(), tables.pop()
        working = {
            "user_factors_": np.concatenate([t[0] for t in tables[:g]]),
            "user_bias_": np.concatenate([t[1] for t in tables[:g]]),
            "item_factors_": np.concatenate([t[0] for t in tables[g:]]),
            "item_bias_": np.concatenate([t[1] for t in tables[g:]]),
        }
        self.__dict__.update(layout.to_id_order(working, k))
        self.user_ids_, self.item_ids_ = data.user_ids, data.item_ids
        self.n_users_, self.n_items_ = n_users, n_items
        self.loss_curve_, self.validation_curve_ = curve, []
        self.n_epochs_ = len(curve)
        self.n_blocks_, self.epoch_times_ = g, epoch_times
        self.global_mean_ = mean
        self.backend_ = backend
        self._pattern = (client, row_blocks, owners, layout.user_rows, layout.item_rows)
        self.fit_time_ = time.perf_counter() - start
        self.timings_ = {"prepare": self.fit_time_ - sum(epoch_times), "train": sum(epoch_times)}
        return self

    def _train(self, client, fit_id, layout, rng, working, row_blocks, owners, hyper, backend,
               nnz) -> list:
        """Place the tables, run the epochs and collect the tables: returns [user tables of
        each row block (factors, biases)..., item tables of each column block..., epoch
        times, loss curve]."""
        g = layout.n_blocks
        rows = _bounds(working["user_factors_"].shape[0], g)
        cols = _bounds(working["item_factors_"].shape[0], g)
        workers = list(dict.fromkeys(owners))
        boxes = {w: submit(client, _Mailbox, fit_id, name="fastrec-mailbox", workers=[w],
                           allow_other_workers=False, actor=True) for w in workers}
        wait_for(client, list(boxes.values()), owners, "starting the mailboxes")
        schedule = layout.epoch_schedule(rng)
        # Column block c starts on the worker of its block in the first stratum.
        holder = {}
        for b in range(g):
            r, c = divmod(int(schedule[0, b]), g)
            holder[c] = owners[r]
        # One scatter per worker: each round trip costs more than these tables take to send.
        placed = []
        for owner in workers:
            mine = [r for r in range(g) if owners[r] == owner]
            theirs = [c for c in range(g) if holder[c] == owner]
            sent = client.scatter(
                [(working["user_factors_"][rows[r]:rows[r + 1]],
                  working["user_bias_"][rows[r]:rows[r + 1]]) for r in mine]
                + [(working["item_factors_"][cols[c]:cols[c + 1]],
                    working["item_bias_"][cols[c]:cols[c + 1]]) for c in theirs],
                workers=[owner], hash=False)
            placed.append(submit(
                client, _place, fit_id, {w: boxes[w].key for w in workers},
                dict(zip(mine, [row_blocks[r] for r in mine], strict=True)),
                dict(zip(mine, sent[:len(mine)], strict=True)),
                dict(zip(theirs, sent[len(mine):], strict=True)), backend,
                name="fastrec-place", workers=[owner], allow_other_workers=False))
        wait_for(client, placed, owners, "placing the tables")
        del placed
        actors = {w: box.result() for w, box in boxes.items()}
        curve, epoch_times, steps = self._run_epochs(client, layout, rng, schedule, fit_id,
                                                     actors, holder, owners, hyper, nnz)
        parts = wait_for(client, [
            submit(client, _collect, fit_id, [r for r in range(g) if owners[r] == w],
                   [c for c in range(g) if holder[c] == w], steps, name="fastrec-collect",
                   workers=[w], allow_other_workers=False) for w in workers],
            owners, "collection")
        user_tables, item_tables = {}, {}
        for mine, theirs in parts:
            user_tables.update(mine)
            item_tables.update(theirs)
        return [*(user_tables[r] for r in range(g)), *(item_tables[c] for c in range(g)),
                epoch_times, curve]

    def _lr_bias(self) -> float:
        return float(self.learning_rate if self.lr_bias is None else self.lr_bias)

    def _global_mean(self, client, data, dtype) -> float:
        """numpy's float64 mean of the concatenated ratings, bit for bit (see ``_exact``)."""
        if not self.biased:
            return 0.0
        roots, requests = mean_plan(data.lengths, dtype)
        answers = client.gather([
            submit(client, _slice_sums, part, req, name="fastrec-mean")
            for part, req in zip(data.parts, requests, strict=True)])
        return mean_from_plan(roots, answers, data.nnz)

    def _run_epochs(self, client, layout, rng, schedule, fit, actors, holder, owners, hyper,
                    nnz):
        """Run the epochs and check each epoch's loss as the local loop does; returns the
        training RMSE curve, the epoch times and the number of strata run. ``schedule`` is
        the first epoch's; ``actors``: each worker's mailbox (an Actor handle); ``holder``
        (column block -> worker holding it) is kept up to date. Raises DivergenceError (the
        estimator is left as it was: the fit is a transaction).

        Without callbacks one task per worker (``fastrec-sgd-epochs-1-to-<E>-worker-<i>``)
        runs all the epochs, so neither the scheduler nor the client sits between epochs;
        the client asks each worker's mailbox for its shares of the epochs' losses (an actor
        call answered once one is there, with all that came since the last call; nothing is
        left behind on the scheduler, unlike Dask events), at most every ``_PROGRESS``
        seconds: those calls cost the host CPU time, and the shares drive the progress bar
        and the divergence check, which need no more. The tasks' results repeat them all
        (complete even if an answer came late). A callback may stop the fit after any
        epoch, and the row blocks are updated in place, so with callbacks each epoch is one
        task per worker (``fastrec-sgd-epoch-<e>-worker-<i>``) submitted after the previous
        epoch's check."""
        curve: list[float] = []
        epoch_times: list[float] = []
        lowest = math.inf
        callbacks = list(self.callbacks or ())
        epochs = int(self.n_epochs)
        span = 1 if callbacks else epochs
        workers = list(dict.fromkeys(owners))
        shares: dict[int, dict] = {}  # epoch -> {worker index: its share (see _sgd_epochs)}
        # worker -> [its mailbox's answer to come (an ActorFuture) or None, when it was asked]
        asked: dict[str, list] = {}
        with tqdm(total=epochs, disable=not self.verbose, desc="fastrec.dask.MF",
                  unit="epoch", leave=False) as bar:
            first = done = 0  # first epoch of the span; epochs checked
            while done < epochs:
                last = min(first + span, epochs)
                plans = []
                for epoch in range(first, last):
                    # The next epoch's first stratum says where this one's last hands
                    # its column blocks (the local fit draws the schedules in this order).
                    following = layout.epoch_schedule(rng) if epoch + 1 < epochs else None
                    plans.append((epoch, self._plan_epoch(schedule, following, epoch,
                                                          holder, owners)))
                    schedule = following
                epochs_name = (f"epoch-{first + 1}" if last == first + 1
                               else f"epochs-{first + 1}-to-{last}")
                tasks = [submit(client, _sgd_epochs, fit, i,
                                [(epoch, *plan[w]) for epoch, plan in plans], hyper,
                                name=f"fastrec-sgd-{epochs_name}-worker-{i}",
                                workers=[w], allow_other_workers=False)
                         for i, w in enumerate(workers)]
                while done < last:
                    if len(shares.get(done, ())) < len(workers):
                        what = f"epoch {done + 1}"
                        if span == 1:
                            for result in wait_for(client, tasks, owners, what):
                                for share in result:
                                    _file(shares, share)
                        else:
                            _receive_shares(client, actors, asked, tasks, shares, owners,
                                            what)
                        continue
                    epoch_shares = shares.pop(done)
                    train_rmse = self._check_epoch(done, epoch_shares, nnz, lowest)
                    lowest = min(lowest, train_rmse)
                    curve.append(train_rmse)
                    epoch_times.append(float(np.mean([share["seconds"]
                                                      for share in epoch_shares.values()])))
                    done += 1
                    if self.verbose:
                        log.info("epoch %d: train RMSE %.4f", done, train_rmse)
                    bar.set_postfix_str(f"train RMSE {train_rmse:.4f}")
                    bar.update(1)
                    stop = False
                    for callback in callbacks:
                        stop = bool(callback(done, {"loss": train_rmse})) or stop
                    if stop:
                        return curve, epoch_times, done * layout.n_blocks
                first = last
        return curve, epoch_times, done * layout.n_blocks

    def _check_epoch(self, epoch, shares, nnz, lowest) -> float:
        """Epoch ``epoch``'s training RMSE from the workers' ``shares`` (SSEs summed in
        schedule order, as the local kernel sums them); raises DivergenceError as the local
        loop does (a non-finite loss or table, or a loss ten times the lowest so far)."""
        tickets = np.zeros(sum(len(share["sses"]) for share in shares.values()))
        for share in shares.values():
            for ticket, sse in share["sses"]:
                tickets[ticket] = sse
        sse = float(np.sum(tickets))
        finite = all(share["finite"] for share in shares.values())
        train_rmse = math.sqrt(sse / nnz) if math.isfinite(sse) else math.inf
        exploded = train_rmse > 10.0 * lowest and lowest > 0
        if not math.isfinite(train_rmse) or exploded or not finite:
            raise DivergenceError(
                f"SGD diverged in epoch {epoch + 1} (training RMSE {train_rmse:.3g}): "
                f"learning_rate={self.learning_rate} (lr_bias={self._lr_bias()}) is "
                "too large for this data; lower it.")
        return train_rmse

    def _plan_epoch(self, schedule, following, epoch, holder, owners) -> dict:
        """Each worker's part of epoch ``epoch``: ``{worker: (lr, lr_bias, blocks)}`` with
        blocks (r, c, step, destination, ticket, last) in schedule order (see ``_sgd_epoch``).
        ``following`` is the next epoch's schedule (None after the last epoch); ``holder``
        is updated to where each column block ends the epoch."""
        g = schedule.shape[0]
        lr = learning_rate_at(self.lr_schedule, self.learning_rate, self.lr_decay, epoch)
        lr_b = learning_rate_at(self.lr_schedule, self._lr_bias(), self.lr_decay, epoch)
        blocks = {owner: [] for owner in dict.fromkeys(owners)}
        for s in range(g):
            after = schedule[s + 1] if s + 1 < g else (
                following[0] if following is not None else None)
            next_owner = {}  # column block -> worker of its next block
            if after is not None:
                for block in after:
                    r, c = divmod(int(block), g)
                    next_owner[c] = owners[r]
            for b in range(g):
                r, c = divmod(int(schedule[s, b]), g)
                destination = next_owner.get(c, owners[r])
                blocks[owners[r]].append((r, c, epoch * g + s, destination, s * g + b,
                                          s == g - 1))
                holder[c] = destination
        return {owner: (lr, lr_b, mine) for owner, mine in blocks.items()}

    def to_local(self, include_seen: bool = True):
        """A fitted :class:`fastrec.MF` with this model's parameters and fitted attributes
        (``FITTED``). ``include_seen`` also gathers the (user, item) pattern of the training
        ratings (O(nnz) indices, no ratings) as ``seen_``, which ``recommend`` uses to skip
        seen items; without it ``seen_`` is None."""
        return self._to_local(FITTED, include_seen)

    def _seen_pattern(self) -> sp.csr_matrix:
        client, rows, owners, user_rows, item_rows = self._pattern
        g = len(rows)
        inverse = client.scatter([np.argsort(user_rows), np.argsort(item_rows)],
                                 broadcast=True, hash=False)
        parts = wait_for(client, [
            submit(client, _pattern, rb, r, g, self.n_users_, self.n_items_, *inverse,
                   name="fastrec-seen") for r, rb in enumerate(rows)], owners, "to_local")
        users = np.concatenate([p[0] for p in parts])
        items = np.concatenate([p[1] for p in parts])
        seen = sp.csr_matrix((np.ones(users.shape[0], np.int8), (users, items)),
                             shape=(self.n_users_, self.n_items_))
        seen.sum_duplicates()
        seen.data[:] = 1
        return seen


def _bounds(n: int, g: int) -> np.ndarray:
    """int64[g + 1]: block b of the layout holds working rows ``bounds[b]:bounds[b + 1]``
    (rows ``u`` with ``u * g // n == b``)."""
    return (np.arange(g + 1, dtype=np.int64) * n + g - 1) // g


# -- tasks (run on the workers) ------------------------------------------------------------------
def _slice_sums(data, slices):
    return slice_sums(data.values, slices)


def _row_block_pieces(data, user_ids, item_ids, user_rows, item_rows, index_dtype, g, n_users,
                      n_items, tie_state, offset):
    """A partition's ratings in working order with their tie keys, split by row block (input
    order kept within each piece): a list of g tuples (users, items, ratings, keys)."""
    users, items = global_index(data, user_ids, item_ids)
    users = user_rows[users].astype(index_dtype)
    items = item_rows[items].astype(index_dtype)
    keys = tie_keys(tie_state, offset, data.nnz)
    row_block = users.astype(np.int64) * g // n_users
    order = np.argsort(row_block, kind="stable")
    cuts = np.searchsorted(row_block[order], np.arange(g + 1))
    return [tuple(a[order[cuts[r]:cuts[r + 1]]]
                  for a in (users, items, data.values, keys)) for r in range(g)]


def _build_row_block(r, g, n_users, n_items, backend, rank, *pieces):
    """Row block ``r`` laid out as ``BlockedRatings.build`` lays out the whole matrix: sorted by
    (block, user, tie key, input position), each block's two halves interleaved. Returns
    ``(arrays, info)``:
    arrays = (users - first row, items - first column of the block, ratings, ptr[g + 1]) with
    column block c at ``ptr[c]:ptr[c + 1]``; info = {"counts", "backend", "width"}
    (the worker's backend and the row width its kernel wants for ``rank = (k, dtype)``)."""
    users, items, ratings, keys = (np.concatenate(a)
                                            for a in zip(*pieces, strict=True))
    users64, items64 = users.astype(np.int64), items.astype(np.int64)
    col_block = items64 * g // n_items
    block = r * g + col_block
    by_user = ((block * n_users + users64) << 20) | keys
    order = np.argsort(by_user, kind="stable")  # pieces arrive in input order
    counts = np.bincount(col_block, minlength=g)
    ptr = np.zeros(g + 1, np.int64)
    np.cumsum(counts, out=ptr[1:])
    sorted_col = col_block[order]
    start = ptr[sorted_col]
    position = np.arange(order.shape[0]) - start
    half = (counts[sorted_col] + 1) // 2
    slot = np.where(position < half, 2 * position, 2 * (position - half) + 1)
    interleaved = np.empty_like(order)
    interleaved[start + slot] = order
    order = interleaved
    first_row = int(_bounds(n_users, g)[r])
    first_col = _bounds(n_items, g)[col_block[order]]
    arrays = (np.ascontiguousarray((users[order] - first_row).astype(users.dtype)),
              np.ascontiguousarray((items64[order] - first_col).astype(items.dtype)),
              np.ascontiguousarray(ratings[order]), ptr)
    kernels = _worker_backend(backend)
    return arrays, {"counts": counts, "backend": kernels.name,
                    "width": kernels.row_width("sgd", *rank)}


def _worker_backend(name: str, require: tuple[str, ...] = ("sgd_epoch",)):
    """The worker's own CPU backend with the ``require`` kernels (``auto``: its fastest CPU
    one, probed in order so that a worker with Cython never imports CuPy or Numba; the CUDA
    kernels take device arrays, which these tasks do not hold)."""
    if name == "auto":
        for candidate in ("cython", "numba"):
            try:
                return get_backend(candidate, require)
            except BackendUnavailable:
                continue
        name = "numpy"
    return get_backend(name, require)


def _aligned_copy(table: np.ndarray) -> np.ndarray:
    out = aligned_zeros(table.shape, table.dtype)
    out[...] = table
    return out


# Row blocks' tables of the fits running on this worker process, by (fit, row block). They
# live outside Dask's store because the epoch tasks update them in place: Dask may spill what
# it stores to disk at any time, even while a task uses it, and a copy read back would lose the
# updates made meanwhile. Dask's keys hold the small RowBlock handles.
_RESIDENT: dict[tuple[str, int], dict] = {}
# This worker process's mailbox of each fit running on it (see _Mailbox).
_MAILBOXES: dict[str, _Mailbox] = {}
# Bytes of column tables this worker process has received from other workers, all fits.
_RECEIVED = {"bytes": 0}
_POLL = 0.5  # seconds between a waiting epoch task's checks that its fit is still running
_PROGRESS = 0.2  # seconds between the client's calls for a worker's shares of the losses


def received_column_bytes() -> int:
    """Bytes of column blocks (item factors and biases) this worker process has received from
    other workers so far, over all fits (run it with ``client.run``)."""
    return _RECEIVED["bytes"]


def _lost(what: str) -> WorkerLostError:
    from distributed import get_worker

    return WorkerLostError(
        f"worker {get_worker().address} lost {what} of this fit (it restarted); the fit was "
        "abandoned and the estimator keeps its previous state. Fit again.")


@dataclass(frozen=True)
class RowBlock:
    """Handle of row block ``r`` of fit ``fit`` on its worker (see ``_RESIDENT``): ``spans[c]``
    the kernel's first five arguments for block (r, c) (its ratings in layout order as views:
    users - first row, items - first column of block c, ratings; a one-block grid), made
    once per fit; its user factors (aligned rows of the kernel's width) and biases, which
    the epoch tasks update in place; ``kernel``; ``step`` (how many of its blocks ran: the
    fit's stratum counter)."""

    fit: str
    r: int

    def tables(self) -> dict:
        try:
            return _RESIDENT[self.fit, self.r]
        except KeyError:
            raise _lost(f"row block {self.r}") from None


class _Mailbox:
    """A worker's column blocks of one fit (a Dask actor, one per worker and fit), and its
    shares of the epochs' losses until the client asks for them (``losses``). The epoch task
    takes each block's column block from its worker's mailbox and hands it on to the mailbox
    of the worker of that column's next block: its own (kept in place) or another's,
    through ``put``, a direct call between the two workers. Entries are ``c -> (step,
    factors, biases)``: column block c is next used in stratum ``step`` of the fit (epoch *
    G + stratum)."""

    def __init__(self, fit: str):
        self.fit = fit
        self.changed = threading.Condition()
        self.columns: dict[int, tuple] = {}
        self.peers: dict = {}  # worker address -> its mailbox (an Actor handle)
        # c -> the aligned factor table column block c had when it last left this worker: it
        # comes back in a message buffer, and is copied into this one rather than a new one
        # (it left before it can come back, so its message was sent by then)
        self.spare: dict[int, np.ndarray] = {}
        self.shares: list[dict] = []  # this worker's shares of epochs' losses, not yet asked for
        self.reported: asyncio.Event | None = None  # set when a share comes while asked
        self.aborted = False
        _MAILBOXES[fit] = self

    async def put(self, c: int, step: int, factors: np.ndarray, bias: np.ndarray) -> None:
        """Receive column block ``c`` from another worker (runs on the event loop)."""
        with self.changed:
            _RECEIVED["bytes"] += factors.nbytes + bias.nbytes
            self.columns[c] = (step, factors, bias)
            self.changed.notify_all()

    async def losses(self) -> list | None:
        """This worker's shares of the epochs' losses that ran since the client last asked
        (waits for one; None if the fit was abandoned first). Runs on the event loop."""
        if not self.shares and not self.aborted:
            self.reported = asyncio.Event()
            await self.reported.wait()
        shares, self.shares = self.shares, []
        return None if self.aborted else shares

    def report(self, share: dict) -> None:
        """File this worker's share of an epoch's loss (from the task's thread)."""
        from distributed import get_worker

        get_worker().loop.add_callback(self._reported, share)

    def _reported(self, share: dict) -> None:
        self.shares.append(share)
        if self.reported is not None:
            self.reported.set()

    def keep(self, c: int, step: int, factors: np.ndarray, bias: np.ndarray) -> None:
        with self.changed:
            self.columns[c] = (step, factors, bias)
            self.changed.notify_all()

    def send(self, address: str, c: int, step: int, factors, bias) -> None:
        """Hand column block ``c`` to the worker at ``address`` for stratum ``step`` (without
        waiting: a lost worker is the client's to report)."""
        from distributed import get_worker

        if address == get_worker().address:
            self.keep(c, step, factors, bias)
        else:
            self.peers[address].put(c, step, factors, bias)
            self.spare[c] = factors

    def wait(self, ready, what: str) -> None:
        """Block until ``ready()`` (checked under the lock) or the fit is abandoned: the client
        ended it (``_forget``) or Dask cancelled the waiting task."""
        with self.changed:
            while self.aborted or not ready():
                if self.aborted:  # checked first: a task that never waits still stops here
                    raise RuntimeError(f"fit {self.fit} was abandoned before {what}")
                if not self.changed.wait(_POLL) and _cancelled():
                    raise RuntimeError(f"cancelled while waiting for {what}")

    def next_block(self, blocks: list, rows: dict) -> tuple:
        """The first of ``blocks`` ((r, c, step, ...) tuples) that can run: row block r
        (``rows[r]``, its tables) ran its blocks before ``step`` and column block c is here
        for ``step``. Waits for one; removes it from ``blocks``."""
        found = []

        def ready():
            for block in blocks:
                r, c, step = block[:3]
                if rows[r]["step"] == step and self.columns.get(c, (None,))[0] == step:
                    found.append(block)
                    return True
            return False

        r, c, step = blocks[0][:3]
        self.wait(ready, f"column block {c} in stratum {step}")
        blocks.remove(found[0])
        return found[0]

    def take(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        """Column block c's tables, writable and aligned (once ``next_block`` said it is
        here)."""
        with self.changed:
            _, factors, bias = self.columns.pop(c)
        if factors.ctypes.data % 64 or not factors.flags.writeable:  # in a message buffer
            spare = self.spare.pop(c, None)
            if spare is None or spare.shape != factors.shape or spare.dtype != factors.dtype:
                spare = aligned_zeros(factors.shape, factors.dtype)
            spare[...] = factors
            factors = spare
        if not bias.flags.writeable:
            bias = bias.copy()
        return factors, bias

    def advance(self, row: dict, step: int) -> None:
        with self.changed:
            row["step"] = step
            self.changed.notify_all()


def _cancelled() -> bool:
    """Whether Dask cancelled the task running in this thread (its client released it)."""
    from distributed import get_worker
    from distributed.worker import thread_state

    task = get_worker().state.tasks.get(getattr(thread_state, "key", None))
    return task is not None and task.state == "cancelled"


def _mailbox(fit: str) -> _Mailbox:
    try:
        return _MAILBOXES[fit]
    except KeyError:
        raise _lost("its column blocks") from None


def _place(fit, mailboxes, row_blocks, row_tables, column_tables, backend):
    """Set up this worker for fit ``fit``: its row blocks (ratings ``row_blocks[r]`` and
    initial user tables ``row_tables[r]``) in ``_RESIDENT``, the column blocks it starts
    with (``column_tables[c]``) in its mailbox, and handles on the other workers'
    mailboxes (``mailboxes``: address -> actor key)."""
    from distributed import Actor, get_worker

    box = _MAILBOXES[fit]
    here = get_worker().address
    box.peers = {address: Actor(_Mailbox, address, key)
                 for address, key in mailboxes.items() if address != here}
    kernel = _worker_backend(backend).sgd_epoch
    for r, ((users, items, ratings, ptr), _) in row_blocks.items():
        factors, bias = row_tables[r]
        one = np.zeros((1, 1), np.int64)  # a one-block schedule
        spans = [(users[a:b], items[a:b], ratings[a:b], np.array([0, b - a], np.int64), one)
                 for a, b in zip(ptr[:-1].tolist(), ptr[1:].tolist(), strict=True)]
        _RESIDENT[fit, r] = {"spans": spans, "user_factors": _aligned_copy(factors),
                             "user_bias": bias.copy(), "kernel": kernel, "step": 0}
    for c, (factors, bias) in column_tables.items():
        box.keep(c, 0, _aligned_copy(factors), bias.copy())


def _forget(fit):
    """Drop this worker's tables of ``fit`` and release its epoch tasks still waiting (run on
    every worker when a fit ends)."""
    for key in [key for key in _RESIDENT if key[0] == fit]:
        del _RESIDENT[key]
    box = _MAILBOXES.pop(fit, None)
    if box is not None:
        with box.changed:
            box.aborted = True
            box.columns.clear()
            box.changed.notify_all()
        if box.reported is not None:  # answer the client's pending call
            box.reported.set()


def _sgd_epochs(fit, index, epochs, hyper):
    """Worker ``index``'s part of a run of epochs of fit ``fit``: ``epochs`` lists (epoch, lr,
    lr_bias, blocks) in order (see ``_sgd_epoch``). After each epoch, hands its share of the
    epoch's loss to its mailbox (for the client's ``losses`` calls); returns them all: a list
    of ``{"epoch", "worker", "sses": (ticket, SSE) pairs, "finite", "seconds"}`` (from the
    end of the previous epoch, or the task's start, to the end of this one)."""
    box = _mailbox(fit)
    shares = []
    mark = time.perf_counter()
    for epoch, lr, lr_b, blocks in epochs:
        if _cancelled():  # the client left (a task whose blocks never wait runs on otherwise)
            raise RuntimeError(f"cancelled before epoch {epoch + 1}")
        sses, finite = _sgd_epoch(fit, blocks, epoch, lr, lr_b, hyper)
        now = time.perf_counter()
        seconds, mark = now - mark, now
        shares.append({"epoch": epoch, "worker": index, "sses": sses, "finite": finite,
                       "seconds": seconds})
        box.report(shares[-1])
    return shares


def _receive_shares(client, actors, asked, tasks, shares, owners, what) -> None:
    """File in ``shares`` the epochs' loss shares the workers' mailboxes (``actors``) have
    answered: ``asked`` holds each worker's call to come and when it was made; a worker
    whose call was answered is asked again ``_PROGRESS`` seconds after the previous call.
    Waits a little for an answer; when none comes, files the results of the ``tasks`` that
    ended (raising their error, if any) and checks that no worker of ``owners`` left
    (WorkerLostError naming it)."""
    for worker, actor in actors.items():
        call = asked.setdefault(worker, [None, -math.inf])
        if call[0] is None:
            time.sleep(max(0.0, call[1] + _PROGRESS - time.monotonic()))
            try:
                call[:] = [actor.losses(), time.monotonic()]
            except Exception as exc:  # its worker is gone
                check_workers(client, owners, what, cause=exc)
                raise
    for worker in actors:
        try:
            answered = asked[worker][0].result(timeout=0.5)
        except TimeoutError:
            for result in wait_for(client, [task for task in tasks if task.done()], owners,
                                   what):
                for share in result:
                    _file(shares, share)
            check_workers(client, owners, what)
            return
        except Exception as exc:
            check_workers(client, owners, what, cause=exc)
            raise
        asked[worker][0] = None
        for share in answered or ():  # None: the fit was abandoned (see _forget)
            _file(shares, share)


def _file(shares: dict, share: dict) -> None:
    shares.setdefault(share["epoch"], {})[share["worker"]] = share


def _sgd_epoch(fit, blocks, epoch, lr, lr_b, hyper):
    """This worker's blocks of one epoch of fit ``fit``: ``blocks`` lists (row block r, column
    block c, stratum ``step`` = epoch * G + stratum, ``destination``: the worker of c's next
    block, ``ticket``: the block's place in the epoch's schedule, ``last``: in the epoch's
    last stratum) in schedule order. Each block runs once its row's previous block ran and
    column block c arrived (the first such in schedule order), so every row and column block
    sees its updates in the local order; the column block then goes on to ``destination``.
    Returns this worker's share of the epoch's loss: the blocks' (ticket, SSE) pairs, and
    whether the tables the last stratum's blocks updated are finite."""
    mean, reg, reg_b, biased, n_threads = hyper
    box = _mailbox(fit)
    rows = {r: RowBlock(fit, r).tables() for r in dict.fromkeys(block[0] for block in blocks)}
    pending = list(blocks)
    sses, finite = [], True
    while pending:
        r, c, step, destination, ticket, last = box.next_block(pending, rows)
        state = rows[r]
        item_factors, item_bias = box.take(c)
        start = time.perf_counter()
        users, items, ratings, ptr, order = state["spans"][c]
        sse = state["kernel"](users, items, ratings, ptr, order, state["user_factors"],
                              item_factors, state["user_bias"], item_bias, mean, lr, lr_b,
                              reg, reg_b, biased, n_threads) if users.shape[0] else 0.0
        log.debug("fit %s epoch %d stratum %d: block (%d, %d), %d ratings, %.1f ms", fit,
                  epoch + 1, step % len(state["spans"]), r, c, users.shape[0],
                  (time.perf_counter() - start) * 1e3)
        sses.append((ticket, sse))
        if last:
            finite = finite and all(bool(np.isfinite(t).all()) for t in (
                state["user_factors"], state["user_bias"], item_factors, item_bias))
        box.send(destination, c, step + 1, item_factors, item_bias)
        box.advance(state, step + 1)
    return sses, finite


def _collect(fit, rows, columns, steps):
    """This worker's tables after ``steps`` strata: ``({r: (user factors, biases)}, {c: (item
    factors, biases)})`` for its row blocks ``rows`` and the column blocks ``columns`` it
    holds (waiting for those still on their way)."""
    box = _mailbox(fit)
    states = {r: RowBlock(fit, r).tables() for r in rows}

    def ready():
        return (all(state["step"] == steps for state in states.values())
                and all(box.columns.get(c, (None,))[0] == steps for c in columns))

    box.wait(ready, "the last column blocks")
    return ({r: (state["user_factors"], state["user_bias"]) for r, state in states.items()},
            {c: box.columns[c][1:] for c in columns})


def _pattern(row_block, r, g, n_users, n_items, user_of_row, item_of_row):
    """(user index, item index) of row block ``r``'s ratings, in id order."""
    (users, items, _, ptr), _ = row_block
    first_col = np.repeat(_bounds(n_items, g)[:g], np.diff(ptr))
    return (user_of_row[users.astype(np.int64) + _bounds(n_users, g)[r]],
            item_of_row[items.astype(np.int64) + first_col])
