"""Data and one-iteration callables shared by the NMF benchmarks (bench_nmf.py, nmf_report.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from fastrec._algorithms.nmf_mu import CSRPair, pad_columns

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ML_SMALL = DATA_DIR / "ml-latest-small" / "ratings.csv"


def synthetic_counts(n_rows=50_000, n_cols=10_000, nnz=1_000_000, seed=0) -> sp.csr_matrix:
    """Uniformly scattered nonzeros (duplicates summed, so slightly under ``nnz``), values in
    [0.1, 1.1): the issue's 50k x 10k, 1M-nonzero matrix."""
    rng = np.random.default_rng(seed)
    rows, cols = rng.integers(0, n_rows, nnz), rng.integers(0, n_cols, nnz)
    x = sp.csr_matrix((rng.random(nnz) + 0.1, (rows, cols)), shape=(n_rows, n_cols))
    x.sum_duplicates()
    return x


def initial_factors(shape, k, dtype, seed=1):
    rng = np.random.default_rng(seed)
    w = (np.abs(rng.standard_normal((shape[0], k))) * 0.1).astype(dtype)
    h = (np.abs(rng.standard_normal((k, shape[1]))) * 0.1).astype(dtype)
    return w, h


def fastrec_iteration(backend, x: sp.csr_matrix, k: int, beta: int, dtype, n_threads: int):
    """One MU iteration (W then H) of fastrec's full mode, as a zero-argument callable."""
    pair = CSRPair.build(x, dtype)
    w, h = initial_factors(x.shape, k, dtype)
    # The tables as the NMF estimator lays them out (padded rank, 64-byte aligned rows).
    width = backend.row_width("nmf", k, dtype)
    w, ht = pad_columns(w, width), pad_columns(h.T, width)

    def run():
        backend.nmf_update_full(*pair.rows, w, ht, beta, 0.0, 0.0, n_threads)
        backend.nmf_update_full(*pair.cols, ht, w, beta, 0.0, 0.0, n_threads)

    return run


def sklearn_iteration(x: sp.csr_matrix, k: int, beta_loss: str, dtype):
    """One iteration of scikit-learn's solver='mu' (its W update, then its H update: the two
    functions its fit loop calls), as a zero-argument callable."""
    from sklearn.decomposition import _nmf

    xd = sp.csr_matrix(x, dtype=dtype)
    w, h = initial_factors(x.shape, k, dtype)
    beta = _nmf._beta_loss_to_float(beta_loss)
    state = {"w": w, "h": h}

    def run():
        state["w"], *_ = _nmf._multiplicative_update_w(xd, state["w"], state["h"], beta, 0, 0, 1)
        state["h"] = _nmf._multiplicative_update_h(xd, state["w"], state["h"], beta, 0, 0, 1)

    return run


def ml_latest_small_split(seed=0):
    """ml-latest-small ratings, random 80/20 split (fastrec.data.random_split): (train, test)
    Interactions sharing id maps, or None when the shared data folder is absent."""
    if not ML_SMALL.exists():
        return None
    from fastrec.data.loaders import load_movielens
    from fastrec.data.splits import random_split

    return random_split(load_movielens(ML_SMALL), test_size=0.2, random_state=seed)


def original_ids(data):
    """(user ids, item ids, ratings) of an Interactions in its original ids."""
    return data.user_ids[data.users], data.item_ids[data.items], data.values
