"""NCF benchmark report: training throughput (samples/s) of fastrec's kernels against the same
networks in PyTorch, and HR@10/NDCG@10 on ml-latest-small (NCF protocol) for both.

    python benchmarks/ncf_report.py throughput --threads 2 --repeats 5
    python benchmarks/ncf_report.py accuracy --epochs 10
    python benchmarks/ncf_report.py defaults --epochs 10 --seeds 0 1 2

Throughput: one epoch slice on ml-latest-small's training positives (synthetic data of the same
shape when the dataset is absent) with 4 negatives per positive; fastrec's time includes
negative sampling, PyTorch's does not (its samples are drawn beforehand, vectorised). Backends
are measured interleaved, repetition by repetition, and medians reported, because the machine
may be shared. Needs ``pip install torch==2.13.0``.
"""

from __future__ import annotations

import os

# Same OpenMP spin policy for fastrec and torch (both use libgomp): a short spin, then sleep.
os.environ.setdefault("GOMP_SPINCOUNT", "20000")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fastrec import NeuMF  # noqa: E402
from fastrec._algorithms.ncf import (  # noqa: E402
    OptimizerState,
    epoch_order,
    init_params,
)
from fastrec._algorithms.sampling import draw_negatives  # noqa: E402
from fastrec.backends import get_backend  # noqa: E402
from fastrec.data.interactions import Interactions  # noqa: E402
from fastrec.evaluation import SampledRanking, evaluate_sampled, leave_last_out  # noqa: E402
from fastrec.models._base import seen_matrix  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small" / "ratings.csv"
CONFIGS = {"GMF": (32, []), "MLP": (0, [64, 32, 16, 8]), "NeuMF": (32, [64, 32, 16, 8])}
N_NEG = 4


def load_split():
    if DATA.is_file():
        frame = pd.read_csv(DATA)
        data = Interactions.from_frame(frame)
        source = "ml-latest-small"
    else:
        rng = np.random.default_rng(0)
        n_users, n_items = 610, 9724
        users = rng.integers(0, n_users, 100_836)
        items = np.minimum(rng.zipf(1.3, 100_836) - 1, n_items - 1)
        data = Interactions.from_ids(users, items, np.ones(users.shape[0]),
                                     timestamps=np.arange(users.shape[0]))
        source = "synthetic (ml-latest-small absent)"
    train, test = leave_last_out(data, single="train")
    return train, test, source


class Problem:
    """Positives, seen CSR and pre-drawn samples of one epoch, in fastrec's slot order."""

    def __init__(self, train: Interactions, n_samples: int, seed=7, epoch=0):
        self.train = train
        self.users = np.ascontiguousarray(train.users)
        self.items = np.ascontiguousarray(train.items.astype(train.users.dtype))
        seen = seen_matrix(train)
        seen.sort_indices()
        self.indptr = seen.indptr.astype(np.int64)
        self.indices = seen.indices.astype(train.users.dtype)
        self.order = epoch_order(train.nnz, N_NEG, np.random.default_rng(1))[:n_samples]
        self.seed, self.epoch = seed, epoch

    def samples(self):
        """(users, items, targets) of the slots in order, drawn as fastrec's kernel draws."""
        p, j = self.order // (N_NEG + 1), self.order % (N_NEG + 1)
        negatives = draw_negatives(self.users, self.indptr, self.indices, self.train.n_items,
                                   N_NEG, self.seed, self.epoch, p)
        items = np.where(j == 0, self.items[p], negatives[np.arange(p.shape[0]),
                                                           np.maximum(j - 1, 0)])
        return self.users[p], items, (j == 0).astype(np.float32)


def time_fastrec(backend, problem, n_gmf, layers, batch, threads):
    kernels = get_backend(backend, ("ncf_train_epoch",))
    user_emb, item_emb, dense = init_params(problem.train.n_users, problem.train.n_items, n_gmf,
                                            layers, np.float32, np.random.default_rng(0))
    state = OptimizerState.zeros(user_emb, item_emb, dense)
    start = time.perf_counter()
    kernels.ncf_train_epoch(problem.users, problem.items, np.ones(problem.users.shape[0],
                                                                  np.float32),
                            problem.indptr, problem.indices, problem.order, N_NEG, problem.seed,
                            problem.epoch, user_emb, item_emb, dense, layers, n_gmf, 0, 0, 1e-3,
                            0.9, 0.999, 1e-8, 0, state.dense1, state.dense2, state.user1,
                            state.user2, state.item1, state.item2, batch, threads)
    return problem.order.shape[0] / (time.perf_counter() - start)


def time_torch(samples, problem, n_gmf, layers, batch, sparse, n_steps):
    import torch
    from ncf_torch import TorchNCF, train_epoch

    user_emb, item_emb, dense = init_params(problem.train.n_users, problem.train.n_items, n_gmf,
                                            layers, np.float32, np.random.default_rng(0))
    model = TorchNCF(user_emb, item_emb, dense, layers, n_gmf, sparse)
    optimizers = model.optimizers(1e-3, sparse)
    n = min(samples[0].shape[0], n_steps * batch)
    u, i, y = (torch.from_numpy(np.ascontiguousarray(a[:n]).astype(np.int64 if k < 2 else
                                                                    np.float32))
               for k, a in enumerate(samples))
    train_epoch(model, optimizers, u[:2 * batch], i[:2 * batch], y[:2 * batch], batch)  # warm
    start = time.perf_counter()
    train_epoch(model, optimizers, u, i, y, batch)
    return n / (time.perf_counter() - start)


def throughput(args):
    import torch

    torch.set_num_threads(args.threads)
    train, _, source = load_split()
    problem = Problem(train, args.samples)
    samples = problem.samples()
    print(f"# NCF training throughput, samples/s (positives + {N_NEG} negatives each), "
          f"{args.threads} thread(s), float32, Adam lr 1e-3; data: {source}, "
          f"{problem.order.shape[0]} samples per fastrec measurement; median of "
          f"{args.repeats} interleaved repetitions; torch {torch.__version__}")
    names = ["cython", "numba", "torch", "torch_sparse"]
    rows = []
    for model in args.models:
        n_gmf, layers = CONFIGS[model]
        layers = np.array(layers, np.int64)
        for batch in (256, 2048):
            for backend in ("cython", "numba"):  # compile / warm up outside the timing
                time_fastrec(backend, Problem(train, 4096), n_gmf, layers, batch, args.threads)
            runs = {name: [] for name in names}
            for _ in range(args.repeats):
                for name in names:
                    if name.startswith("torch"):
                        value = time_torch(samples, problem, n_gmf, layers, batch,
                                           name == "torch_sparse", args.torch_steps)
                    else:
                        value = time_fastrec(name, problem, n_gmf, layers, batch, args.threads)
                    runs[name].append(value)
            med = {k: float(np.median(v)) for k, v in runs.items()}
            rows.append({"model": model, "batch": batch, **{k: round(v) for k, v in med.items()},
                         "cython/torch": med["cython"] / med["torch"],
                         "cython/torch_sparse": med["cython"] / med["torch_sparse"],
                         "numba/cython": med["numba"] / med["cython"]})
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))


class TorchScorer:
    def __init__(self, model):
        self.model = model

    def _predict_indices(self, users, items):
        from ncf_torch import scores

        return scores(self.model, users, items)


def torch_neumf(train, ranking, n_gmf, layers, epochs, seed, sparse):
    """PyTorch NeuMF (Adam, lr 1e-3, batch 256) trained ``epochs`` epochs with the same
    initial weights, positives, negatives and order as ``NeuMF(random_state=seed).fit`` draws;
    returns (metrics on ``ranking`` at the last epoch, seconds)."""
    import torch
    from ncf_torch import TorchNCF, train_epoch

    rng = np.random.default_rng(seed)
    user_emb, item_emb, dense = init_params(train.n_users, train.n_items, n_gmf, layers,
                                            np.float32, rng, 0.01)
    sample_seed = int(rng.integers(0, 2**63))
    net = TorchNCF(user_emb, item_emb, dense, layers, n_gmf, sparse)
    optimizers = net.optimizers(1e-3, sparse)
    start = time.perf_counter()
    for epoch in range(epochs):
        problem = Problem(train, None, sample_seed, epoch)
        problem.order = epoch_order(train.nnz, N_NEG, rng)
        u, i, y = problem.samples()
        train_epoch(net, optimizers, torch.from_numpy(u.astype(np.int64)),
                    torch.from_numpy(i.astype(np.int64)), torch.from_numpy(y), 256)
    return evaluate_sampled(TorchScorer(net), ranking), time.perf_counter() - start


def defaults(args):
    """``NeuMF()`` with its defaults (early stopping on each user's latest training
    interaction, then a refit on all of it for the chosen epochs) against the PyTorch NeuMF of
    ``accuracy`` at its last epoch, per seed."""
    import torch

    torch.set_num_threads(args.threads)
    train, test, source = load_split()
    ranking = SampledRanking.build(train, test, 99, seed=0)
    layers = np.array([64, 32, 16, 8], np.int64)
    shown = ("n_factors", "layers", "n_negatives", "learning_rate", "batch_size", "n_epochs",
             "early_stopping", "n_iter_no_change", "refit")
    defaults = NeuMF()
    print(f"# NeuMF() defaults ({', '.join(f'{k}={getattr(defaults, k)}' for k in shown)}) "
          f"vs PyTorch NeuMF (n_factors {args.factors}, layers "
          f"{layers.tolist()}, {args.epochs} epochs, Adam lr 1e-3, batch 256, {N_NEG} negatives) "
          f"at its last epoch on {source}: leave-last-out by timestamp, "
          f"{ranking.users.shape[0]} test users, 99 sampled negatives; seeds {args.seeds}; "
          f"{args.threads} threads; the machine is shared")
    sides = ("fastrec", "torch") if args.only is None else (args.only,)
    results = {side: [] for side in sides}
    for seed in args.seeds:
        if "fastrec" in sides:
            model = NeuMF(n_threads=args.threads, random_state=seed).fit(train)
            metrics = evaluate_sampled(model, ranking)
            results["fastrec"].append(metrics["hr@10"])
            print(f"seed {seed}: fastrec NeuMF() HR@10 {metrics['hr@10']:.4f} NDCG@10 "
                  f"{metrics['ndcg@10']:.4f} (best epoch {model.best_epoch_} of "
                  f"{model.n_epochs_} run, fit {model.fit_time_:.1f} s)", flush=True)
        if "torch" in sides:
            metrics, seconds = torch_neumf(train, ranking, args.factors, layers, args.epochs,
                                           seed, False)
            results["torch"].append(metrics["hr@10"])
            print(f"seed {seed}: pytorch NeuMF HR@10 {metrics['hr@10']:.4f} NDCG@10 "
                  f"{metrics['ndcg@10']:.4f} (epoch {args.epochs}, train {seconds:.1f} s)",
                  flush=True)
    for side, runs in results.items():
        print(f"{side}: mean HR@10 over {len(runs)} seeds {np.mean(runs):.4f} "
              f"(per seed {[round(v, 4) for v in runs]})")


def accuracy(args):
    import torch

    torch.set_num_threads(args.threads)
    train, test, source = load_split()
    ranking = SampledRanking.build(train, test, 99, seed=0)
    n_gmf, layers = args.factors, np.array([64, 32, 16, 8], np.int64)
    hyper = dict(n_factors=n_gmf, layers=tuple(layers.tolist()), n_epochs=args.epochs,
                 batch_size=256, learning_rate=1e-3, n_negatives=N_NEG, random_state=args.seed)
    print(f"# NeuMF on {source}: leave-last-out by timestamp, {ranking.users.shape[0]} test "
          f"users, 99 sampled negatives; {hyper}")
    results = {}
    for backend in ("cython", "numba"):
        start = time.perf_counter()
        model = NeuMF(backend=backend, n_threads=args.threads, **hyper).fit(train)
        results[f"fastrec-{backend}"] = (evaluate_sampled(model, ranking),
                                         time.perf_counter() - start)
        print(f"fastrec[{backend}]", results[f"fastrec-{backend}"], flush=True)
    for sparse in (False, True):
        name = "torch-sparse-adam" if sparse else "torch-adam"
        results[name] = torch_neumf(train, ranking, n_gmf, layers, args.epochs, args.seed,
                                    sparse)
        print(name, results[name], flush=True)
    for name, (metrics, seconds) in results.items():
        print(f"{name:20s} HR@10 {metrics['hr@10']:.4f}  NDCG@10 {metrics['ndcg@10']:.4f}  "
              f"fit {seconds:.1f}s")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("throughput", "accuracy", "defaults"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="defaults: the random_state of each run")
    parser.add_argument("--only", choices=("fastrec", "torch"),
                        help="defaults: run one side only")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--torch-steps", type=int, default=100,
                        help="mini-batches per torch measurement")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--factors", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0, help="random_state of the models")
    parser.add_argument("--models", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    args = parser.parse_args()
    {"throughput": throughput, "accuracy": accuracy, "defaults": defaults}[args.what](args)


if __name__ == "__main__":
    main()
