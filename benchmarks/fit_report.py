"""Whole-``fit()`` figures of the data-path issue, side by side in one run; prints markdown.

    python benchmarks/fit_report.py [--threads 2] [--repeats 3] [--nnz 5000000]
                                    [--skip-libmf] [--skip-nmf] [--skip-rss] [--only-nmf]

1. Data preparation of ``--nnz`` synthetic ratings (100k x 20k at 5M), median of the repeats:
   the id mapping with its duplicate check (``Interactions.from_any`` on a tuple of id arrays,
   and on a CSR matrix), the seen-items CSR and the SGD block layout, at ``--threads``.
2. MF whole fit, 20 epochs, k=32 and k=100, fastest of ``--repeats``: fastrec (Cython, input a
   tuple of id arrays) against LIBMF's AVX + OpenMP build (``../shared/tools/build-libmf-avx.sh``;
   input its (n, 3) float32 array), both at ``--threads`` threads, runs interleaved.
3. NMF whole fit, rank 32, 50 iterations (tol=0), 1M nonzeros (50k x 10k), Frobenius and KL:
   fastrec (its prepare + initialisation / train split) against scikit-learn's solver="mu"
   with BLAS limited to the same threads, fed the float64 matrix and a float32 copy, each with
   its default initialisation (NNDSVDa for both at this rank), and the final errors.
   ``--only-nmf`` runs this table alone (about 2 minutes on 2 quiet cores).
4. Peak RSS of a 5M-rating MF fit (k=32, 1 epoch) in a fresh process, counted from just
   before ``fit`` (``/proc/self/clear_refs`` resets the peak), against the input arrays' size.

The idle share of the machine is printed first: on a shared machine, figures taken while other
processes run are slower and noisier (take the fastest run, compare within one run).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import idle_fraction  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LIBMF_SCRIPT = ROOT.parent / "shared" / "tools" / "build-libmf-avx.sh"


def ratings_arrays(nnz: int):
    """users int32, items int32, ratings float32 of the synthetic set (cached in /tmp: the
    generator takes a while at 5M)."""
    cache = Path(os.environ.get("TMPDIR", "/tmp")) / f"fastrec-fit-report-{nnz}.npz"
    if not cache.exists():
        from fastrec.data import synthetic_ratings

        data = synthetic_ratings(nnz // 50, nnz // 250, nnz, seed=0).interactions
        np.savez(cache, users=data.users, items=data.items, values=data.values)
    with np.load(cache) as f:
        return f["users"], f["items"], f["values"]


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def median_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def prepare_breakdown(users, items, values, threads: int, repeats: int) -> None:
    import scipy.sparse as sp

    from fastrec._algorithms.sgd_schedule import BlockedRatings
    from fastrec.data import Interactions

    os.environ["OMP_NUM_THREADS"] = str(threads)
    matrix = sp.csr_matrix((values, (users, items)))
    data = Interactions.from_any((users, items, values))
    steps = {
        "ids + duplicate check (tuple)": lambda: Interactions.from_any((users, items, values)),
        "ids + duplicate check (CSR)": lambda: Interactions.from_any(matrix),
        "seen-items CSR": data.seen_csr,
        "SGD block layout (G=16)": lambda: BlockedRatings.build(
            data.users, data.items, data.values, data.n_users, data.n_items, 16,
            np.random.default_rng(0), n_threads=threads),
    }
    print(f"\n### Data preparation, {users.shape[0]:,} ratings, {threads} threads "
          f"(median of {repeats})\n\n| step | seconds |\n| --- | --- |")
    total = 0.0
    for name, fn in steps.items():
        fn()
        t = median_of(fn, repeats)
        if "CSR)" not in name:
            total += t
        print(f"| {name} | {t:.3f} |")
    print(f"| **total (tuple input)** | **{total:.3f}** |")


def libmf_module():
    so = subprocess.check_output([str(LIBMF_SCRIPT)], text=True).strip()
    os.environ["LIBMF_OBJ"] = so
    sys.path.insert(0, str(Path(so).parent / "libmf-0.9.2"))
    from libmf import mf

    mf.mf = ctypes.CDLL(so)
    return mf


def mf_table(users, items, values, threads: int, repeats: int, with_libmf: bool) -> None:
    import fastrec

    libmf = libmf_module() if with_libmf else None
    triples = np.column_stack([users, items, values]).astype(np.float32)
    print(f"\n### MF whole fit, {users.shape[0]:,} ratings, 20 epochs, {threads} threads "
          f"(fastest of {repeats})\n")
    print("| k | fastrec s | prepare s | LIBMF s | fastrec / LIBMF speed |\n"
          "| --- | --- | --- | --- | --- |")
    for k in (32, 100):
        fast, slow, prep = [], [], []
        for _ in range(repeats):
            model = fastrec.MF(n_factors=k, n_epochs=20, backend="cython", n_threads=threads,
                               random_state=0)
            start = time.perf_counter()
            model.fit((users, items, values))
            fast.append(time.perf_counter() - start)
            prep.append(getattr(model, "timings_", {}).get("prepare", float("nan")))
            if libmf is not None:
                peer = libmf.MF(k=k, nr_threads=threads, nr_iters=20, quiet=True)
                start = time.perf_counter()
                peer.fit(triples)
                slow.append(time.perf_counter() - start)
        best = min(fast)
        other = min(slow) if slow else float("nan")
        print(f"| {k} | {best:.2f} | {prep[int(np.argmin(fast))]:.2f} | {other:.2f} | "
              f"{other / best:.2f}x |")


def nmf_table(threads: int, repeats: int) -> None:
    """fastrec NMF (Cython, float32, its default) against scikit-learn's solver="mu" fed the
    float64 matrix (its dtype follows the input's) and fed a float32 copy, each with its default
    NNDSVDa initialisation (fastrec: block Krylov SVD; scikit-learn: randomized SVD, 7 power
    iterations); whole ``fit`` wall time, fastest of ``repeats``, runs interleaved, and each
    model's final error sqrt(2 * Frobenius or KL divergence) on the same X."""
    import warnings

    from _nmf_data import synthetic_counts
    from sklearn.decomposition import NMF as SkNMF
    from threadpoolctl import threadpool_limits

    import fastrec

    x = synthetic_counts()
    x32 = x.astype(np.float32)
    print(f"\n### NMF whole fit, {x.shape[0]} x {x.shape[1]}, {x.nnz:,} nonzeros, rank 32, "
          f"50 iterations (tol=0), {threads} threads, fastest of {repeats}\n")
    print("| loss | fastrec s (prepare + init / train) | scikit-learn s, float64 X | speed-up "
          "| scikit-learn s, float32 X | speed-up | final error fastrec / sklearn64 / "
          "sklearn32 |\n|---|---|---|---|---|---|---|")
    for loss in ("frobenius", "kullback-leibler"):
        ours, theirs64, theirs32 = [], [], []
        for _ in range(repeats):
            model = fastrec.NMF(32, beta_loss=loss, max_iter=50, tol=0, backend="cython",
                                n_threads=threads, random_state=0)
            start = time.perf_counter()
            model.fit(x)
            ours.append((time.perf_counter() - start, model.timings_, model.reconstruction_err_))
            for data, out in ((x, theirs64), (x32, theirs32)):
                peer = SkNMF(32, solver="mu", beta_loss=loss, max_iter=50, tol=0,
                             random_state=0)
                with threadpool_limits(threads), warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # max_iter reached: the point of the run
                    start = time.perf_counter()
                    peer.fit(data)
                    out.append((time.perf_counter() - start, peer.reconstruction_err_))
        best, timings, error = min(ours, key=lambda run: run[0])
        t64, t32 = min(theirs64)[0], min(theirs32)[0]
        print(f"| {loss} | {best:.2f} ({timings['prepare']:.2f} / {timings['train']:.2f}) | "
              f"{t64:.2f} | **{t64 / best:.1f}x** | {t32:.2f} | {t32 / best:.1f}x | "
              f"{error:.4f} / {theirs64[0][1]:.4f} / {theirs32[0][1]:.4f} |")


_RSS_CHILD = """
import sys, numpy as np
sys.path.insert(0, {root!r})
import fastrec
with np.load({path!r}) as f:
    users, items, values = f["users"], f["items"], f["values"]
fastrec.MF(n_factors=8, n_epochs=1, backend="cython", n_threads={threads}).fit(
    (users[:1000], items[:1000], values[:1000]))
def status(field):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field)) * 1024
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
before = status("VmRSS")
fastrec.MF(n_factors=32, n_epochs=1, backend="cython", n_threads={threads}).fit(
    (users, items, values))
print(before, status("VmHWM"), users.nbytes + items.nbytes + values.nbytes)
"""


def rss_report(nnz: int, threads: int) -> None:
    ratings_arrays(nnz)
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"fastrec-fit-report-{nnz}.npz"
    out = subprocess.check_output([sys.executable, "-c", _RSS_CHILD.format(
        root=str(ROOT), path=str(path), threads=threads)], text=True)
    before, peak, size = (int(v) for v in out.split()[-3:])
    mb = 1 / 2**20
    print(f"\n### Peak RSS of a {nnz:,}-rating MF fit (k=32, 1 epoch)\n\n"
          f"input arrays {size * mb:.0f} MB; RSS before fit {before * mb:.0f} MB, peak during "
          f"fit {peak * mb:.0f} MB: the fit added {(peak - before) * mb:.0f} MB = "
          f"{(peak - before) / size:.2f}x the input")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nnz", type=int, default=5_000_000)
    parser.add_argument("--skip-libmf", action="store_true")
    parser.add_argument("--skip-nmf", action="store_true")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--only-nmf", action="store_true")
    args = parser.parse_args()
    print(f"machine idle: {idle_fraction():.0%}")
    if args.only_nmf:
        nmf_table(args.threads, args.repeats)
        print(f"\nmachine idle at the end: {idle_fraction():.0%}")
        return
    users, items, values = ratings_arrays(args.nnz)
    prepare_breakdown(users, items, values, args.threads, args.repeats)
    mf_table(users, items, values, args.threads, args.repeats, not args.skip_libmf)
    if not args.skip_nmf:
        nmf_table(args.threads, args.repeats)
    if not args.skip_rss:
        rss_report(args.nnz, args.threads)
    print(f"\nmachine idle at the end: {idle_fraction():.0%}")


if __name__ == "__main__":
    main()
