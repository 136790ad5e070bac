"""The NCF networks written in PyTorch (CPU), the baseline of ``bench_ncf.py``: the same layout,
initial weights, samples and order as fastrec's kernels.

Two optimiser set-ups: ``sparse=False`` is the usual PyTorch NCF (dense embedding gradients,
``torch.optim.Adam`` over every parameter); ``sparse=True`` uses sparse embedding gradients
with ``torch.optim.SparseAdam`` (lazy Adam, the same update rule as fastrec's) plus Adam for the
dense layers, the fastest stock PyTorch formulation.

torch is a benchmark extra (``pip install torch==2.13.0``); nothing in fastrec imports this.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class TorchNCF(nn.Module):
    """GMF (layers empty), MLP (n_gmf = 0) or NeuMF, initialised from fastrec's flat arrays."""

    def __init__(self, user_emb: np.ndarray, item_emb: np.ndarray, dense: np.ndarray,
                 layers, n_gmf: int, sparse: bool = False):
        super().__init__()
        self.n_gmf = n_gmf
        self.user = nn.Embedding.from_pretrained(torch.from_numpy(user_emb.copy()), freeze=False,
                                                 sparse=sparse)
        self.item = nn.Embedding.from_pretrained(torch.from_numpy(item_emb.copy()), freeze=False,
                                                 sparse=sparse)
        self.hidden = nn.ModuleList()
        off = 0
        for fan_in, fan_out in zip(layers[:-1], layers[1:], strict=True):
            fan_in, fan_out = int(fan_in), int(fan_out)
            linear = nn.Linear(fan_in, fan_out)
            with torch.no_grad():
                w = dense[off:off + fan_in * fan_out].reshape(fan_in, fan_out)
                linear.weight.copy_(torch.from_numpy(w.T.copy()))
                off += fan_in * fan_out
                linear.bias.copy_(torch.from_numpy(dense[off:off + fan_out].copy()))
                off += fan_out
            self.hidden.append(linear)
        self.has_mlp = len(layers) > 0
        width = n_gmf + (int(layers[-1]) if len(layers) else 0)
        self.out = nn.Linear(width, 1)
        with torch.no_grad():
            self.out.weight.copy_(torch.from_numpy(dense[off:off + width].copy())[None, :])
            self.out.bias.copy_(torch.from_numpy(dense[off + width:off + width + 1].copy()))

    def forward(self, users, items):
        pu, qi = self.user(users), self.item(items)
        g = self.n_gmf
        parts = []
        if g:
            parts.append(pu[:, :g] * qi[:, :g])
        if self.has_mlp:
            x = torch.cat([pu[:, g:], qi[:, g:]], dim=1)
            for linear in self.hidden:
                x = torch.relu(linear(x))
            parts.append(x)
        return self.out(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]).squeeze(1)


    def optimizers(self, lr: float, sparse: bool) -> list:
        if not sparse:
            return [torch.optim.Adam(self.parameters(), lr=lr)]
        embeddings = [self.user.weight, self.item.weight]
        dense = [p for n, p in self.named_parameters() if not n.startswith(("user.", "item."))]
        return [torch.optim.SparseAdam(embeddings, lr=lr), torch.optim.Adam(dense, lr=lr)]


def train_epoch(model, optimizers, users, items, targets, batch_size: int) -> float:
    """One epoch over pre-drawn samples (torch tensors) in the given order; returns the summed
    BCE loss (each batch's loss read once, as a training loop that logs it would)."""
    loss_fn = nn.BCEWithLogitsLoss()
    total = torch.zeros((), dtype=torch.float64)
    for start in range(0, users.shape[0], batch_size):
        u = users[start:start + batch_size]
        i = items[start:start + batch_size]
        y = targets[start:start + batch_size]
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(u, i), y)
        loss.backward()
        for opt in optimizers:
            opt.step()
        total += loss.detach() * u.shape[0]
    return float(total)


def scores(model, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(users.astype(np.int64)),
                     torch.from_numpy(items.astype(np.int64))).numpy()
