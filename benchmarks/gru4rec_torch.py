"""The same GRU4Rec architecture in PyTorch (CPU), as the peer of fastrec's kernels in the
benchmarks: one GRU layer in GRU4Rec's form (reset before the recurrent product), sparse input
embedding and sparse output table with a bias column, in-batch plus shared sampled negatives,
cross-entropy or BPR-max, Adagrad with sparse gradients (torch.optim.Adagrad uses the same
``lr g / (sqrt(acc) + eps)`` step as fastrec).

It trains on fastrec's session-parallel schedule; with the same seed it starts from the same
initial weights as ``fastrec.GRU4Rec(random_state=seed)`` and draws the same negatives
(fastrec's alias table and counter-based RNG under the seed fastrec derives, precomputed per
epoch outside the timed loop, as GRU4Rec's own PyTorch code precomputes a sample store), and the
trained weights are copied into a fastrec ``GRU4Rec`` so both are evaluated by the same code.
In float64 both train to the same weights (to rounding); in float32 rounding makes the runs part
after a few hundred steps, so compare accuracies over several seeds.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from fastrec._algorithms.gru4rec import GRU4RecParams, alias_table, session_parallel_schedule
from fastrec._algorithms.sampling import sample_negatives
from fastrec.backends._contract import gru_layout, rng_streams
from fastrec.models import GRU4Rec


def fastrec_draws(n_items: int, hidden: int, embedding: int, seed, dtype=np.float32):
    """What ``fastrec.GRU4Rec(random_state=seed).fit`` draws, in its order: the seed of the
    counter-based RNG (negatives) and the initial weights (``GRU4RecParams.init``), so the peer
    starts from the same weights and samples the same negatives as fastrec with the same seed."""
    rng = np.random.default_rng(seed)
    rng_seed = int(rng.integers(0, 2**63 - 1))
    return rng_seed, GRU4RecParams.init(n_items, hidden, 1, embedding, np.dtype(dtype), rng)


class TorchGRU4Rec(torch.nn.Module):
    """One GRU layer over a sparse embedding, sparse output table with a bias column; the
    weights start as fastrec's ``GRU4RecParams`` (GRU4Rec's uniform init, zero biases)."""

    def __init__(self, params: GRU4RecParams, hidden: int, embedding: int):
        super().__init__()
        H, D = hidden, embedding
        w = gru_layout(1, H, D, True).views(params.gru)
        self.emb = torch.nn.Embedding.from_pretrained(torch.from_numpy(params.emb.copy()),
                                                      freeze=False, sparse=True)
        self.wx0 = torch.nn.Parameter(torch.from_numpy(w.wx0.copy()))
        self.wh = torch.nn.Parameter(torch.from_numpy(w.wh[0].copy()))
        self.b = torch.nn.Parameter(torch.from_numpy(w.b[0].copy()))
        self.out = torch.nn.Embedding.from_pretrained(torch.from_numpy(params.out.copy()),
                                                      freeze=False, sparse=True)
        self.H = H

    def step(self, items, h):
        H = self.H
        a = self.emb(items) @ self.wx0 + self.b
        hz = h @ self.wh[:, :2 * H]
        r = torch.sigmoid(a[:, :H] + hz[:, :H])
        z = torch.sigmoid(a[:, H:2 * H] + hz[:, H:])
        n = torch.tanh(a[:, 2 * H:] + (r * h) @ self.wh[:, 2 * H:])
        return (1 - z) * h + z * n

    def loss(self, h, samples, loss: str, bpreg: float):
        w = self.out(samples)
        scores = h @ w[:, :-1].T + w[:, -1]
        B = h.shape[0]
        if loss == "cross-entropy":
            return torch.nn.functional.cross_entropy(scores, torch.arange(B))
        target = scores[torch.arange(B), torch.arange(B)][:, None]
        mask = torch.ones_like(scores, dtype=torch.bool)
        mask[torch.arange(B), torch.arange(B)] = False
        s = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)
        P = torch.sum(s * torch.sigmoid(target - scores), dim=1)
        R = torch.sum(s * scores * scores, dim=1)
        return torch.mean(-torch.log(P + 1e-24) + bpreg * R)


def train_torch(data, *, hidden=100, embedding=64, loss="cross-entropy", n_sample=2048,
                sample_alpha=0.5, bpreg=1.0, batch_size=32, n_epochs=1, learning_rate=0.05,
                eps=1e-6, n_threads=2, seed=0, max_steps=None, dtype=np.float32,
                after_epoch=None):
    """Train on fastrec ``Sessions``; returns (model, events_per_second, seconds). ``seed``
    plays fastrec's ``random_state``: same initial weights, same negatives. ``after_epoch``
    (if given) is called as ``after_epoch(epoch, model)`` after each epoch (from 1), outside
    the timing."""
    torch.set_num_threads(n_threads)
    order = np.argsort(data.start_times, kind="stable") if data.start_times is not None else None
    schedule = session_parallel_schedule(data.items, data.offsets, batch_size, order)
    support = np.bincount(data.items, minlength=data.n_items).astype(np.float64)
    prob, alias = alias_table(support ** sample_alpha, np.int64)
    rng_seed, params = fastrec_draws(data.n_items, hidden, embedding, seed, dtype)
    model = TorchGRU4Rec(params, hidden, embedding)
    opt = torch.optim.Adagrad(model.parameters(), lr=learning_rate, eps=eps)
    inputs = torch.from_numpy(schedule.inputs.astype(np.int64))
    targets = torch.from_numpy(schedule.targets.astype(np.int64))
    keep = torch.from_numpy(1.0 - schedule.reset.astype(dtype))
    n_steps = schedule.n_steps if max_steps is None else min(max_steps, schedule.n_steps)
    seconds, events = 0.0, 0
    for epoch in range(n_epochs):
        negatives = torch.from_numpy(np.stack([
            sample_negatives(prob, alias, n_sample, rng_seed, rng_streams(epoch).negatives,
                             s * n_sample) for s in range(n_steps)]).astype(np.int64))
        h = torch.zeros(batch_size, hidden, dtype=model.wh.dtype)
        tick = time.perf_counter()
        for s in range(n_steps):
            h = model.step(inputs[s], h.detach() * keep[s][:, None])
            samples = torch.cat([targets[s], negatives[s]])
            opt.zero_grad()
            model.loss(h, samples, loss, bpreg).backward()
            opt.step()
        seconds += time.perf_counter() - tick
        events += n_steps * batch_size
        if after_epoch is not None:
            after_epoch(epoch + 1, model)
    return model, events / seconds, seconds


def to_fastrec(model: TorchGRU4Rec, item_ids, hidden: int, embedding: int) -> GRU4Rec:
    """A fastrec GRU4Rec holding the torch model's weights (same layout), for evaluation."""
    dtype = model.wh.detach().numpy().dtype
    est = GRU4Rec(hidden_size=hidden, embedding_size=embedding, dtype=dtype)
    est.item_ids_ = np.asarray(item_ids)
    est.n_items_ = est.item_ids_.shape[0]
    est.input_embedding_ = model.emb.weight.detach().numpy().copy()
    est.gru_weights_ = np.concatenate([model.wx0.detach().numpy().ravel(),
                                       model.wh.detach().numpy().ravel(),
                                       model.b.detach().numpy().ravel()]).astype(dtype)
    est.output_table_ = model.out.weight.detach().numpy().copy()
    est.loss_curve_ = []
    est.backend_ = "pytorch"  # fitted (by PyTorch): evaluate and recommend_next accept it
    return est
