"""Sweeps that chose the defaults of MF, NeuMF and GRU4Rec, on validation data only.

    python benchmarks/tune_defaults.py mf        # benchmarks/results/tuning_mf.md
    python benchmarks/tune_defaults.py neumf     # benchmarks/results/tuning_neumf.md
    python benchmarks/tune_defaults.py gru4rec   # benchmarks/results/tuning_gru4rec.md

Each family is split the way it is evaluated, then validation is carved out of the training
part (the test part is never read):
- MF: ml-latest-small rows permuted by ``default_rng(0)``, the first 80% train (the issue's
  split); a random 10% of those rows (``default_rng(1)``) is validation, the other 90% fitted.
- NeuMF: ml-latest-small, each user's latest interaction is the test set; of the rest, each
  user's latest is validation (HR@10 among 99 sampled items, the NCF protocol). Besides the
  sweep, the whole default fit (early stopping on the fitted part's own split, then refit) is
  scored on that validation part. Run it with ``PYTHONPATH=.`` from the repository root so the
  checkout's fastrec is imported.
- GRU4Rec: DIGINETICA sample (sessions of the last 7 days are test) and sequences-sasrec-video
  (each sequence's last item is test); of the training part, the latest 10% of the sessions
  (by first timestamp) are validation, scored on every next click (Recall@20, MRR@20).

Every configuration trains up to ``max epochs`` with the validation metric measured after each
epoch; the table gives its best epoch (what early stopping keeps) and the value there. Grids
are coarse on purpose: the machine is shared and the epoch count is early stopping's job.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import SHARED_DATA, idle_fraction  # noqa: E402

import fastrec  # noqa: E402
from fastrec.data import (  # noqa: E402
    load_diginetica,
    load_sasrec_sequences,
    split_last_days,
    split_last_item,
)
from fastrec.data.interactions import Interactions  # noqa: E402
from fastrec.evaluation import SampledRanking, evaluate_sampled, leave_last_out  # noqa: E402
from fastrec.model_selection import SessionSplit  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

MF_GRID = {"n_factors": (32, 64, 128), "learning_rate": (0.02, 0.03, 0.05),
           "reg": (0.05, 0.1, 0.15)}
MF_EPOCHS = 40
# NeuMF: one change at a time from the former defaults, then the best changes together
NEUMF_BASE = {"n_factors": 32, "layers": (64, 32, 16, 8), "learning_rate": 0.001,
              "n_negatives": 4, "batch_size": 256, "init_std": 0.01}
NEUMF_VARIANTS = ({}, {"learning_rate": 0.002}, {"n_negatives": 8}, {"n_factors": 64},
                  {"layers": (128, 64, 32, 16)}, {"batch_size": 128}, {"init_std": 0.1},
                  {"n_negatives": 8, "n_factors": 64}, {"n_negatives": 8, "learning_rate": 0.002},
                  {"n_factors": 64, "learning_rate": 0.002})
NEUMF_SEEDS = (0, 1)
NEUMF_EPOCHS = 12
# the whole default fit (early stopping, refit) of the former and the new defaults
NEUMF_DEFAULT_FITS = ({**NEUMF_BASE, "refit": False}, NEUMF_BASE, {},
                      {**NEUMF_BASE, "n_negatives": 8})
SEEDS = (0, 1, 2)
GRU_GRID = {"loss": ("cross-entropy", "bpr-max"), "embedding_size": (0, 64),
            "batch_size": (32, 64)}
GRU_EPOCHS = 10


def mf_split():
    frame = pd.read_csv(SHARED_DATA / "ml-latest-small" / "ratings.csv")
    frame = frame.iloc[np.random.default_rng(0).permutation(len(frame))]
    train = frame.iloc[:int(0.8 * len(frame))]
    mask = np.random.default_rng(1).random(len(train)) < 0.9
    as_triple = lambda f: (f.userId.to_numpy(), f.movieId.to_numpy(), f.rating.to_numpy())  # noqa: E731
    return as_triple(train[mask]), as_triple(train[~mask])


def tune_mf(args):
    fit_part, validation = mf_split()
    rows = []
    for values in itertools.product(*MF_GRID.values()):
        params = dict(zip(MF_GRID, values, strict=True))
        model = fastrec.MF(n_epochs=MF_EPOCHS, random_state=0, n_threads=args.threads,
                           early_stopping=False, **params).fit(fit_part, validation)
        curve = np.array(model.validation_curve_)
        best = int(np.argmin(curve))
        rows.append({**params, "best_epoch": best + 1, "val_rmse": curve[best],
                     **{f"val_rmse_at_{e}": curve[e - 1] for e in (10, 15, 20)},
                     "train_s_per_epoch": model.timings_["train"] / MF_EPOCHS})
        print(rows[-1], flush=True)
    return pd.DataFrame(rows).sort_values("val_rmse"), (
        "train = the first 80% of ml-latest-small's rows permuted by `default_rng(0)`; of it a "
        "random 90% (`default_rng(1)`) is fitted and 10% is validation. The test 20% is not "
        f"read. Other parameters at MF's defaults (inverse lr schedule, lr_decay 0.05), "
        f"{MF_EPOCHS} epochs, best epoch by validation RMSE; the inverse schedule does not depend "
        "on the total number of epochs, so epoch e of these runs is the `n_epochs=e` model "
        "(`val_rmse_at_e`); the time per epoch includes the validation scoring.")


def neumf_split():
    """(fitted part, validation part) of ml-latest-small's training part (the test part, each
    user's latest interaction, is dropped unread)."""
    data = Interactions.from_frame(pd.read_csv(SHARED_DATA / "ml-latest-small" / "ratings.csv"))
    train, _ = leave_last_out(data, single="train")
    return leave_last_out(train, single="train")


def neumf_curve(job):
    """Validation HR@10 after each epoch of one configuration and seed (no early stopping)."""
    params, seed = job
    fit_part, validation = neumf_split()
    model = fastrec.NeuMF(**{**NEUMF_BASE, **params}, n_epochs=NEUMF_EPOCHS, random_state=seed,
                          n_threads=1, early_stopping=False).fit(fit_part, validation)
    return list(model.validation_curve_), model.timings_["train"] / NEUMF_EPOCHS


def neumf_default_fit(job):
    """Validation HR@10 of ``NeuMF(**params).fit(fitted part)``: early stopping on the fitted
    part's own latest interactions, then (with ``refit``) a refit on all of the fitted part."""
    params, seed = job
    fit_part, validation = neumf_split()
    model = fastrec.NeuMF(**params, random_state=seed, n_threads=1).fit(fit_part)
    ranking = SampledRanking.build(fit_part, validation, 99, seed=0)
    return (evaluate_sampled(model, ranking, 10)["hr@10"], model.best_epoch_, model.n_epochs_,
            model.fit_time_)


def tune_neumf(args):
    from concurrent.futures import ProcessPoolExecutor

    jobs = [(params, seed) for params in NEUMF_VARIANTS for seed in NEUMF_SEEDS]
    fits = [(params, seed) for params in NEUMF_DEFAULT_FITS for seed in SEEDS]
    # spawned, not forked: an OpenMP runtime started in the parent is not fork-safe
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        curves = list(pool.map(neumf_curve, jobs))
        scores = list(pool.map(neumf_default_fit, fits))
    rows = []
    for k, params in enumerate(NEUMF_VARIANTS):
        runs = curves[k * len(NEUMF_SEEDS):(k + 1) * len(NEUMF_SEEDS)]
        mean = np.mean([curve for curve, _ in runs], axis=0)
        rows.append({"changed": _changed(params) or "(none: the former defaults)",
                     "best_epochs": " ".join(
                         str(int(np.argmax(curve)) + 1) for curve, _ in runs),
                     "val_hr10_best": float(np.mean([max(curve) for curve, _ in runs])),
                     "val_hr10_last": float(mean[-1]),
                     "mean_curve": " ".join(f"{v:.3f}" for v in mean),
                     "train_s_per_epoch": float(np.mean([s for _, s in runs]))})
        print(rows[-1], flush=True)
    fit_rows = []
    for k, params in enumerate(NEUMF_DEFAULT_FITS):
        runs = scores[k * len(SEEDS):(k + 1) * len(SEEDS)]
        fit_rows.append({"NeuMF(...)": _changed(params) or "(the new defaults)",
                         "val_hr10_mean": float(np.mean([r[0] for r in runs])),
                         "val_hr10_per_seed": " ".join(f"{r[0]:.4f}" for r in runs),
                         "best_epochs": " ".join(str(r[1]) for r in runs),
                         "epochs_run": " ".join(str(r[2]) for r in runs),
                         "fit_s": float(np.mean([r[3] for r in runs]))})
        print(fit_rows[-1], flush=True)
    table = pd.DataFrame(rows).sort_values("val_hr10_best", ascending=False)
    return None, (
        "ml-latest-small; each user's latest interaction (by timestamp) is the test set and not "
        "read; of the rest, each user's latest is validation (HR@10 among 99 sampled items), the "
        "others are fitted.\n\n## The sweep\n\nChanges from the former defaults "
        f"{NEUMF_BASE} (Adam), {NEUMF_EPOCHS} epochs without early stopping, validation HR@10 "
        f"after every epoch, seeds {NEUMF_SEEDS}: `best_epochs` per seed, `val_hr10_best` the "
        "mean over seeds of each curve's best (what early stopping aims at), `mean_curve` the "
        "curve averaged over the seeds. One thread per run, runs in parallel.\n\n"
        + markdown(table) + "\n\n## The whole default fit\n\n"
        "`NeuMF(...).fit(fitted part)` as a user calls it: early stopping on the fitted part's "
        "own latest interactions (`n_iter_no_change` 3), the best epoch's weights, or with "
        "`refit=True` (the new default) weights retrained from the same start on all of the "
        "fitted part for the best epoch's number of epochs; scored on the validation part, "
        f"seeds {SEEDS}. Holding out each user's latest interaction costs the model the most "
        "telling interaction under a leave-latest-out protocol: the refit gives it back.\n\n"
        + markdown(pd.DataFrame(fit_rows)))


def _changed(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def gru_sets(names):
    loaders = {
        "diginetica": lambda: split_last_days(
            load_diginetica(SHARED_DATA / "sessions-diginetica-sample"), 7.0).train,
        "video": lambda: split_last_item(
            load_sasrec_sequences(SHARED_DATA / "sequences-sasrec-video")).train,
    }
    return {name: loaders[name]() for name in names}


def tune_gru4rec(args):
    rows = []
    for name, train in gru_sets(args.sets).items():
        fit_rows, val_rows = next(SessionSplit(test_size=0.1).split(train))
        fit_part, validation = train.iloc[fit_rows], train.iloc[val_rows]
        for values in itertools.product(*GRU_GRID.values()):
            params = dict(zip(GRU_GRID, values, strict=True))
            model = fastrec.GRU4Rec(n_epochs=GRU_EPOCHS, random_state=0,
                                    n_threads=args.threads, early_stopping=True,
                                    n_iter_no_change=2, **params).fit(fit_part, validation)
            best = model.best_epoch_
            metrics = model.evaluate(validation, k=20)
            rows.append({"data": name, **params, "best_epoch": best,
                         "epochs_run": model.n_epochs_, "val_recall20": metrics["recall"],
                         "val_mrr20": metrics["mrr"],
                         "train_s_per_epoch": model.timings_["train"] / model.n_epochs_})
            print(rows[-1], flush=True)
    return pd.DataFrame(rows).sort_values(["data", "val_recall20"], ascending=[True, False]), (
        " and ".join({"diginetica": "DIGINETICA sample (test: sessions ending in the last 7 "
                                      "days)",
                        "video": "sequences-sasrec-video (test: each sequence's last item)"}[s]
                       for s in args.sets)
        + "; no test part is read. Of the training part the "
        "latest 10% of the sessions (`fastrec.model_selection.SessionSplit(test_size=0.1)`) are "
        "validation, scored on every next click. Other parameters at GRU4Rec's defaults "
        "(hidden 100, n_sample 2048, Adagrad lr 0.05); up to "
        f"{GRU_EPOCHS} epochs with early stopping on validation Recall@20 (patience 2), the "
        "best epoch's weights kept and scored.")


def markdown(table: pd.DataFrame) -> str:
    def cell(v):
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |"
              for row in table.itertuples(index=False)]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("family", choices=("mf", "neumf", "gru4rec"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=2,
                        help="neumf: runs in parallel, one thread each")
    parser.add_argument("--sets", nargs="+", choices=("diginetica", "video"),
                        default=["diginetica", "video"], help="gru4rec: the datasets swept")
    args = parser.parse_args()
    idle = idle_fraction()
    start = time.perf_counter()
    table, how = {"mf": tune_mf, "neumf": tune_neumf, "gru4rec": tune_gru4rec}[args.family](args)
    out = RESULTS / f"tuning_{args.family}.md"
    out.write_text(
        f"# {args.family} defaults: validation sweep\n\n"
        f"Made by `python benchmarks/tune_defaults.py {args.family} "
        f"{f'--jobs {args.jobs}' if args.family == 'neumf' else f'--threads {args.threads}'}"
        f"{' --sets ' + ' '.join(args.sets) if args.family == 'gru4rec' else ''}` "
        f"({time.perf_counter() - start:.0f} s; the machine was shared, {idle:.0%} idle at the "
        f"start: per-epoch times are indicative only). {how}\n"
        + ("" if table is None else "\n" + markdown(table) + "\n"))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
