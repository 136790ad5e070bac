"""SGD MF rating updates per second on synthetic 5M ratings: the figures of the MF issue.

    python benchmarks/mf_throughput.py [--nnz 5000000] [--epochs 7]

For k in {32, 100}, 1 and 2 threads, Cython and Numba (compile excluded), it times whole epochs
through the kernel contract, on factor tables laid out as ``MF`` lays them out (working row
order, rows padded to whole 64-byte vectors: k=100 float32 runs 112 wide, see
``Backend.row_width("sgd", k, dtype)``), and prints the median, the Numba/Cython ratio and
the 1->2 thread scaling. Backends are interleaved epoch by epoch so machine noise hits them
alike; the idle share of the machine is printed first (figures taken on a busy machine are not
comparable).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import idle_fraction  # noqa: E402

from fastrec._algorithms.sgd_schedule import BlockedRatings, choose_n_blocks  # noqa: E402
from fastrec.backends import available_backends, get_backend  # noqa: E402
from fastrec.data import synthetic_ratings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nnz", type=int, default=5_000_000)
    parser.add_argument("--epochs", type=int, default=7)
    parser.add_argument("--blocks", type=int, default=None, help="grid side G (default: MF's)")
    args = parser.parse_args()
    print(f"machine idle: {idle_fraction():.0%}")
    data = synthetic_ratings(args.nnz // 50, args.nnz // 250, args.nnz, seed=0).interactions
    rng = np.random.default_rng(0)
    g = args.blocks or choose_n_blocks(data.n_users, data.n_items)
    blocked = BlockedRatings.build(data.users, data.items, data.values, data.n_users,
                                   data.n_items, g, rng)
    backends = [b for b in ("cython", "numba") if b in available_backends(("sgd_epoch",))]
    print(f"{data.nnz} ratings, {data.n_users} users x {data.n_items} items, G={g}")
    print("| k | threads | " + " | ".join(f"{b} M/s" for b in backends) + " |")
    results = {}
    for k in (32, 100):
        for threads in (1, 2):
            state = {}
            times = {b: [] for b in backends}
            for b in backends:
                width = get_backend(b).row_width("sgd", k, np.float32)
                tables = blocked.to_working_order({
                    "user_factors": rng.normal(0, 0.1, (data.n_users, k)).astype(np.float32),
                    "item_factors": rng.normal(0, 0.1, (data.n_items, k)).astype(np.float32),
                    "user_bias": np.zeros(data.n_users, np.float32),
                    "item_bias": np.zeros(data.n_items, np.float32)}, width)
                state[b] = list(tables.values())
            for epoch in range(args.epochs + 1):
                schedule = blocked.epoch_schedule(rng)
                for b in backends:
                    start = time.perf_counter()
                    get_backend(b).sgd_epoch(blocked.users, blocked.items, blocked.ratings,
                                             blocked.block_ptr, schedule, *state[b], 3.5, 0.005,
                                             0.005, 0.02, 0.02, True, threads)
                    if epoch:  # the first epoch warms caches and compiles Numba
                        times[b].append(time.perf_counter() - start)
            rates = {b: data.nnz / statistics.median(times[b]) / 1e6 for b in backends}
            results[(k, threads)] = rates
            print(f"| {k} | {threads} | " + " | ".join(f"{rates[b]:.1f}" for b in backends)
                  + " |", flush=True)
    for k in (32, 100):
        two = results[(k, 2)]
        line = f"k={k}: cython 1->2 threads x{two['cython'] / results[(k, 1)]['cython']:.2f}"
        if "numba" in two:
            line += f", numba/cython at 2 threads {two['numba'] / two['cython']:.2f}"
        print(line)


if __name__ == "__main__":
    main()
