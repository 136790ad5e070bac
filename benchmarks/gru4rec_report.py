"""GRU4Rec figures: training events/s of fastrec (Cython, Numba) against the same architecture in
PyTorch on the CPU, a raw GRU forward+backward step against ``torch.nn.GRU``, and Recall@20 /
MRR@20 on the shared session datasets with the same hyperparameters.

    python benchmarks/gru4rec_report.py speed    [--threads 2] [--repeats 3]
    python benchmarks/gru4rec_report.py raw      [--threads 2]
    python benchmarks/gru4rec_report.py accuracy [--threads 2] [--epochs 3] [--seeds 0 1 2]
    python benchmarks/gru4rec_report.py defaults [--threads 2] [--seeds 0 1 2] [--only torch]

``defaults``: ``fastrec.GRU4Rec()`` with its defaults (early stopping on its internal split of
the training part) against the PyTorch GRU4Rec with ``accuracy``'s hyperparameters at its best
of 1-10 epochs, chosen by Recall@20 on validation carved from the training part the way the
test set is made: on DIGINETICA (test: the sessions of the last 7 days) the latest 10% of the
training sessions, every next click scored; on the video sequences (test: each sequence's last
item) each sequence's last training item, the one before the test item. PyTorch trains on the
rest; test Recall@20 and MRR@20 are reported at the chosen epoch.

Needs ``pip install torch==2.13.0`` and ../shared/data. Speed: medians of ``--repeats``
rounds, each contender timed in a fresh process (interleaved, so they see the same machine):
in one process, one runtime's spinning worker threads (PyTorch's OpenMP and MKL, OpenBLAS,
Numba's pool) take a core from the next contender. The machine may be shared: compare ratios.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import idle_fraction  # noqa: E402

import fastrec  # noqa: E402
from fastrec.backends import get_backend  # noqa: E402
from fastrec.data import (  # noqa: E402
    Sessions,
    load_diginetica,
    load_sasrec_sequences,
    split_last_days,
    split_last_item,
)
from fastrec.model_selection import SessionSplit  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
HIDDEN, EMBEDDING = 100, 64


def speed_data(n_users: int) -> Sessions:
    frame = load_sasrec_sequences(DATA / "sequences-sasrec-video")
    return Sessions.from_frame(frame[frame.session_id <= n_users])


def fastrec_rate(data, backend, B, loss, n_sample, threads):
    model = fastrec.GRU4Rec(hidden_size=HIDDEN, embedding_size=EMBEDDING, loss=loss,
                            n_sample=n_sample, batch_size=B, n_epochs=1, backend=backend,
                            n_threads=threads, random_state=0)
    return model.fit(data).events_per_second_


def speed(args):
    data = speed_data(args.users)
    print(f"training speed, video sequences of users <= {args.users} ({data.n_events} events, "
          f"{data.n_items} items), hidden {HIDDEN}, embedding {EMBEDDING}, n_sample "
          f"{args.n_sample}, {args.threads} threads; events/s, median of {args.repeats} rounds, "
          "each run in its own process; ratios: median of the per-round ratios")
    print(f"{'batch':>5} {'loss':>14} {'cython':>9} {'numba':>9} {'torch':>9} "
          f"{'cy/torch':>8} {'nb/cy':>6}")
    for B in (32, 256):
        for loss in ("cross-entropy", "bpr-max"):
            rates = {"cython": [], "numba": [], "torch": []}
            for _ in range(args.repeats):
                for name in rates:
                    rates[name].append(_rate_in_process(name, B, loss, args))
            med = {k: statistics.median(v) for k, v in rates.items()}
            # ratios per round (the three ran back to back on the same machine), then the median
            cy, nb, pt = (np.array(rates[k]) for k in ("cython", "numba", "torch"))
            cy_torch, nb_cy = float(np.median(cy / pt)), float(np.median(nb / cy))
            print(f"{B:>5} {loss:>14} {med['cython']:>9.0f} {med['numba']:>9.0f} "
                  f"{med['torch']:>9.0f} {cy_torch:>8.2f} {nb_cy:>6.2f}", flush=True)


def _rate_in_process(impl, B, loss, args) -> float:
    cmd = [sys.executable, __file__, "rate", "--impl", impl, "--batch", str(B), "--loss", loss,
           "--threads", str(args.threads), "--users", str(args.users), "--n-sample",
           str(args.n_sample), "--torch-steps", str(args.torch_steps)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def rate(args):
    """One training rate (events/s) of one implementation: the ``speed`` worker."""
    data = speed_data(args.users)
    if args.impl == "torch":
        # imported only here: loaded first, PyTorch's bundled libgomp would also serve fastrec
        from gru4rec_torch import train_torch

        value = train_torch(data, hidden=HIDDEN, embedding=EMBEDDING, loss=args.loss,
                            n_sample=args.n_sample, batch_size=args.batch,
                            n_threads=args.threads, max_steps=args.torch_steps)[1]
    else:
        value = fastrec_rate(data, args.impl, args.batch, args.loss, args.n_sample, args.threads)
    print(value)


def raw(args):
    import torch

    torch.set_num_threads(args.threads)
    print(f"raw GRU step (forward + full backward), T={args.steps}, input {EMBEDDING}, hidden "
          f"{HIDDEN}, {args.threads} threads: milliseconds, median of {args.repeats}")
    for B in (32, 256):
        row = _raw_row(B, args.steps, args.threads, args.repeats)
        print(f"B={B:>4} " + "  ".join(f"{k} {v * 1e3:.3f}" for k, v in row.items())
              + f"  torch/cython {row['torch.nn.GRU'] / row['cython']:.2f}", flush=True)


def raw_steps(B, steps, threads):
    """One GRU forward + full backward per implementation, as zero-argument callables."""
    import torch

    rng = np.random.default_rng(0)
    X = rng.normal(size=(steps, B, EMBEDDING)).astype(np.float32)
    h0 = np.zeros((1, B, HIDDEN), np.float32)
    reset = np.zeros((steps, B), np.uint8)
    Wx0 = (0.1 * rng.normal(size=(EMBEDDING, 3 * HIDDEN))).astype(np.float32)
    Wx_rest = np.zeros((0, HIDDEN, 3 * HIDDEN), np.float32)
    Wh = (0.1 * rng.normal(size=(1, HIDDEN, 3 * HIDDEN))).astype(np.float32)
    b = np.zeros((1, 3 * HIDDEN), np.float32)
    G = rng.normal(size=(steps, B, HIDDEN)).astype(np.float32)
    fns = {}
    for name in ("cython", "numba"):
        backend = get_backend(name)

        def step(backend=backend):
            hs, gates = backend.gru_forward(X, h0, reset, Wx0, Wx_rest, Wh, b, threads)
            backend.gru_backward(X, h0, reset, Wx0, Wx_rest, Wh, b, hs, gates, G, threads)

        fns[name] = step
    gru = torch.nn.GRU(EMBEDDING, HIDDEN)
    xt, gt = torch.from_numpy(X).requires_grad_(True), torch.from_numpy(G)

    def torch_step():
        gru.zero_grad()
        out, _ = gru(xt)
        out.backward(gt)

    fns["torch.nn.GRU"] = torch_step
    return fns


def _raw_row(B, steps, threads, repeats):
    return {name: _time(fn, repeats) for name, fn in raw_steps(B, steps, threads).items()}


def _time(fn, repeats, inner=50):
    fn()
    samples = []
    for _ in range(repeats):
        tick = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - tick) / inner)
    return statistics.median(samples)


def _mean_std(values):
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} +- {std:.4f}"


def accuracy(args):
    from gru4rec_torch import to_fastrec, train_torch

    sets = _test_sets()
    params = dict(hidden_size=HIDDEN, embedding_size=EMBEDDING, loss=args.loss,
                  n_sample=args.n_sample, batch_size=args.batch, n_epochs=args.epochs,
                  learning_rate=args.lr, eps=args.eps)
    print(f"next-item accuracy, {params}, seeds {args.seeds} (the same seed gives both sides "
          "the same initial weights and negatives)")
    for title, split in sets.items():
        data = Sessions.from_frame(split.train)
        results = {"fastrec cython": [], "pytorch": []}
        for seed in args.seeds:
            model = fastrec.GRU4Rec(**params, backend="cython", n_threads=args.threads,
                                    random_state=seed).fit(split.train)
            ours = model.evaluate(split.test, k=20, eval_from=split.eval_from)
            torch_model, _, seconds = train_torch(
                data, hidden=HIDDEN, embedding=EMBEDDING, loss=args.loss,
                n_sample=args.n_sample, batch_size=args.batch, n_epochs=args.epochs,
                learning_rate=args.lr, eps=args.eps, n_threads=args.threads, seed=seed)
            theirs = to_fastrec(torch_model, data.item_ids, HIDDEN, EMBEDDING).evaluate(
                split.test, k=20, eval_from=split.eval_from)
            results["fastrec cython"].append(ours)
            results["pytorch"].append(theirs)
            print(f"{title} seed {seed}: {ours['n_events']} test events\n"
                  f"  fastrec cython  Recall@20 {ours['recall']:.4f}  MRR@20 {ours['mrr']:.4f}  "
                  f"(fit {model.fit_time_:.1f} s)\n"
                  f"  pytorch         Recall@20 {theirs['recall']:.4f}  MRR@20 "
                  f"{theirs['mrr']:.4f}  (fit {seconds:.1f} s)", flush=True)
        if len(args.seeds) > 1:
            print(f"{title}: mean +- std over {len(args.seeds)} seeds")
            for name, runs in results.items():
                print(f"  {name:<15} Recall@20 {_mean_std([r['recall'] for r in runs])}  "
                      f"MRR@20 {_mean_std([r['mrr'] for r in runs])}")
            pairs = list(zip(results["fastrec cython"], results["pytorch"], strict=True))
            diff = [a["recall"] - b["recall"] for a, b in pairs]
            diff_mrr = [a["mrr"] - b["mrr"] for a, b in pairs]
            print(f"  fastrec - pytorch (paired)  Recall@20 {_mean_std(diff)}  "
                  f"MRR@20 {_mean_std(diff_mrr)}", flush=True)


def _test_sets(names=("diginetica", "video")):
    loaders = {
        "diginetica": ("sessions-diginetica-sample (last 7 days)", lambda: split_last_days(
            load_diginetica(DATA / "sessions-diginetica-sample"), 7.0)),
        "video": ("sequences-sasrec-video (last item)", lambda: split_last_item(
            load_sasrec_sequences(DATA / "sequences-sasrec-video"))),
    }
    return {loaders[name][0]: loaders[name][1]() for name in names}


def validation_split(split):
    """The PyTorch side's training and validation sessions, carved from ``split.train`` the
    way ``split`` tests: for leave-last-out (``eval_from="last"``) each sequence's last
    training item is validation (SASRec's protocol: the one before the test item), otherwise
    the latest 10% of the training sessions with every next click scored. Returns
    (item index, training Sessions, validation sessions, validation ``eval_from``)."""
    data = Sessions.from_frame(split.train)
    if split.eval_from == "last":
        inner = split_last_item(split.train)
        fit_part = Sessions.from_frame(inner.train, item_ids=data.item_ids, unknown="drop")
        return data.item_ids, fit_part, inner.test, "last"
    fit_sessions, held = next(SessionSplit(test_size=0.1).split(data))
    return data.item_ids, data.subset(fit_sessions), data.subset(held), "second"


def torch_best_epoch(split, args, seed):
    """The PyTorch GRU4Rec of ``accuracy`` trained up to 10 epochs on the training part minus
    its validation part (``validation_split``); returns (test metrics at the epoch of the best
    validation Recall@20, that epoch, seconds)."""
    from gru4rec_torch import to_fastrec, train_torch

    item_ids, fit_part, validation, eval_from = validation_split(split)
    best = (-1.0, 0, None)  # validation Recall@20, epoch, model

    def score(epoch, net):
        nonlocal best
        model = to_fastrec(net, item_ids, HIDDEN, EMBEDDING)  # copies the weights
        recall = model.evaluate(validation, k=20, eval_from=eval_from)["recall"]
        print(f"  pytorch seed {seed} epoch {epoch}: validation Recall@20 {recall:.4f}",
              flush=True)
        if recall > best[0]:
            best = (recall, epoch, model)

    _, _, seconds = train_torch(fit_part, hidden=HIDDEN, embedding=EMBEDDING, loss=args.loss,
                                n_sample=args.n_sample, batch_size=args.batch, n_epochs=10,
                                learning_rate=args.lr, eps=args.eps, n_threads=args.threads,
                                seed=seed, after_epoch=score)
    _, epoch, model = best
    return model.evaluate(split.test, k=20, eval_from=split.eval_from), epoch, seconds


def defaults(args):
    sides = ("fastrec", "torch") if args.only is None else (args.only,)
    idle, tick = idle_fraction(), time.perf_counter()
    setup = (f"fastrec.GRU4Rec() defaults vs PyTorch GRU4Rec (hidden {HIDDEN}, embedding "
             f"{EMBEDDING}, {args.loss}, n_sample {args.n_sample}, batch {args.batch}, lr "
             f"{args.lr}) at its best of 1-10 epochs on validation; seeds {args.seeds}; "
             f"{args.threads} threads; machine {idle:.0%} idle at the start")
    print(setup)
    rows = []
    for title, split in _test_sets(args.sets).items():
        results = {side: [] for side in sides}
        for seed in args.seeds:
            if "fastrec" in sides:
                model = fastrec.GRU4Rec(n_threads=args.threads, random_state=seed).fit(
                    split.train)
                ours = model.evaluate(split.test, k=20, eval_from=split.eval_from)
                results["fastrec"].append(ours)
                rows.append((title, "fastrec defaults", seed, ours,
                             f"{model.best_epoch_} of {model.n_epochs_} run", model.fit_time_))
                print(f"{title} seed {seed}: fastrec defaults Recall@20 {ours['recall']:.4f} "
                      f"MRR@20 {ours['mrr']:.4f} (best epoch {model.best_epoch_} of "
                      f"{model.n_epochs_} run, fit {model.fit_time_:.1f} s)", flush=True)
            if "torch" in sides:
                theirs, epoch, seconds = torch_best_epoch(split, args, seed)
                results["torch"].append(theirs)
                rows.append((title, "pytorch", seed, theirs, f"{epoch} of 10", seconds))
                print(f"{title} seed {seed}: pytorch Recall@20 {theirs['recall']:.4f} MRR@20 "
                      f"{theirs['mrr']:.4f} (best epoch {epoch}, train {seconds:.1f} s)",
                      flush=True)
        for side, runs in results.items():
            print(f"{title}: {side} mean of {len(runs)} seeds: Recall@20 "
                  f"{_mean_std([r['recall'] for r in runs])}  MRR@20 "
                  f"{_mean_std([r['mrr'] for r in runs])}", flush=True)
            name = {"fastrec": "fastrec defaults", "torch": "pytorch"}[side]
            rows.append((title, name, "mean", {m: statistics.mean(r[m] for r in runs)
                                               for m in ("recall", "mrr")}, "", float("nan")))
    if args.out is not None:
        _write_defaults(args.out, setup, rows, time.perf_counter() - tick)


def _write_defaults(path, setup, rows, seconds):
    """The ``defaults`` figures as a markdown table, with the command that made them."""
    command = "python benchmarks/gru4rec_report.py " + " ".join(sys.argv[1:])
    lines = ["# GRU4Rec defaults against the PyTorch GRU4Rec", "",
             f"Made by `{command}` ({seconds:.0f} s). {setup}. Fit and train times are wall "
             "seconds (fastrec: the whole fit with its internal validation; PyTorch: the "
             "training steps of its 10 epochs, without validation).", "",
             "| data | model | seed | Recall@20 | MRR@20 | epoch kept | seconds |",
             "|---|---|---|---|---|---|---|"]
    for title, name, seed, metrics, epoch, secs in rows:
        time_cell = "" if secs != secs else f"{secs:.1f}"
        lines.append(f"| {title} | {name} | {seed} | {metrics['recall']:.4f} | "
                     f"{metrics['mrr']:.4f} | {epoch} | {time_cell} |")
    Path(path).write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("speed", "raw", "accuracy", "rate", "defaults"))
    parser.add_argument("--only", choices=("fastrec", "torch"),
                        help="defaults: run one side only")
    parser.add_argument("--out", type=Path,
                        help="defaults: also write the figures as a markdown table there")
    parser.add_argument("--sets", nargs="+", choices=("diginetica", "video"),
                        default=["diginetica", "video"], help="defaults: the datasets")
    parser.add_argument("--impl", choices=("cython", "numba", "torch"), default="cython",
                        help="rate: which implementation")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--n-sample", type=int, default=2048)
    parser.add_argument("--torch-steps", type=int, default=200)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--loss", default="cross-entropy")
    parser.add_argument("--eps", type=float, default=1e-6, help="Adagrad epsilon (both sides)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="accuracy: fastrec random_state and the peer's seed; several "
                        "seeds print mean +- std")
    args = parser.parse_args()
    {"speed": speed, "raw": raw, "accuracy": accuracy, "rate": rate,
     "defaults": defaults}[args.what](args)


if __name__ == "__main__":
    main()
