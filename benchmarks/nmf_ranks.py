"""NMF full mode at small and large ranks: fastrec against scikit-learn's solver="mu", same run.

    python benchmarks/nmf_ranks.py [--threads 2] [--rounds 3] [--iterations 20]
                                   [--backends cython,numba] [--no-defaults]

The matrix is ml-latest-small as a 610 x 9,724 users x movies matrix (100,836 ratings, float32),
factorised as scikit-learn does (absent entries are zeros).

1. Ranks 16, 64, 256 and full (610), Frobenius and Kullback-Leibler: each contender fits
   ``--iterations`` iterations from the same random start (init="custom", tol=0, so both run
   every iteration and measure the error at the start and every 10 iterations, as their fit
   loops do). Reported: wall seconds per iteration (median over ``--rounds`` rounds; contenders
   alternate within a round), the process CPU seconds per iteration (all threads summed: less
   sensitive to other processes than the wall clock), and both final errors (the same
   iterations, so they agree to float32 rounding). scikit-learn's BLAS is limited to
   ``--threads`` threads, fastrec runs ``n_threads=--threads``.
2. Defaults: ``NMF(n_components=None)`` (rank 610, init nndsvda, 200 iterations at most,
   tol 1e-4) against scikit-learn's ``NMF(solver="mu")`` with its defaults, one fit each.

The table goes to benchmarks/results/nmf_ranks.md (with this command and the machine's idle
share before and after) and to stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _nmf_data import ML_SMALL  # noqa: E402
from conftest import idle_fraction  # noqa: E402

import fastrec  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "nmf_ranks.md"
LOSSES = ("frobenius", "kullback-leibler")


def ratings_matrix(dtype=np.float32) -> sp.csr_matrix:
    """ml-latest-small as a users x movies CSR matrix of ratings."""
    import pandas as pd

    df = pd.read_csv(ML_SMALL)
    users = pd.factorize(df["userId"])[0]
    items = pd.factorize(df["movieId"])[0]
    return sp.csr_matrix((df["rating"].to_numpy(dtype), (users, items)))


def random_start(x: sp.csr_matrix, k: int, seed: int = 0):
    """scikit-learn's init="random" scaling: sqrt(mean(X) / k) |N(0, 1)|."""
    rng = np.random.default_rng(seed)
    scale = np.sqrt(x.sum() / (x.shape[0] * x.shape[1]) / k)
    w = (scale * np.abs(rng.standard_normal((x.shape[0], k)))).astype(x.dtype)
    h = (scale * np.abs(rng.standard_normal((k, x.shape[1])))).astype(x.dtype)
    return w, h


def timed(fit):
    """(wall seconds, process CPU seconds, fitted model) of ``fit()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    model = fit()
    return time.perf_counter() - wall, time.process_time() - cpu, model


def contenders(x, k, beta_loss, iterations, threads, backends):
    """{name: zero-argument fit} from the same start."""
    w, h = random_start(x, k)
    out = {}
    for backend in backends:
        def fit(backend=backend):
            model = fastrec.NMF(k, beta_loss=beta_loss, init="custom", max_iter=iterations,
                                tol=0, backend=backend, n_threads=threads)
            return model.fit(x, W=w, H=h)
        out[f"fastrec {backend}"] = fit

    def fit_sklearn():
        from sklearn.decomposition import NMF

        model = NMF(k, solver="mu", beta_loss=beta_loss, init="custom", max_iter=iterations,
                    tol=0)
        with threadpool_limits(threads, "blas"):
            return model.fit(x, W=w.copy(), H=h.copy())
    out["scikit-learn"] = fit_sklearn
    return out


def rank_rows(x, ranks, threads, rounds, iterations, backends) -> list[str]:
    rows = []
    for k in ranks:
        for beta_loss in LOSSES:
            fits = contenders(x, k, beta_loss, iterations, threads, backends)
            for fit in fits.values():
                fit()  # warm-up: Numba compile, first-touch allocations
            samples = {name: [] for name in fits}
            for r in range(rounds):
                names = list(fits) if r % 2 == 0 else list(reversed(fits))
                for name in names:
                    samples[name].append(timed(fits[name]))
            sk_wall = np.median([s[0] for s in samples["scikit-learn"]])
            for name, runs in samples.items():
                wall = float(np.median([s[0] for s in runs])) / iterations
                cpu = float(np.median([s[1] for s in runs])) / iterations
                err = runs[-1][2].reconstruction_err_
                ratio = sk_wall / (wall * iterations)
                rows.append(f"| {k} | {beta_loss} | {name} | {wall:.4f} | {cpu:.4f} | "
                            f"{err:.6g} | {ratio:.2f}x |")
                print(rows[-1], flush=True)
    return rows


def default_rows(x, threads) -> list[str]:
    """One fit each with the defaults (rank None: 610)."""
    from sklearn.decomposition import NMF

    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter
        wall, cpu, model = timed(lambda: fastrec.NMF(n_threads=threads).fit(x))
        rows.append(f"| fastrec NMF() [{model.backend_}] | {model.n_components_} | "
                    f"{model.n_iter_} | {wall:.2f} | {cpu:.2f} | {model.reconstruction_err_:.6g} |")
        print(rows[-1], flush=True)
        with threadpool_limits(threads, "blas"):
            wall, cpu, model = timed(lambda: NMF(solver="mu").fit(x))
        rows.append(f"| scikit-learn NMF(solver='mu') | {model.n_components_} | {model.n_iter_} "
                    f"| {wall:.2f} | {cpu:.2f} | {model.reconstruction_err_:.6g} |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--ranks", default="16,64,256,full")
    parser.add_argument("--backends", default="cython,numba")
    parser.add_argument("--no-defaults", action="store_true")
    args = parser.parse_args()
    if not ML_SMALL.exists():
        sys.exit(f"{ML_SMALL} not found")
    x = ratings_matrix()
    ranks = [min(x.shape) if r == "full" else int(r) for r in args.ranks.split(",")]
    idle_before = idle_fraction(2.0)
    print(f"machine idle before: {idle_before:.0%}", flush=True)
    rows = rank_rows(x, ranks, args.threads, args.rounds, args.iterations,
                     args.backends.split(","))
    defaults = [] if args.no_defaults else default_rows(x, args.threads)
    idle_after = idle_fraction(2.0)
    command = "python benchmarks/nmf_ranks.py " + " ".join(sys.argv[1:])
    lines = [
        "# NMF full mode by rank: fastrec vs scikit-learn solver='mu'",
        "",
        f"Command: `{command.strip()}`",
        "",
        f"ml-latest-small as a {x.shape[0]} x {x.shape[1]} matrix ({x.nnz} ratings, float32), "
        f"{args.threads} threads each (scikit-learn's BLAS limited to them), "
        f"{args.iterations} iterations from the same random start, median of {args.rounds} "
        f"rounds. Machine idle before/after: {idle_before:.0%} / {idle_after:.0%} (a shared "
        "machine: other processes ran during the measurements; CPU s is the process's CPU "
        "time, all threads summed).",
        "",
        "| rank | loss | contender | wall s / iteration | CPU s / iteration | final error | "
        "scikit-learn wall / this |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *rows,
    ]
    if defaults:
        lines += ["", "Defaults, one fit each:", "",
                  "| model | rank | iterations | wall s | CPU s | error |",
                  "| --- | --- | --- | --- | --- | --- |", *defaults]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"machine idle after: {idle_after:.0%}; written to {RESULTS}")


if __name__ == "__main__":
    main()
