"""GRU4Rec's inference step: one click of every session through the GRU stack, on the weights'
array module (numpy or CuPy), for ``GRU4Rec.recommend_next`` and friends.

Gate layout and equations are the kernels' (``fastrec.backends._contract.GRU_FORWARD_DOC``):
r = sigmoid(a_r + h Wh_r), z = sigmoid(a_z + h Wh_z), n = tanh(a_n + (r * h) Wh_n),
h' = (1 - z) * h + z * n.
"""

from __future__ import annotations

from fastrec._array import array_module


def gru_step(A0, hidden, Wx_rest, Wh, b):
    """Advance every session by one click.

    A0 : T[B, 3H] layer 0's input projections of the clicked items (bias included)
    hidden : T[L, B, H] the sessions' states; Wx_rest T[L-1, H, 3H], Wh T[L, H, 3H],
    b T[L, 3H] as in ``gru_layout``. All numpy or all CuPy. Returns the new hidden T[L, B, H]
    (``hidden`` is read in A0's dtype).
    """
    xp = array_module(A0)
    n_layers, H = Wh.shape[0], Wh.shape[1]
    out = xp.empty(hidden.shape, A0.dtype)
    A = A0
    for layer in range(n_layers):
        if layer > 0:
            A = out[layer - 1] @ Wx_rest[layer - 1] + b[layer]
        h, w = hidden[layer].astype(A0.dtype, copy=False), Wh[layer]
        r = 1.0 / (1.0 + xp.exp(-(A[:, :H] + h @ w[:, :H])))
        z = 1.0 / (1.0 + xp.exp(-(A[:, H:2 * H] + h @ w[:, H:2 * H])))
        n = xp.tanh(A[:, 2 * H:] + (r * h) @ w[:, 2 * H:])
        out[layer] = (1 - z) * h + z * n
    return out
