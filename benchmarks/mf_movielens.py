"""MF vs Surprise SVD on ml-latest-small: test RMSE and fit time on the same random 80/20 split.

    python benchmarks/mf_movielens.py [--repeats 5] [--data ../shared/data/ml-latest-small]
    python benchmarks/mf_movielens.py --defaults --repeats 5   # MF() defaults, issue 16's split

``--defaults``: fastrec ``MF()`` with its defaults (``random_state`` 0, 1, 2: test RMSE is their
mean) on the issue's split (ratings.csv rows permuted by ``default_rng(0)``, the first 80%
train, the last 20% test), fit times of seed 0 against Surprise's, interleaved.

Surprise runs with its defaults (k=100, 20 epochs, lr 0.005, reg 0.02, float64, one thread);
fastrec MF with ``PARAMS`` below
(10 epochs suffice on this data). Fit times are medians over ``--repeats``
runs, measured side by side; the machine's idle share is printed first.
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
from conftest import SHARED_DATA, idle_fraction  # noqa: E402

from fastrec import MF  # noqa: E402
from fastrec.data.interactions import Interactions  # noqa: E402
from fastrec.data.loaders import load_movielens  # noqa: E402
from fastrec.data.splits import random_split  # noqa: E402
from fastrec.metrics import rmse  # noqa: E402

PARAMS = dict(n_factors=32, n_epochs=10, learning_rate=0.03, reg=0.05)


def fit_surprise(train, test):
    import surprise

    frame = pd.DataFrame({"u": train.users, "i": train.items, "r": train.values})
    trainset = surprise.Dataset.load_from_df(frame, surprise.Reader(rating_scale=(0.5, 5))) \
        .build_full_trainset()
    model = surprise.SVD(random_state=0)
    start = time.perf_counter()
    model.fit(trainset)
    elapsed = time.perf_counter() - start
    pred = np.array([model.predict(u, i).est for u, i in zip(test.users, test.items,
                                                              strict=True)])
    return rmse(test.values, pred), elapsed


def issue_split(path: Path):
    frame = pd.read_csv(path / "ratings.csv")
    frame = frame.iloc[np.random.default_rng(0).permutation(len(frame))]
    n_train = int(0.8 * len(frame))
    data = Interactions.from_frame(frame)
    return data.subset(np.arange(n_train)), data.subset(np.arange(n_train, len(frame)))


def fit_fastrec(train, test, backend, params, seed=0):
    model = MF(backend=backend, random_state=seed, **params)
    start = time.perf_counter()
    model.fit(train)
    elapsed = time.perf_counter() - start
    pred = model.predict(test.user_ids[test.users], test.item_ids[test.items],
                         unknown="baseline")
    return rmse(test.values, pred), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "ml-latest-small")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backend", default="cython")
    parser.add_argument("--defaults", action="store_true",
                        help="MF() defaults on the issue's split (see the module docstring)")
    args = parser.parse_args()
    print(f"machine idle: {idle_fraction():.0%}")
    params = {} if args.defaults else PARAMS
    if args.defaults:
        train, test = issue_split(args.data)
    else:
        train, test = random_split(load_movielens(args.data), test_size=0.2, random_state=0)
    print(f"ml-latest-small: {train.nnz} train / {test.nnz} test ratings; MF parameters "
          f"{params or 'defaults'}")
    fit_fastrec(train, test, args.backend, params)  # warm-up (Numba compile, page faults)
    results = {"surprise SVD": [], f"fastrec MF ({args.backend})": []}
    for _ in range(args.repeats):
        results["surprise SVD"].append(fit_surprise(train, test))
        results[f"fastrec MF ({args.backend})"].append(
            fit_fastrec(train, test, args.backend, params))
    print(f"\n| model | test RMSE | fit s (median of {args.repeats}) |")
    print("| --- | ---: | ---: |")
    medians = {}
    for name, runs in results.items():
        medians[name] = statistics.median(t for _, t in runs)
        print(f"| {name} | {runs[0][0]:.4f} | {medians[name]:.4f} |")
    ours, theirs = medians[f"fastrec MF ({args.backend})"], medians["surprise SVD"]
    print(f"\nfastrec fit time is 1/{theirs / ours:.1f} of Surprise's")
    print("all fit times (s):", {k: [round(t, 4) for _, t in v] for k, v in results.items()})
    if args.defaults:
        errors = [fit_fastrec(train, test, args.backend, params, seed)[0] for seed in (0, 1, 2)]
        print(f"fastrec MF() test RMSE, random_state 0, 1, 2: "
              f"{[round(e, 4) for e in errors]}, mean {np.mean(errors):.4f}")


if __name__ == "__main__":
    main()
