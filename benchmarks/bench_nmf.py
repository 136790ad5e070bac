"""pytest-benchmark groups for NMF (not run in CI):

    python -m pytest benchmarks/bench_nmf.py --benchmark-only --benchmark-group-by=group

- ``nmf-iteration-<loss>-<dtype>``: one MU iteration (W then H) on the synthetic 50k x 10k
  matrix with 1M nonzeros at rank 32, every fastrec backend and scikit-learn's solver='mu'
  (BLAS limited to the same threads). Numba's JIT compile is excluded by a warm-up call.
- ``nmf-observed-ml-latest-small``: a whole fit (k=15, 50 iterations, reg 0.06) on the 80% train
  split of ml-latest-small, fastrec observed mode vs Surprise's NMF with its defaults.
``benchmarks/nmf_report.py`` prints the same comparisons as a table with speed-ups and RMSEs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _nmf_data import (  # noqa: E402
    fastrec_iteration,
    ml_latest_small_split,
    original_ids,
    sklearn_iteration,
    synthetic_counts,
)

from fastrec import NMF  # noqa: E402
from fastrec.backends import BackendUnavailable, get_backend  # noqa: E402

THREADS = 2
K = 32


@pytest.fixture(scope="module")
def synthetic():
    return synthetic_counts()


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize(("loss", "beta"), [("frobenius", 2), ("kullback-leibler", 1)])
@pytest.mark.parametrize("contender", ["cython", "numba", "sklearn"])
def test_mu_iteration(benchmark, synthetic, contender, loss, beta, dtype):
    benchmark.group = f"nmf-iteration-{loss}-{np.dtype(dtype).name}"
    if contender == "sklearn":
        pytest.importorskip("sklearn")
        run = sklearn_iteration(synthetic, K, loss, dtype)
    else:
        try:
            backend = get_backend(contender, ("nmf_update_full",))
        except BackendUnavailable as exc:
            pytest.skip(str(exc))
        run = fastrec_iteration(backend, synthetic, K, beta, dtype, THREADS)
    run()  # warm-up (JIT compile)
    with threadpool_limits(THREADS):
        benchmark.pedantic(run, rounds=7, iterations=1)


@pytest.mark.parametrize("contender", ["cython", "numba", "surprise"])
def test_observed_fit_ml_latest_small(benchmark, contender):
    split = ml_latest_small_split()
    if split is None:
        pytest.skip("ml-latest-small not found under ../shared/data")
    triple = original_ids(split[0])
    benchmark.group = "nmf-observed-ml-latest-small"
    if contender == "surprise":
        surprise = pytest.importorskip("surprise")
        import pandas as pd

        frame = pd.DataFrame({"u": triple[0], "i": triple[1], "r": triple[2]})
        trainset = surprise.Dataset.load_from_df(
            frame, surprise.Reader(rating_scale=(0.5, 5.0))).build_full_trainset()

        def run():
            surprise.NMF(random_state=0).fit(trainset)
    else:
        try:
            get_backend(contender, ("nmf_update_observed",))
        except BackendUnavailable as exc:
            pytest.skip(str(exc))

        def run():
            NMF(15, mode="observed", alpha_W=0.06, max_iter=50, tol=0, random_state=0,
                backend=contender, n_threads=THREADS).fit(triple)
    run()  # warm-up (JIT compile)
    benchmark.pedantic(run, rounds=3, iterations=1)
