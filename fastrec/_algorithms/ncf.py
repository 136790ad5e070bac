"""NCF driver helpers: parameter layout and initialisation, epoch sample order, training state.

The layouts are the kernel contract's (``fastrec.backends._contract.NCF_LAYOUT_DOC``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastrec._array import array_module
from fastrec.backends._contract import OPTIMIZERS  # noqa: F401 (the NCF estimators' names)

LOSSES = {"bce": 0, "squared": 1}
MAX_WIDTHS = 32  # NCF_MAX_WIDTHS in csrc/include/fastrec/ncf_cpu.h


def check_layers(layers, n_gmf: int) -> np.ndarray:
    """int64 MLP widths; raises ValueError when they cannot form a tower."""
    widths = np.asarray(list(layers) if layers is not None else [], dtype=np.int64)
    if widths.ndim != 1:
        raise ValueError(f"layers must be a flat list of widths, got {layers!r}")
    if widths.size > MAX_WIDTHS:
        raise ValueError(f"at most {MAX_WIDTHS} MLP widths are supported, got {widths.size}")
    if widths.size and (widths.min() < 1):
        raise ValueError(f"layer widths must be positive, got {widths.tolist()}")
    if widths.size and widths[0] % 2:
        raise ValueError(f"layers[0] is the concatenated user+item MLP embedding and must be "
                         f"even, got {int(widths[0])}")
    if widths.size == 0 and n_gmf == 0:
        raise ValueError("the network has neither a GMF part nor MLP layers")
    return widths


def dense_size(layers: np.ndarray, n_gmf: int) -> int:
    weights = sum(int(a) * int(b) + int(b) for a, b in zip(layers[:-1], layers[1:], strict=True))
    last = int(layers[-1]) if len(layers) else 0
    return weights + n_gmf + last + 1


def cache_size(batch: int, layers: np.ndarray, n_gmf: int) -> int:
    return batch * (n_gmf + int(np.sum(layers)))


def init_params(n_users: int, n_items: int, n_gmf: int, layers: np.ndarray, dtype, rng,
                init_std: float = 0.01):
    """NCF's initialisation: embeddings N(0, init_std), hidden layers Glorot-uniform (Keras's
    Dense default), output layer LeCun-uniform, zero biases.

    Returns ``(user_emb T[n_users, d], item_emb T[n_items, d], dense T[n_dense])``.
    """
    d = n_gmf + (int(layers[0]) // 2 if len(layers) else 0)
    user_emb = rng.normal(0.0, init_std, (n_users, d)).astype(dtype)
    item_emb = rng.normal(0.0, init_std, (n_items, d)).astype(dtype)
    parts = []
    for fan_in, fan_out in zip(layers[:-1], layers[1:], strict=True):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        parts += [rng.uniform(-limit, limit, fan_in * fan_out), np.zeros(fan_out)]
    width = n_gmf + (int(layers[-1]) if len(layers) else 0)
    limit = np.sqrt(3.0 / width)
    parts += [rng.uniform(-limit, limit, width), np.zeros(1)]
    return user_emb, item_emb, np.concatenate(parts).astype(dtype)


@dataclass
class OptimizerState:
    """Per-parameter optimiser state (Adam: first/second moments; Adagrad: accumulator in
    ``*1``; SGD: unused but allocated, so every kernel call has the same shapes)."""

    dense1: np.ndarray
    dense2: np.ndarray
    user1: np.ndarray
    user2: np.ndarray
    item1: np.ndarray
    item2: np.ndarray
    step: int = 0

    @classmethod
    def zeros(cls, user_emb, item_emb, dense, initial: float = 0.0) -> OptimizerState:
        """State shaped like the parameters, on their device (numpy or CuPy)."""
        def z(a):
            return array_module(a).full_like(a, initial)
        return cls(z(dense), z(dense), z(user_emb), z(user_emb), z(item_emb), z(item_emb))


def epoch_order(n_positives: int, n_negatives: int, rng) -> np.ndarray:
    """A random order of the epoch's sample slots (positive p's slots are
    ``p * (n_negatives + 1) + j``, j = 0 the positive)."""
    return rng.permutation(n_positives * (n_negatives + 1)).astype(np.int64)
