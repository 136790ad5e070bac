"""Serving top-N: fastrec's ``MF.recommend`` (the whole call: id mapping, validation, the
compiled top-n with the seen items filtered, original ids back) against implicit's CPU
``recommend`` on the same factors and seen matrix, side by side.

    python benchmarks/topn_report.py [--rounds 30] [--users 100000] [--items 20000] [--k 32]

The model is an MF fitted for one epoch on the seen pairs (about 2 s); implicit gets its
factors, so both rank the same scores (MF's item bias is zero: ``biased=False``). Cases
(top-10, seen items filtered): a batch of 100 users, one user, and serving throughput from 1 to
2 Python threads calling concurrently (each call single-threaded inside, BLAS too). Contenders
alternate call by call within a round so load drifts hit both alike; the table gives p50
latencies and their ratio. Needs ``pip install implicit`` (part of the ``bench`` extra).
Compile/warm-up calls are excluded. The machine's idle share is printed first and last.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

import fastrec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import idle_fraction  # noqa: E402


def seen_matrix(n_users, n_items, seen_per_user, seed=0):
    """float32 CSR of random seen pairs, about ``seen_per_user`` a user."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(seen_per_user, n_users)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    indices = rng.integers(0, n_items, indptr[-1]).astype(np.int32)
    seen = sp.csr_matrix((np.ones(indptr[-1], np.float32), indices, indptr),
                         shape=(n_users, n_items))
    seen.sum_duplicates()  # implicit wants sorted, duplicate-free rows; so does a seen_ matrix
    return seen


def fastrec_model(seen, k):
    """An MF fitted on the seen pairs (one epoch: serving speed does not depend on quality)."""
    users = np.repeat(np.arange(seen.shape[0], dtype=np.int32), np.diff(seen.indptr))
    ratings = np.random.default_rng(2).uniform(1, 5, seen.nnz).astype(np.float32)
    return fastrec.MF(n_factors=k, n_epochs=1, biased=False, random_state=0,
                      backend="cython").fit((users, seen.indices, ratings))


def implicit_model(user_factors, item_factors, n_threads):
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(factors=user_factors.shape[1], num_threads=n_threads)
    model.user_factors, model.item_factors = user_factors, item_factors
    return model


def p50_ms(samples):
    return 1e3 * float(np.median(samples))


def latency(contenders, batches, rounds):
    """p50 per contender, alternating contenders call by call."""
    times = {name: [] for name in contenders}
    for r in range(rounds):
        users = batches[r % len(batches)]
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn(users)
            times[name].append(time.perf_counter() - start)
    return {name: p50_ms(t) for name, t in times.items()}


def throughput(fn, batches, calls, n_threads):
    """Calls per second with ``n_threads`` Python threads sharing ``calls`` calls."""
    barrier = threading.Barrier(n_threads + 1)

    def worker(offset):
        barrier.wait()
        for c in range(offset, calls, n_threads):
            fn(batches[c % len(batches)])

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return calls / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--seen", type=float, default=50, help="mean seen items per user")
    parser.add_argument("--rounds", type=int, default=30)
    # 200 calls: a run of about 0.5 s, so thread start-up and the last call's straggling
    # thread are a small share of it (40 calls, 0.1 s, gave 1.70-1.91x from run to run)
    parser.add_argument("--calls", type=int, default=200, help="calls per throughput run")
    parser.add_argument("--runs", type=int, default=5, help="throughput runs per thread count")
    args = parser.parse_args()

    # implicit asks for a single-threaded BLAS (its threads split the batch; it warns
    # otherwise); fastrec's kernel limits BLAS itself while it runs. Same setting for both.
    threadpool_limits(1, user_api="blas")
    print(f"machine idle: {idle_fraction():.0%}")
    seen = seen_matrix(args.users, args.items, args.seen)
    model = fastrec_model(seen, args.k)
    user_factors, item_factors = model.user_factors_, model.item_factors_
    rng = np.random.default_rng(1)
    batches = {size: [np.sort(rng.choice(args.users, size, replace=False)) for _ in range(8)]
               for size in (100, 1)}
    print(f"{args.users} users x {args.items} items, k={args.k}, {seen.nnz} seen pairs; top-10, "
          "seen filtered; p50 of alternating calls")

    def fastrec_fn(n_threads):
        served = copy.copy(model).set_params(n_threads=n_threads)
        return lambda users: served.recommend(users, n=10)

    def implicit_fn(peer):
        return lambda users: peer.recommend(users, seen[users], N=10)

    cores = len(os.sched_getaffinity(0))
    implicit_all, implicit_one = (implicit_model(user_factors, item_factors, t)
                                  for t in (0, 1))
    for users in batches[100][:2]:  # warm-up, and check the two agree
        ours = fastrec_fn(cores)(users)[0]
        theirs = implicit_fn(implicit_all)(users)[0]
        agree = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ours, theirs,
                                                                            strict=True)]))
    print(f"top-10 overlap fastrec vs implicit: {agree:.3f}")

    print(f"\n{'case':34s} {'fastrec ms':>11s} {'implicit ms':>12s} {'speed-up':>9s}")
    for label, size, threads, peer in (
            (f"100 users, {cores} threads", 100, cores, implicit_all),
            ("100 users, 1 thread", 100, 1, implicit_one),
            ("1 user", 1, 1, implicit_one)):
        res = latency({"fastrec": fastrec_fn(threads), "implicit": implicit_fn(peer)},
                      batches[size], args.rounds)
        print(f"{label:34s} {res['fastrec']:11.3f} {res['implicit']:12.3f} "
              f"{res['implicit'] / res['fastrec']:8.2f}x")

    print(f"\nserving threads (each call single-threaded inside), 100-user calls/s, "
          f"median of {args.runs} runs of {args.calls} calls")
    for name, fn in (("fastrec", fastrec_fn(1)), ("implicit", implicit_fn(implicit_one))):
        rates = {t: [] for t in (1, 2)}
        for _ in range(args.runs):
            for t in (1, 2):
                rates[t].append(throughput(fn, batches[100], args.calls, t))
        one, two = (float(np.median(rates[t])) for t in (1, 2))
        print(f"{name:10s} 1 thread {one:8.1f}/s   2 threads {two:8.1f}/s   {two / one:5.2f}x")
    print(f"\nmachine idle at the end: {idle_fraction():.0%}")


if __name__ == "__main__":
    main()
