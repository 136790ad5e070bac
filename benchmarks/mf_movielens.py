"""MF vs Surprise SVD on ml-latest-small: test RMSE and fit time on the same random 80/20 split.

    python benchmarks/mf_movielens.py [--repeats 5] [--data ../shared/data/ml-latest-small]

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


def fit_fastrec(train, test, backend, params):
    model = MF(backend=backend, random_state=0, **params)
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
    args = parser.parse_args()
    print(f"machine idle: {idle_fraction():.0%}")
    ratings = load_movielens(args.data)
    train, test = random_split(ratings, test_size=0.2, random_state=0)
    print(f"ml-latest-small: {train.nnz} train / {test.nnz} test ratings")
    fit_fastrec(train, test, args.backend, PARAMS)  # warm-up (Numba compile, page faults)
    results = {"surprise SVD": [], f"fastrec MF ({args.backend})": []}
    for _ in range(args.repeats):
        results["surprise SVD"].append(fit_surprise(train, test))
        results[f"fastrec MF ({args.backend})"].append(
            fit_fastrec(train, test, args.backend, PARAMS))
    print(f"\n| model | test RMSE | fit s (median of {args.repeats}) |")
    print("| --- | ---: | ---: |")
    medians = {}
    for name, runs in results.items():
        medians[name] = statistics.median(t for _, t in runs)
        print(f"| {name} | {runs[0][0]:.4f} | {medians[name]:.4f} |")
    ours, theirs = medians[f"fastrec MF ({args.backend})"], medians["surprise SVD"]
    print(f"\nfastrec fit time is 1/{theirs / ours:.1f} of Surprise's")


if __name__ == "__main__":
    main()
