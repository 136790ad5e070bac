"""Whole fits on the GPU next to the same fit on Cython: MF, NMF (full and observed), GMF,
NeuMF and GRU4Rec through their estimators, each group holding a ``cuda`` and a ``cython`` row
so the ratio is read side by side.

    python -m pytest benchmarks/bench_cuda_models.py --benchmark-group-by=group \
        --benchmark-json=benchmarks/results/cuda_models.json

A fit reads its loss back every epoch, which synchronises the device, and the fitted arrays
stay on it; one warm-up round keeps NVRTC's first-use compile out of the timings. Skipped, with
the reason, where no device is usable (the Cython rows too: they exist for the ratio).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from _nmf_data import synthetic_counts  # benchmarks/
from conftest import cuda_backend  # benchmarks/

from fastrec import GMF, MF, NMF, GRU4Rec, NeuMF
from fastrec.data import synthetic_ratings
from fastrec.data.sessions import synthetic_sessions

THREADS = int(os.environ.get("FASTREC_BENCH_THREADS", "2"))
_DATA: dict = {}


def _data(name: str):
    if name not in _DATA:
        if name == "ratings":
            d = synthetic_ratings(50_000, 10_000, 1_000_000, seed=0).interactions
            _DATA[name] = (d.users, d.items, d.values)
        elif name == "positive-ratings":  # NMF needs non-negative ratings
            users, items, values = _data("ratings")
            _DATA[name] = (users, items, np.clip(values, 0.5, 5.0))
        elif name == "counts":
            _DATA[name] = synthetic_counts()
        elif name == "implicit":
            d = synthetic_ratings(6_000, 3_000, 200_000, seed=1).interactions
            _DATA[name] = (d.users, d.items)
        else:
            _DATA[name] = synthetic_sessions(n_sessions=20_000, n_items=5_000, mean_length=8.0)
    return _DATA[name]


MODELS = {
    "mf-k32-5epochs": (lambda b: MF(n_factors=32, n_epochs=5, random_state=0, backend=b,
                                    n_threads=THREADS), "ratings"),
    "nmf-frobenius-k32-10it": (lambda b: NMF(32, max_iter=10, tol=0, random_state=0, backend=b,
                                             n_threads=THREADS), "counts"),
    "nmf-kl-k32-10it": (lambda b: NMF(32, beta_loss="kullback-leibler", max_iter=10, tol=0,
                                      random_state=0, backend=b, n_threads=THREADS), "counts"),
    "nmf-observed-k15-10it": (lambda b: NMF(15, mode="observed", alpha_W=0.06, max_iter=10,
                                            tol=0, random_state=0, backend=b,
                                            n_threads=THREADS), "positive-ratings"),
    "gmf-1epoch": (lambda b: GMF(n_factors=16, n_epochs=1, batch_size=2048, random_state=0,
                                 backend=b, n_threads=THREADS), "implicit"),
    "neumf-1epoch": (lambda b: NeuMF(n_factors=16, layers=(64, 32, 16, 8), n_epochs=1,
                                     batch_size=2048, random_state=0, backend=b,
                                     n_threads=THREADS), "implicit"),
    "gru4rec-1epoch": (lambda b: GRU4Rec(hidden_size=100, embedding_size=64, n_sample=2048,
                                         batch_size=256, n_epochs=1, random_state=0, backend=b,
                                         n_threads=THREADS), "sessions"),
}


@pytest.mark.parametrize("backend", ["cuda", "cython"])
@pytest.mark.parametrize("model", list(MODELS))
def test_fit(benchmark, model, backend):
    cuda_backend()
    make, data_name = MODELS[model]
    data = _data(data_name)
    benchmark.group = f"fit-{model}-{THREADS}threads"
    benchmark.name = backend
    benchmark.pedantic(lambda: make(backend).fit(data), rounds=3, warmup_rounds=1)
