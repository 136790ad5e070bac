"""JointNeuMF against NeuMF (ranking) and MF (ratings), each with its defaults, on ml-latest-small.

    python benchmarks/joint_report.py tune      # choose JointNeuMF's defaults on validation
    python benchmarks/joint_report.py report    # the test table (mean of 3 seeds)
    python benchmarks/joint_report.py curves    # per-epoch validation HR@10 and RMSE

Protocol. The ratings are the explicit targets and the same rated pairs the implicit positives.
Each user's latest rating (by timestamp) is the test pair (``fastrec.evaluation.leave_last_out``
with ``single="train"``); the rest is the training part. HR@10 and NDCG@10: the test item ranked
among 99 items the user rated neither in training nor in test (``SampledRanking``, seed 0).
RMSE: the predicted rating of the same test pairs (each user's latest rating) against the true
rating, so both metrics are measured on the pairs the leave-latest-out protocol holds out.
MF predicts with ``predict``, JointNeuMF with ``predict_rating``; NeuMF predicts no ratings.
``tune`` never looks at the test pairs: it splits the training part again the same way (each
user's latest training rating is the validation pair) and fits the JointNeuMF settings
given (``--configs name=value,name=value ...``, changes from its defaults) beside NeuMF's and
MF's defaults on that split. ``curves`` fits the given settings (and NeuMF's defaults) on the
same split without early stopping, with the validation pairs as ``validation_data``, and
prints each epoch's validation HR@10 (and JointNeuMF's RMSE): where each metric peaks.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fastrec import MF, JointNeuMF, NeuMF
from fastrec.data.interactions import Interactions
from fastrec.evaluation import SampledRanking, leave_last_out, rank_metrics, sampled_ranks

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small" / "ratings.csv"
SEEDS = (0, 1, 2)
# JointNeuMF settings swept by ``tune``: changes from its defaults, "name=value,..."
CONFIGS = ("rating_weight=3", "rating_weight=1", "n_negatives=16",
           "n_factors=128,rating_factors=64", "n_factors=256,rating_factors=64",
           "layers=128:64:32:16", "rating_reg=0.2")


def load(path: Path = DATA) -> Interactions:
    frame = pd.read_csv(path)
    return Interactions.from_ids(frame["userId"].to_numpy(), frame["movieId"].to_numpy(),
                                 frame["rating"].to_numpy(),
                                 timestamps=frame["timestamp"].to_numpy())


def triple(data: Interactions):
    return data.user_ids[data.users], data.item_ids[data.items], data.values


def measure(model, train: Interactions, test: Interactions, ranking: SampledRanking) -> dict:
    """Fit ``model`` and score it; keys starting with "_" hold per-pair figures (each held-out
    pair's user, its item's rank, its squared error) for :func:`paired`."""
    start = time.perf_counter()
    model.fit(train)
    row = {"fit s": time.perf_counter() - start}
    users, items, ratings = triple(test)
    row["_users"] = test.users
    if isinstance(model, (NeuMF, JointNeuMF)):
        row["_ranks"] = sampled_ranks(model, ranking)
        row.update(rank_metrics(row["_ranks"], 10))
        row["epochs"] = model.n_epochs_
    predict = getattr(model, "predict_rating", None) or (
        model.predict if isinstance(model, MF) else None)
    if predict is not None:
        err = predict(users, items).astype(np.float64) - ratings.astype(np.float64)
        row["_sq_err"] = err ** 2
        row["rmse"] = float(np.sqrt(np.mean(row["_sq_err"])))
    return row


def _shown(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("_")}


def paired(rows: list[dict], model: str, hr_against: str = "NeuMF",
           rmse_against: str = "MF", resamples: int = 10_000) -> str:
    """``model`` minus ``hr_against`` in HR@10 and minus ``rmse_against`` in RMSE (each
    model's RMSE over all its held-out pairs), averaged over the seeds, with a 95% interval
    from resampling the held-out users: a paired bootstrap (the same users for both models),
    where a user drawn brings every pair it has (one per ``cut`` when rows of several cuts
    are pooled). Says how large a difference the held-out pairs can tell apart."""
    n_users = 1 + max(int(r["_users"].max()) for r in rows if "_users" in r)
    seeds = sorted({r["seed"] for r in rows})

    def per_user(name, key, value):
        """[seed, user] sums of ``value(r[key])`` over the cuts, and [user] pair counts."""
        sums, counts = np.zeros((len(seeds), n_users)), np.zeros(n_users)
        for r in rows:
            if r["model"] == name:
                np.add.at(sums[seeds.index(r["seed"])], r["_users"], value(r[key]))
                if r["seed"] == seeds[0]:
                    np.add.at(counts, r["_users"], 1)
        return sums, counts

    hits, counts = per_user(model, "_ranks", lambda ranks: ranks < 10)
    hits -= per_user(hr_against, "_ranks", lambda ranks: ranks < 10)[0]
    hits = hits.mean(axis=0)
    sq_a = per_user(model, "_sq_err", lambda e: e)[0]
    sq_b = per_user(rmse_against, "_sq_err", lambda e: e)[0]
    users = np.flatnonzero(counts)
    rng = np.random.default_rng(0)
    hr_boot, rmse_boot = [], []
    for _ in range(0, resamples, 1000):
        draws = users[rng.integers(0, users.shape[0], size=(1000, users.shape[0]))]
        n = counts[draws].sum(axis=1)
        hr_boot.append(hits[draws].sum(axis=1) / n)
        rmse_boot.append((np.sqrt(sq_a[:, draws].sum(axis=2) / n)
                          - np.sqrt(sq_b[:, draws].sum(axis=2) / n)).mean(axis=0))
    n = counts.sum()
    rmse = float(np.mean(np.sqrt(sq_a.sum(axis=1) / n) - np.sqrt(sq_b.sum(axis=1) / n)))
    lines = []
    for name, value, boot in ((f"HR@10, {model} - {hr_against}", hits.sum() / n, hr_boot),
                              (f"RMSE, {model} - {rmse_against}", rmse, rmse_boot)):
        low, high = np.percentile(np.concatenate(boot), [2.5, 97.5])
        lines.append(f"{name}: {value:+.4f} (95% interval over the held-out users "
                     f"{low:+.4f} .. {high:+.4f})")
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    frame = pd.DataFrame([_shown(r) for r in rows])
    keys = [c for c in frame.columns if c not in ("model", "seed", "cut")]
    mean = frame.groupby("model", sort=False)[keys].mean()
    lines = ["| model | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, values in mean.iterrows():
        cells = ("" if np.isnan(v) else f"{v:.4f}" for v in values)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _measure_job(job) -> dict:
    name, cls, params, seed, train, test, ranking = job
    row = measure(cls(**params, random_state=seed), train, test, ranking)
    return {"model": name, "seed": seed, **row}


def run(models: dict, train, test, seeds, jobs: int, threads) -> list[dict]:
    """Every (model, seed) fit, ``jobs`` at a time (each with ``threads`` threads)."""
    from concurrent.futures import ProcessPoolExecutor

    ranking = SampledRanking.build(train, test, 99, seed=0)
    work = [(name, cls, {**params, "n_threads": threads}, seed, train, test, ranking)
            for seed in seeds for name, (cls, params) in models.items()]
    rows = []
    # spawned, not forked: the parent's OpenMP runtime (the data preparation) is not fork-safe
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for row in pool.map(_measure_job, work):
            rows.append(row)
            print(_shown(row), flush=True)
    return rows


class _TracedJointNeuMF(JointNeuMF):
    """JointNeuMF that also records the RMSE of ``rmse_pairs`` (an Interactions on the
    training data's id maps) at each epoch's validation: the fit loop's callbacks see the
    epoch's metrics, not the weights being trained. The list is shared with the copy that
    ``fit`` trains."""

    def _validation_score(self, validation):
        score = super()._validation_score(validation)
        pairs = self.rmse_pairs
        pred = self._rating_indices(pairs.users, pairs.items).astype(np.float64)
        self.rmse_curve.append(float(np.sqrt(np.mean((pred - pairs.values) ** 2))))
        return score


def _curve_job(job) -> dict:
    name, params, seed, n_epochs, train, val = job
    model_params = {**params, "n_epochs": n_epochs, "early_stopping": False,
                    "random_state": seed}
    if name == "NeuMF":
        model = NeuMF(**model_params).fit(train, validation_data=val)
        return {"model": name, "seed": seed, "hr": list(model.validation_curve_)}
    model = _TracedJointNeuMF(**model_params)
    model.rmse_pairs, model.rmse_curve = val, []
    model.fit(train, validation_data=val)
    return {"model": name, "seed": seed, "hr": list(model.validation_curve_),
            "rmse": model.rmse_curve}


def curves(models: dict, train, val, seeds, n_epochs: int, jobs: int) -> str:
    """Per-epoch validation curves of ``models`` ({name: params}); returns a Markdown table
    (peak HR@10 and its epoch, mean HR@10 over epochs 5-15, lowest RMSE and its epoch, the
    last epoch's figures) after printing every curve. Each fit's HR@10 ranks the validation
    pairs among negatives seeded by its own ``random_state``, as early stopping does."""
    from concurrent.futures import ProcessPoolExecutor

    work = [(name, params, seed, n_epochs, train, val) for seed in seeds
            for name, params in models.items()]
    lines = ["| model | seed | peak hr@10 (epoch) | mean hr@10, epochs 5-15 | lowest rmse "
             "(epoch) | last hr@10 / rmse |", "|---|---|---|---|---|---|"]
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for row in pool.map(_curve_job, work):
            print(row, flush=True)
            hr, rmse = np.array(row["hr"]), np.array(row.get("rmse", [np.nan]))
            best, low = int(np.argmax(hr)), int(np.argmin(rmse))
            rmse_cells = (f"{rmse[low]:.4f} ({low + 1})", f"{hr[-1]:.4f} / {rmse[-1]:.4f}") \
                if "rmse" in row else ("", f"{hr[-1]:.4f}")
            lines.append(f"| {row['model']} | {row['seed']} | {hr[best]:.4f} ({best + 1}) | "
                         f"{hr[4:15].mean():.4f} | {rmse_cells[0]} | {rmse_cells[1]} |")
    return "\n".join(lines)


def _number(text: str):
    if text in ("True", "False"):
        return text == "True"
    value = float(text)
    return int(value) if value.is_integer() and "." not in text else value


def _value(text: str):
    """A setting's value: a number or bool, or a tuple of ints written ``a:b:c`` (layers)."""
    return tuple(int(v) for v in text.split(":")) if ":" in text else _number(text)


def _latest(n: int) -> str:
    return {1: "latest", 2: "2nd latest", 3: "3rd latest"}.get(n, f"{n}th latest")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=("tune", "report", "curves"))
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--data", type=Path, default=DATA, help="ml-latest-small's ratings.csv")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS),
                        help="JointNeuMF settings to tune: name=value,name=value changes from "
                             "its defaults")
    parser.add_argument("--jobs", type=int, default=1, help="fits run in parallel")
    parser.add_argument("--threads", type=int, default=None,
                        help="n_threads of each fit (default: all usable cores)")
    parser.add_argument("--epochs", type=int, default=15, help="epochs of each curve")
    parser.add_argument("--cuts", type=int, default=1,
                        help="tune: validation cuts; cut c holds out each user's c-th latest "
                             "training rating and trains on the ratings before it")
    args = parser.parse_args()
    data = load(args.data)
    train, test = leave_last_out(data, single="train")
    backend = {"backend": args.backend}
    models = {"MF": (MF, backend), "NeuMF": (NeuMF, backend)}
    if args.what == "report":
        models["JointNeuMF"] = (JointNeuMF, backend)
        rows = run(models, train, test, args.seeds, args.jobs, args.threads)
        print(f"\n# ml-latest-small, test (each user's latest rating); defaults; mean of seeds "
              f"{args.seeds}; {train.nnz} training ratings, {test.nnz} held-out pairs\n")
        print(table(rows))
        print()
        print(paired(rows, "JointNeuMF"))
        return
    for config in args.configs:
        params = {k: _value(v) for k, v in (kv.split("=") for kv in config.split(","))}
        name = ", ".join(f"{k}={v}" for k, v in params.items())
        models[f"JointNeuMF({name})"] = (JointNeuMF, {**params, **backend})
    if args.what == "curves":
        train, val = leave_last_out(train, single="train")
        settings = {name: {**params, "n_threads": args.threads}
                    for name, (_, params) in models.items() if name != "MF"}
        print(curves(settings, train, val, args.seeds, args.epochs, args.jobs))
        return
    rows = []
    for cut in range(1, args.cuts + 1):
        train, val = leave_last_out(train, single="train")
        cut_rows = [{**row, "cut": cut}
                    for row in run(models, train, val, args.seeds, args.jobs, args.threads)]
        print(f"\n# ml-latest-small, validation cut {cut} (each user's {_latest(cut)} "
              f"training rating), the ratings before it only; defaults unless named; mean of "
              f"seeds {args.seeds}; {train.nnz} training ratings, {val.nnz} held-out pairs\n")
        print(table(cut_rows), flush=True)
        rows += cut_rows
    if args.cuts > 1:
        print(f"\n# all {args.cuts} cuts together (each cut's held-out pairs weigh alike): "
              f"mean of cuts and seeds {args.seeds}\n")
        print(table(rows))
    print()
    for name in models:
        if name.startswith("JointNeuMF"):
            print(paired(rows, name))


if __name__ == "__main__":
    main()
