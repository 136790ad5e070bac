"""The price of distribution on one host, the bytes it moves, and what that predicts for a
cluster: the figures of the Dask issue.

    python benchmarks/dask_mf_throughput.py [--nnz 5000000] [--epochs 6] [--rounds 3]

1. Epoch throughput at k=32 on synthetic ratings: the local Cython kernel with 2 threads on
   MF's own layout (G=16), and ``fastrec.dask.MF`` on a LocalCluster of 2 single-threaded
   worker processes (G=2 and G=4), same run, interleaved round by round; medians of the epoch
   times (the dask side from ``epoch_times_`` after the first epoch) and their ratio.
2. Bytes moved between workers per epoch: measured from the workers' outgoing transfer logs
   (the item-block keys, ``fastrec-item-block-*``, as Dask sizes them), and predicted from the
   schedule (replayed from the seed): every time a column block's next row block lives on
   another worker, its table (rows x padded k x 4 bytes + biases) moves.
3. A small model of the epoch time on W workers, G = W, for Netflix-size data (100M ratings,
   480,189 users x 17,770 items, k=32): compute nnz / (W u) with u the single-thread kernel
   rate measured here; per-stratum latency L and per-task scheduler cost c measured here from
   the gap between the dask epoch and its compute; transfer of the item table once per epoch
   per worker at B = 1.25 GB/s (10 GbE), not overlapped:
   T(W) = nnz / (W u) + G L + 2 G^2 c + 17,770 * 32 * 4 / B.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import idle_fraction  # noqa: E402

import fastrec.dask  # noqa: E402
from fastrec._algorithms.sgd_schedule import BlockedRatings, choose_n_blocks  # noqa: E402
from fastrec.backends import get_backend  # noqa: E402
from fastrec.dask._exact import skip_tie_keys  # noqa: E402
from fastrec.dask._mf import _bounds  # noqa: E402
from fastrec.data import synthetic_ratings  # noqa: E402

K = 32
SEED = 0


def local_epochs(data, epochs: int, n_threads: int) -> list[float]:
    """Seconds per epoch of the Cython kernel on MF's layout (G from choose_n_blocks)."""
    rng = np.random.default_rng(SEED)
    g = choose_n_blocks(data.n_users, data.n_items)
    blocked = BlockedRatings.build(data.users, data.items, data.values, data.n_users,
                                   data.n_items, g, rng)
    backend = get_backend("cython", ("sgd_epoch",))
    state = blocked.to_working_order({
        "user_factors_": rng.normal(0, 0.1, (data.n_users, K)).astype(np.float32),
        "item_factors_": rng.normal(0, 0.1, (data.n_items, K)).astype(np.float32),
        "user_bias_": np.zeros(data.n_users, np.float32),
        "item_bias_": np.zeros(data.n_items, np.float32)}, backend.row_width("sgd", K, np.float32))
    mean = float(data.values.mean(dtype=np.float64))
    times = []
    for _ in range(epochs):
        schedule = blocked.epoch_schedule(rng)
        start = time.perf_counter()
        backend.sgd_epoch(blocked.users, blocked.items, blocked.ratings, blocked.block_ptr,
                          schedule, state["user_factors_"], state["item_factors_"],
                          state["user_bias_"], state["item_bias_"], mean, 0.005, 0.005, 0.02,
                          0.02, True, n_threads)
        times.append(time.perf_counter() - start)
    return times


def transferred(client) -> int:
    """Bytes of item blocks the workers have sent so far (their outgoing transfer logs)."""
    def sent(dask_worker):
        return sum(size for entry in dask_worker.transfer_outgoing_log
                   for key, size in entry["keys"].items()
                   if isinstance(key, tuple) and key[0].startswith("fastrec-item-block"))
    return sum(client.run(sent).values())


def predicted_bytes(data, g: int, epochs: int, workers: int) -> float:
    """Bytes per epoch the schedule moves (replaying the fit's draws from the seed): a column
    block moves whenever its next row block is on another worker."""
    rng = np.random.default_rng(SEED)
    rng.normal(0.0, 0.1, (data.n_users, K))
    rng.normal(0.0, 0.1, (data.n_items, K))
    empty = np.empty(0, np.int32)
    layout = BlockedRatings.build(empty, empty, np.empty(0, np.float32), data.n_users,
                                  data.n_items, g, rng)
    skip_tie_keys(rng, data.nnz)
    rows_per_col = np.diff(_bounds(data.n_items, g))
    col_bytes = rows_per_col * (K * 4 + 4)
    where = {}  # column block -> worker holding it (initially scattered round robin by Dask)
    moved = 0
    for _ in range(epochs):
        schedule = layout.epoch_schedule(rng)
        for s in range(g):
            for b in range(g):
                r, c = divmod(int(schedule[s, b]), g)
                owner = r % workers
                if c in where and where[c] != owner:
                    moved += col_bytes[c]
                where[c] = owner
    return moved / epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nnz", type=int, default=5_000_000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    print(f"machine idle: {idle_fraction():.0%} (other agents share this machine)")
    data = synthetic_ratings(args.nnz // 50, args.nnz // 250, args.nnz, seed=0).interactions
    frame = pd.DataFrame({"user": data.users, "item": data.items, "rating": data.values})
    print(f"{data.nnz:,} ratings, {data.n_users:,} users x {data.n_items:,} items, k={K}")
    import dask.dataframe as dd

    ddf = dd.from_pandas(frame, npartitions=8)
    local, remote = [], {2: [], 4: []}
    measured, single = {2: [], 4: []}, []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        ddf = ddf.persist()
        for _ in range(args.rounds):
            local.extend(local_epochs(data, args.epochs, 2)[1:])
            single.extend(local_epochs(data, 3, 1)[1:])
            for g in remote:
                before = transferred(client)
                model = fastrec.dask.MF(n_factors=K, n_epochs=args.epochs, n_blocks=g,
                                        random_state=SEED, learning_rate=0.005,
                                        client=client).fit(ddf)
                remote[g].extend(model.epoch_times_[1:])
                measured[g].append((transferred(client) - before) / args.epochs)
    t_local = statistics.median(local)
    print(f"\nlocal cython, 2 threads, G={choose_n_blocks(data.n_users, data.n_items)}: "
          f"{t_local:.3f} s/epoch = {data.nnz / t_local / 1e6:.1f} M updates/s")
    t_single = statistics.median(single)
    print(f"local cython, 1 thread: {t_single:.3f} s/epoch")
    for g, times in remote.items():
        t = statistics.median(times)
        pred = predicted_bytes(data, g, args.epochs, 2)
        meas = statistics.median(measured[g])
        print(f"fastrec.dask.MF, 2 workers x 1 thread, G={g}: {t:.3f} s/epoch = "
              f"{data.nnz / t / 1e6:.1f} M updates/s, {t_local / t:.2f}x local; item blocks "
              f"moved per epoch {meas / 1e6:.2f} MB measured, {pred / 1e6:.2f} MB predicted "
              f"({meas / pred - 1:+.0%})")
    t2 = statistics.median(remote[2])
    u = data.nnz / t_single
    compute = data.nnz / (2 * u)
    overhead = max(t2 - compute, 0.0)
    # Split the measured overhead between per-stratum latency and per-task cost with the two
    # grids: overhead(G) = G L + 2 G^2 c.
    t4 = statistics.median(remote[4])
    over4 = max(t4 - compute, 0.0)
    c = max((over4 - 2 * overhead) / (2 * 16 - 2 * 2 * 4), 0.0)
    latency = max((overhead - 2 * 4 * c) / 2, 0.0)
    print(f"\nmodel: u = {u / 1e6:.1f} M updates/s per thread, L = {latency * 1e3:.1f} ms per "
          f"stratum, c = {c * 1e3:.2f} ms per task (from G=2 and G=4)")
    nnz, items, bandwidth = 100_000_000, 17_770, 1.25e9
    print("Netflix-size (100M ratings), G = W:")
    for w in (8, 32, 128):
        t = nnz / (w * u) + w * latency + 2 * w * w * c + items * K * 4 / bandwidth
        print(f"  {w:4d} workers: {t:7.2f} s/epoch predicted "
              f"(compute {nnz / (w * u):.2f} s, strata {w * latency:.2f} s, tasks "
              f"{2 * w * w * c:.2f} s)")


if __name__ == "__main__":
    main()
