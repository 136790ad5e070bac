"""The price of distribution on one host, the bytes it moves, and what that predicts for a
cluster: the figures of the Dask issue. About 2-3 minutes on a quiet 2-core machine.

    python benchmarks/dask_mf_throughput.py [--nnz 5000000] [--epochs 11] [--rounds 3]
                                            [--grids 2 4]

1. Epoch throughput at k=32 on synthetic ratings: the local Cython kernel with 2 threads on
   MF's own layout (G=16), and ``fastrec.dask.MF`` on a LocalCluster of 2 single-threaded
   worker processes (G=2 by default), same run, interleaved round by round; medians of the
   epoch times (the dask side: each fit's mean of ``epoch_times_``, the epochs' times on
   the workers, after the first epoch, which includes starting the tasks) and their ratio
   (the RATIO line; the issue asks >= 0.7x).
2. Bytes moved between workers per epoch: measured as the column blocks (item factors and
   biases) the workers' mailboxes received from other workers (through Dask's actor calls,
   counted on arrival: ``fastrec.dask._mf.received_column_bytes``), and predicted from the
   schedule (replayed from the seed): every time a column block's next row block lives on
   another worker, its table (rows x k x 4 bytes + biases) moves.
3. A small model of the epoch time on W workers, G = W, for Netflix-size data (100M ratings,
   480,189 users x 17,770 items, k=32): compute nnz / (W u) with u the single-thread kernel
   rate measured here; a per-stratum cost L measured here from the gap between the dask
   epoch and its compute (each worker runs all its epochs in one task, so what remains per
   stratum is handing a column block to the next worker, a direct worker-to-worker call, and
   waiting for the slower block of the stratum); the item table crossing the network once
   per epoch at B = 1.25 GB/s (10 GbE), not overlapped:
   T(W) = nnz / (W u) + W L + 17,770 * 32 * 4 / B.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import idle_fraction  # noqa: E402

import fastrec.dask  # noqa: E402
from fastrec._algorithms.sgd_schedule import BlockedRatings, choose_n_blocks  # noqa: E402
from fastrec.backends import get_backend  # noqa: E402
from fastrec.dask._exact import skip_tie_keys  # noqa: E402
from fastrec.dask._mf import _bounds, received_column_bytes  # noqa: E402
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
    """Bytes of column blocks the workers have received from each other so far (each worker
    process counts what arrives in its mailbox from another worker; the column blocks are
    the only data the epochs move)."""
    return sum(client.run(received_column_bytes).values())


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
    where = {}  # column block -> worker holding it (placed where its first block runs)
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


def load() -> str:
    with open("/proc/loadavg") as fh:
        return fh.read().split()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nnz", type=int, default=5_000_000)
    parser.add_argument("--epochs", type=int, default=11, help="epochs per dask fit")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--grids", type=int, nargs="+", default=[2],
                        help="n_blocks of the dask fits (multiples of the 2 workers)")
    args = parser.parse_args()
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    print(f"before: machine idle {idle_fraction():.0%}, load average {load()} "
          "(other agents may share this machine: compare the ratio, not absolute times)")
    data = synthetic_ratings(args.nnz // 50, args.nnz // 250, args.nnz, seed=0).interactions
    frame = pd.DataFrame({"user": data.users, "item": data.items, "rating": data.values})
    print(f"{data.nnz:,} ratings, {data.n_users:,} users x {data.n_items:,} items, k={K}")
    local, single = [], []
    remote = {g: [] for g in args.grids}
    measured = {g: [] for g in args.grids}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        with warnings.catch_warnings():
            # the benchmark's own frame goes to the cluster once, inside the graph
            warnings.filterwarnings("ignore", message="Sending large graph")
            ddf = dd.from_pandas(frame, npartitions=8).persist()
        for _ in range(args.rounds):
            # local and distributed interleaved, so a change in the machine's load hits both
            local.extend(local_epochs(data, 4, 2)[1:])
            single.extend(local_epochs(data, 3, 1)[1:])
            for g in args.grids:
                before = transferred(client)
                model = fastrec.dask.MF(n_factors=K, n_epochs=args.epochs, n_blocks=g,
                                        random_state=SEED, learning_rate=0.005,
                                        client=client).fit(ddf)
                remote[g].append(statistics.mean(model.epoch_times_[1:]))
                measured[g].append((transferred(client) - before) / args.epochs)
                print(f"  dask G={g}: prepare {model.timings_['prepare']:.1f} s, epochs "
                      f"{' '.join(f'{t:.3f}' for t in model.epoch_times_)} s", flush=True)
    print(f"after: machine idle {idle_fraction():.0%}, load average {load()}")
    t_local = statistics.median(local)
    g_local = choose_n_blocks(data.n_users, data.n_items)
    print(f"\nlocal cython, 2 threads, G={g_local}: median {t_local:.3f} s/epoch of "
          f"{len(local)} = {data.nnz / t_local / 1e6:.1f} M updates/s")
    t_single = statistics.median(single)
    print(f"local cython, 1 thread: median {t_single:.3f} s/epoch of {len(single)}")
    for g, times in remote.items():
        t = statistics.median(times)
        pred = predicted_bytes(data, g, args.epochs, 2)
        meas = statistics.median(measured[g])
        print(f"fastrec.dask.MF, 2 workers x 1 thread, G={g}: median {t:.3f} s/epoch of "
              f"{len(times)} fits = {data.nnz / t / 1e6:.1f} M updates/s\n"
              f"  RATIO dask / local 2-thread throughput: {t_local / t:.2f}x (target >= 0.7x)\n"
              f"  item blocks moved per epoch: {meas / 1e6:.2f} MB measured, "
              f"{pred / 1e6:.2f} MB predicted ({meas / pred - 1:+.0%}; target within 20%)")
    # Per-stratum cost L: with G = W each worker runs one block per stratum, so the dask epoch
    # is the compute on each worker plus G strata of overhead (hand-off latency, imbalance).
    g = min(remote)
    u = data.nnz / t_single
    latency = max(statistics.median(remote[g]) - data.nnz / (2 * u), 0.0) / g
    print(f"\nmodel: u = {u / 1e6:.1f} M updates/s per thread, L = {latency * 1e3:.1f} ms per "
          f"stratum (from G={g}); T(W) = nnz / (W u) + W L + item table / 1.25 GB/s")
    nnz, items, bandwidth = 100_000_000, 17_770, 1.25e9
    print("Netflix-size (100M ratings, 480,189 x 17,770), G = W:")
    for w in (8, 32, 128):
        t = nnz / (w * u) + w * latency + items * K * 4 / bandwidth
        print(f"  {w:4d} workers: {t:7.2f} s/epoch predicted "
              f"(compute {nnz / (w * u):.2f} s, strata {w * latency:.2f} s)")


if __name__ == "__main__":
    main()
