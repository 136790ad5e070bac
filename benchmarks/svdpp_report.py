"""SVD++ on ml-latest-small: fastrec SVDpp vs fastrec MF vs Surprise SVDpp, each with defaults.

    python benchmarks/svdpp_report.py [--repeats 3] [--no-surprise]
    python benchmarks/svdpp_report.py --tune        # writes benchmarks/results/svdpp_tuning.md

The split is the issue's: ratings.csv rows permuted by ``numpy.random.default_rng(0)``, the first
80% train, the last 20% test. ``--tune`` never reads the test part: it carves a validation set (a
random 10% of the training rows, ``default_rng(1)``) out of the training part, fits on the other
90% and ranks a small grid by validation RMSE at every epoch (the inverse learning-rate schedule
does not depend on the total number of epochs, so epoch e of a long run is the n_epochs=e model).
Fit times are medians over ``--repeats`` runs measured side by side; the machine's idle share is
printed first (a shared machine slows every library alike only roughly: read the ratios).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import SHARED_DATA, idle_fraction  # noqa: E402

from fastrec import MF, SVDpp  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
GRID = {"n_factors": (16, 32, 64), "learning_rate": (0.01, 0.02), "reg": (0.05, 0.1),
        "reg_implicit": (1.0, 10.0, 100.0)}
TUNE_EPOCHS = 40


def split(path: Path):
    frame = pd.read_csv(path / "ratings.csv")
    frame = frame.iloc[np.random.default_rng(0).permutation(len(frame))]
    n_train = int(0.8 * len(frame))
    return frame.iloc[:n_train], frame.iloc[n_train:]


def triples(frame):
    return frame.userId.to_numpy(), frame.movieId.to_numpy(), frame.rating.to_numpy()


def test_rmse(model, test) -> float:
    users, items, ratings = triples(test)
    return float(np.sqrt(np.mean((model.predict(users, items, unknown="baseline") - ratings) ** 2)))


def tune(train) -> None:
    mask = np.random.default_rng(1).random(len(train)) < 0.9
    fit_part, validation = triples(train[mask]), triples(train[~mask])
    rows = []
    for values in itertools.product(*GRID.values()):
        params = dict(zip(GRID, values, strict=True))
        model = SVDpp(n_epochs=TUNE_EPOCHS, random_state=0, **params).fit(
            fit_part, validation_data=validation)
        best = int(np.argmin(model.validation_curve_))
        rows.append({**params, "best_epoch": best + 1, "val_rmse": model.validation_curve_[best],
                     "val_rmse_at_20": model.validation_curve_[19]})
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows).sort_values("val_rmse")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "svdpp_tuning.md"
    out.write_text(
        "# SVDpp defaults: validation sweep on ml-latest-small\n\n"
        "Made by `python benchmarks/svdpp_report.py --tune`: train = the first 80% of the\n"
        "rows permuted by `default_rng(0)`; of it a random 90% (`default_rng(1)`) is fitted and\n"
        "10% is validation. The test 20% is not read. Other parameters at their defaults\n"
        f"(inverse lr schedule, lr_decay 0.05), {TUNE_EPOCHS} epochs, best epoch by validation.\n\n"
        + markdown(table) + "\n")
    print(f"wrote {out}")


def markdown(table: pd.DataFrame) -> str:
    def cell(value):
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |"
              for row in table.itertuples(index=False)]
    return "\n".join(lines)


def report(train, test, repeats: int, surprise: bool) -> None:
    print(f"machine idle share before measuring: {idle_fraction():.0%}")
    X = triples(train)
    runs = {"fastrec MF": lambda: MF(random_state=0),
            "fastrec SVDpp": lambda: SVDpp(random_state=0),
            "fastrec SVDpp, 1 thread": lambda: SVDpp(random_state=0, n_threads=1),
            # Ablation: the y_j held at ~0 by a huge penalty (what the implicit factors add).
            "fastrec SVDpp, y off": lambda: SVDpp(random_state=0, reg_implicit=1e9)}
    if surprise:
        runs["Surprise SVDpp"] = None
    for make in runs.values():
        if make is not None:
            make().fit(X)  # warm-up: thread pools, page faults
    times = {name: [] for name in runs}
    errors = {}
    for _ in range(repeats):
        for name, make in runs.items():
            if make is None:
                seconds, errors[name] = fit_surprise(train, test)
            else:
                start = time.perf_counter()
                model = make().fit(X)
                seconds = time.perf_counter() - start
                errors[name] = test_rmse(model, test)
            times[name].append(seconds)
    print(f"\nml-latest-small, random 80/20 (default_rng(0)), median of {repeats} fits\n")
    print("| model | test RMSE | fit s | speed-up vs Surprise SVDpp |")
    print("|---|---|---|---|")
    reference = statistics.median(times["Surprise SVDpp"]) if surprise else None
    for name in runs:
        seconds = statistics.median(times[name])
        ratio = f"{reference / seconds:.0f}x" if reference else "-"
        print(f"| {name} | {errors[name]:.4f} | {seconds:.3f} | {ratio} |")
    print("\nall fit times:", {k: [round(t, 3) for t in v] for k, v in times.items()})


def fit_surprise(train, test):
    import surprise

    reader = surprise.Reader(rating_scale=(0.5, 5))
    trainset = surprise.Dataset.load_from_df(train[["userId", "movieId", "rating"]],
                                             reader).build_full_trainset()
    model = surprise.SVDpp(random_state=0)
    start = time.perf_counter()
    model.fit(trainset)
    seconds = time.perf_counter() - start
    predictions = [model.predict(u, i).est for u, i in zip(test.userId, test.movieId,
                                                            strict=True)]
    return seconds, float(np.sqrt(np.mean((np.array(predictions) - test.rating.to_numpy()) ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "ml-latest-small")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tune", action="store_true")
    parser.add_argument("--no-surprise", action="store_true")
    args = parser.parse_args()
    train, test = split(args.data)
    if args.tune:
        tune(train)
    else:
        report(train, test, args.repeats, not args.no_surprise)


if __name__ == "__main__":
    main()
