"""Fits under load: every family at the default thread count against one thread, with a busy
process beside them, and the 1- vs 2-thread speed-up on a quiet machine.

    python benchmarks/load_report.py load  --backend cython --repeats 5
    python benchmarks/load_report.py quiet --backend cython --repeats 5

``load`` starts one CPU-bound Python process (``while True: pass`` under a deadline, killed at
the end in any case) and times each family's fit under that same load at ``n_threads=None``
(the default) and at 1 thread (with ``--all-cores`` also at every usable core, the default
before fastrec.backends.threads), interleaved repetition by repetition; the figures are ratios
of the medians to the 1-thread fit (target for the default: <= 1.15). ``quiet`` times the
same fits at 1 and 2 threads with nothing started beside them and reports the median speed-up.

Other processes may share the machine: before each round the script samples the idle share of
the CPUs from /proc/stat over half a second and prints it, so a table can be read against the
conditions it was measured in. Sizes are chosen so that a 1-thread fit takes 0.3-1 s on the
project's 2-core VM, long enough that a fit's fixed costs do not decide its speed-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BUSY_LIFETIME_S = 900  # the busy process ends by itself even if this script is killed


def cpu_idle_share(window: float = 0.5) -> float:
    """Fraction of all CPUs' time spent idle (idle + iowait) over ``window`` seconds."""

    def sample():
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        return fields[3] + fields[4], sum(fields)

    idle0, total0 = sample()
    time.sleep(window)
    idle1, total1 = sample()
    return (idle1 - idle0) / max(total1 - total0, 1)


def interactions(n_users: int, n_items: int, nnz: int, seed: int):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, nnz)
    items = np.minimum(rng.zipf(1.2, nnz) - 1, n_items - 1)
    key = np.unique(users.astype(np.int64) * n_items + items)
    return key // n_items, key % n_items, rng.uniform(1, 5, key.shape[0]).astype(np.float32)


def families():
    """name -> (make model from n_threads and backend, training data)."""
    import inspect

    from fastrec import GMF, MF, NMF, GRU4Rec, NeuMF

    def same_work(cls, **params):
        """The estimator with early stopping off, GRU4Rec's loss and NCF's negatives per
        positive pinned where the installed fastrec has them, so checkouts whose defaults
        differ do the same work."""
        known = inspect.signature(cls.__init__).parameters
        pinned = {"early_stopping": False, **({"loss": "cross-entropy"} if cls is GRU4Rec else {}),
                  **({"n_negatives": 4} if cls in (GMF, NeuMF) else {})}
        return cls(**params, **{k: v for k, v in pinned.items() if k in known})

    u, i, r = interactions(40_000, 8_000, 1_500_000, 0)
    ratings = (u, i, r)
    u2, i2, _ = interactions(20_000, 6_000, 300_000, 1)
    implicit = (u2, i2)
    rng = np.random.default_rng(2)
    dense = sp.random(3000, 2000, density=0.05, format="csr", random_state=3, dtype=np.float32)
    n_events = 120_000
    lengths = rng.integers(2, 12, n_events // 5)
    sessions = np.repeat(np.arange(lengths.shape[0]), lengths)[:n_events]
    clicks = np.minimum(rng.zipf(1.3, sessions.shape[0]) - 1, 9_999)
    stamps = np.arange(sessions.shape[0], dtype=np.int64)
    return {
        "MF": (lambda t, b: same_work(MF, n_factors=32, n_epochs=20, n_threads=t, backend=b,
                                      random_state=0), ratings),
        "NMF": (lambda t, b: same_work(NMF, n_components=16, max_iter=400, tol=0.0, n_threads=t,
                                       backend=b, random_state=0, init="random"), dense),
        "GMF": (lambda t, b: same_work(GMF, n_factors=32, n_epochs=1, n_threads=t, backend=b,
                                       random_state=0), implicit),
        "NeuMF": (lambda t, b: same_work(NeuMF, n_factors=16, layers=(64, 32, 16), n_epochs=1,
                                         n_threads=t, backend=b, random_state=0),
                  (u2[:100_000], i2[:100_000])),
        "GRU4Rec": (lambda t, b: same_work(GRU4Rec, hidden_size=64, n_sample=512, batch_size=64,
                                           n_epochs=1, n_threads=t, backend=b, random_state=0),
                    (sessions, clicks, stamps)),
    }


CHOSEN: list[int] = []  # what the default thread count chose, fit by fit


def record_default_choice() -> None:
    import fastrec.models._base as base

    choose = base.default_n_threads

    def recording() -> int:
        CHOSEN.append(choose())
        return CHOSEN[-1]

    base.default_n_threads = recording


def time_fit(make, data, n_threads, backend) -> float:
    model = make(n_threads, backend)
    start = time.perf_counter()
    model.fit(data)
    return time.perf_counter() - start


def start_busy_process() -> subprocess.Popen:
    code = f"import time\nend = time.monotonic() + {BUSY_LIFETIME_S}\n" \
           "while time.monotonic() < end:\n    pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


def measure(mode: str, backend: str, repeats: int, only: list[str] | None,
            all_cores: bool = False) -> None:
    from fastrec.backends import default_n_threads, get_backend, usable_cores

    # Under load: today's default (every usable core) and the new one, each against 1 thread.
    if mode == "load":
        settings = (None, usable_cores(), 1) if all_cores and usable_cores() != 1 else (None, 1)
    else:
        settings = (1, 2)
    fams = families()
    names = only or list(fams)
    record_default_choice()
    get_backend(backend)  # loads the OpenMP runtime, after fastrec chose its wait policy
    busy = start_busy_process() if mode == "load" else None
    rows = []
    try:
        time.sleep(0.5)
        print(f"mode={mode} backend={backend} usable_cores={usable_cores()} "
              f"default_n_threads() now={default_n_threads()} repeats={repeats} "
              f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')} "
              f"GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT')}")
        for name in names:
            make, data = fams[name]
            for t in settings:  # warm-up: compiled code, caches, allocator
                time_fit(make, data, t, backend)
            times = {t: [] for t in settings}
            idles = []
            CHOSEN.clear()
            for rep in range(repeats):
                idles.append(cpu_idle_share())
                for t in settings if rep % 2 == 0 else settings[::-1]:
                    times[t].append(time_fit(make, data, t, backend))
            # the ratio within each round (fits minutes apart may see different loads):
            # default / 1 thread under load, 1 thread / 2 threads (the speed-up) when quiet
            num, den = (times[None], times[1]) if mode == "load" else (times[1], times[2])
            paired = statistics.median(x / y for x, y in zip(num, den, strict=True))
            rows.append((name, {t: statistics.median(v) for t, v in times.items()},
                         statistics.median(idles), paired))
            print(f"  {name}: " + "; ".join(f"n_threads={t}: " + " ".join(f"{x:.2f}" for x in v)
                                           for t, v in times.items())
                  + (f"; default chose {CHOSEN[-repeats:]} threads" if mode == "load" else ""),
                  flush=True)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    if mode == "load":
        every = all_cores and usable_cores() != 1
        print("\n| family | default s | 1 thread s | default / 1 thread | same, per round "
              + ("| all cores s | all cores / 1 thread " if every else "")
              + "| idle before rounds |")
        print("| --- |" + " ---: |" * (6 if every else 4) + " ---: |")
        for name, med, idle, paired in rows:
            d, one = med[None], med[1]
            a = med[usable_cores()] if every else None
            print(f"| {name} | {d:.2f} | {one:.2f} | {d / one:.2f}x | {paired:.2f}x "
                  + (f"| {a:.2f} | {a / one:.2f}x " if every else "") + f"| {idle:.0%} |")
    else:
        print("\n| family | 1 thread s | 2 threads s | speed-up | same, per round "
              "| idle before rounds |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for name, med, idle, paired in rows:
            print(f"| {name} | {med[1]:.2f} | {med[2]:.2f} | {med[1] / med[2]:.2f}x "
                  f"| {paired:.2f}x | {idle:.0%} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("load", "quiet"))
    parser.add_argument("--backend", default="cython")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", nargs="*", help="families to run (default: all)")
    parser.add_argument("--all-cores", action=argparse.BooleanOptionalAction, default=False,
                        help="load mode: also time every usable core (the old default; slow: "
                        "beside a busy process each such fit takes several times longer)")
    args = parser.parse_args(argv)
    measure(args.mode, args.backend, args.repeats, args.only, args.all_cores)


if __name__ == "__main__":
    main()
