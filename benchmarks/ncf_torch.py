"""The NCF networks written in PyTorch (CPU), the baseline of ``bench_ncf.py``: the same layout,
initial weights, samples and order as fastrec's kernels, trained with ``torch.optim.Adam``.

torch is a benchmark extra (``pip install torch==2.13.0``); nothing in fastrec imports this.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class TorchNCF(nn.Module):
    """GMF (layers empty), MLP (n_gmf = 0) or NeuMF, initialised from fastrec's flat arrays."""

    def __init__(self, user_emb: np.ndarray, item_emb: np.ndarray, dense: np.ndarray,
                 layers, n_gmf: int):
        super().__init__()
        self.n_gmf = n_gmf
        self.user = nn.Embedding.from_pretrained(torch.from_numpy(user_emb.copy()), freeze=False)
        self.item = nn.Embedding.from_pretrained(torch.from_numpy(item_emb.copy()), freeze=False)
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


def train_epoch(model, optimizer, users, items, targets, batch_size: int) -> float:
    """One epoch over pre-drawn samples (torch tensors) in the given order; returns the summed
    BCE loss."""
    loss_fn = nn.BCEWithLogitsLoss()
    total = 0.0
    for start in range(0, users.shape[0], batch_size):
        u = users[start:start + batch_size]
        i = items[start:start + batch_size]
        y = targets[start:start + batch_size]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(u, i), y)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * u.shape[0]
    return total


def scores(model, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(users.astype(np.int64)),
                     torch.from_numpy(items.astype(np.int64))).numpy()
