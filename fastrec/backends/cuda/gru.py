"""CUDA GRU4Rec: cuBLAS GEMMs (the array module's ``matmul``) around the fused kernels of
``csrc/cuda/gru.cu``.

Launchers (``launch_*``) take the array module ``xp`` (CuPy on a GPU, numpy in the test
emulator) and ``get_kernel(name)`` returning the compiled ``fastrec::cuda::<name>`` for the
call's dtypes with CuPy's calling convention ``kernel(grid, block, args)``; they never
synchronise. The public contract functions accept CuPy arrays (used in place) or numpy arrays
(copied to the device and back).

Per time step and layer the forward pass runs two GEMMs and two gate kernels (GRU4Rec applies the
reset gate before the candidate's recurrent product, so the candidate's GEMM must wait for r);
the backward pass the same in reverse. The output layer scores the T steps of a block with one
batched GEMM, one fused loss-and-gradient kernel (a thread block per score row) and three GEMMs
for the gradients. The optimizer steps are ``fastrec.backends.cuda.optim``'s (``optim.cu``),
shared with NCF: no atomics, so a training epoch repeats bit for bit on a device, and agrees
with the CPU backends to rounding (same samples, same dropout masks; GEMM summation orders
differ).
"""

from __future__ import annotations

import numpy as np

from fastrec._algorithms.rng import rng_key
from fastrec.backends._contract import (
    check_array,
    check_gru,
    check_gru4rec_epoch,
    check_output_loss,
    gru_layout,
    rng_streams,
)
from fastrec.backends.cuda import optim
from fastrec.backends.cuda._checks import host_values

THREADS = 256
LOSS_THREADS = 128  # a power of two <= GRU_LOSS_MAX_THREADS of gru.cu
MAX_BLOCKS = 4096
WARP_SIZE = 32

T_KERNELS = ("gru_gates_rz", "gru_gates_n", "gru_grad_gates_zn", "gru_grad_gates_r",
             "gru_saved_states", "gru_dropout", "gru4rec_loss_rows")
TI_KERNELS = ("gru4rec_embed_rows",)
I_KERNELS = ("gru4rec_draw_samples",)


def _grid(n_threads: int, threads: int = THREADS) -> tuple[int]:
    return (max(1, min(-(-int(n_threads) // threads), MAX_BLOCKS)),)


def kernel_source(name: str) -> str:
    """The ``csrc/cuda`` source (loader name) that holds kernel ``name``: the optimizer steps
    are ``optim.cu``'s."""
    return "optim" if name in optim.KERNEL_TEMPLATES else "gru"


def kernel_expression(name: str, dtype, index_dtype=np.int32) -> str:
    """The NVRTC name expression of kernel ``name`` for the given dtypes."""
    from fastrec.backends.cuda._loader import _C_TYPES

    if name in optim.KERNEL_TEMPLATES:
        return optim.kernel_expression(name, optim.KERNEL_TEMPLATES[name], dtype, index_dtype)
    t = _C_TYPES[np.dtype(dtype).name]
    i = _C_TYPES[np.dtype(index_dtype).name]
    if name in T_KERNELS:
        return f"fastrec::cuda::{name}<{t}>"
    if name in TI_KERNELS:
        return f"fastrec::cuda::{name}<{t}, {i}>"
    if name in I_KERNELS:
        return f"fastrec::cuda::{name}<{i}>"
    raise KeyError(f"unknown GRU kernel {name!r}")


# -- stacked GRU ---------------------------------------------------------------------------------
def launch_stack_forward(xp, get_kernel, A0, h0, reset, Wx_rest, Wh, b, hs, gates, prev, q):
    """Forward through every layer over a block of T steps.

    A0 T[T, B, 3H] layer 0's input projections (bias included); h0 T[L, B, H]; reset
    uint8[T, B]; Wx_rest T[L-1, H, 3H], Wh T[L, H, 3H], b T[L, 3H]. Writes hs, prev, q
    T[L, T, B, H] and gates T[L, T, B, 3H] (prev: the state each step reads, q = r * prev).
    """
    L, T, B, H = hs.shape
    dtype = hs.dtype
    gates_rz, gates_n = get_kernel("gru_gates_rz"), get_kernel("gru_gates_n")
    grid, block = _grid(B * H), (THREADS,)
    hz = xp.empty((B, 2 * H), dtype)
    nq = xp.empty((B, H), dtype)
    sizes = (np.int64(B), np.int64(H))
    for layer in range(L):
        if layer == 0:
            A = A0
        else:
            A = (xp.matmul(hs[layer - 1].reshape(T * B, H), Wx_rest[layer - 1])
                 + b[layer]).reshape(T, B, 3 * H)
        wh_rz = xp.ascontiguousarray(Wh[layer][:, :2 * H])
        wh_n = xp.ascontiguousarray(Wh[layer][:, 2 * H:])
        for t in range(T):
            h = h0[layer] if t == 0 else hs[layer, t - 1]
            xp.matmul(h, wh_rz, out=hz)
            gates_rz(grid, block, (A[t], hz, h, reset[t], *sizes, gates[layer, t], prev[layer, t],
                                   q[layer, t]))
            xp.matmul(q[layer, t], wh_n, out=nq)
            gates_n(grid, block, (A[t], nq, prev[layer, t], *sizes, gates[layer, t],
                                  hs[layer, t]))


def launch_stack_backward(xp, get_kernel, reset, Wx_rest, Wh, hs, gates, prev, q, d_top, dA0,
                          dh0, dWx_rest, dWh, db):
    """BPTT through the stack given d_top T[T, B, H] (gradient on the top layer's outputs).

    hs, gates, prev, q as written by :func:`launch_stack_forward`. Writes dA0 T[T, B, 3H] (layer
    0's pre-activation gradients), dh0 T[L, B, H] (unless None), dWx_rest, dWh and db.
    """
    L, T, B, H = hs.shape
    dtype = hs.dtype
    grad_zn, grad_r = get_kernel("gru_grad_gates_zn"), get_kernel("gru_grad_gates_r")
    grid, block = _grid(B * H), (THREADS,)
    d, dn, dq = (xp.empty((B, H), dtype) for _ in range(3))
    dh_part, dh_prod = xp.zeros((B, H), dtype), xp.zeros((B, H), dtype)
    drz = xp.empty((B, 2 * H), dtype)
    dA = dA0
    sizes = (np.int64(B), np.int64(H))
    d_out = d_top
    for layer in range(L - 1, -1, -1):
        wh_rz_t = xp.ascontiguousarray(Wh[layer][:, :2 * H].T)
        wh_n_t = xp.ascontiguousarray(Wh[layer][:, 2 * H:].T)
        for t in range(T - 1, -1, -1):
            has_next = t < T - 1
            grad_zn(grid, block, (d_out[t], dh_part, dh_prod, reset[t + 1] if has_next else
                                  reset[t], np.int32(has_next), gates[layer, t], prev[layer, t],
                                  *sizes, d, dA[t], drz, dn))
            xp.matmul(dn, wh_n_t, out=dq)
            grad_r(grid, block, (dq, d, gates[layer, t], prev[layer, t], *sizes, dA[t], drz,
                                 dh_part))
            xp.matmul(drz, wh_rz_t, out=dh_prod)
        if dh0 is not None:
            dh0[layer] = xp.where(reset[0][:, None] != 0, dtype.type(0), dh_part + dh_prod)
        flat = dA.reshape(T * B, 3 * H)
        dWh[layer][:, :2 * H] = xp.matmul(prev[layer].reshape(T * B, H).T, flat[:, :2 * H])
        dWh[layer][:, 2 * H:] = xp.matmul(q[layer].reshape(T * B, H).T, flat[:, 2 * H:])
        db[layer] = flat.sum(axis=0)
        if layer > 0:
            dWx_rest[layer - 1] = xp.matmul(hs[layer - 1].reshape(T * B, H).T, flat)
            d_out = xp.matmul(flat, Wx_rest[layer - 1].T).reshape(T, B, H)


def launch_saved_states(xp, get_kernel, h0, hs, gates, reset, prev, q):
    """prev and q T[L, T, B, H] of a forward pass from its outputs (one launch)."""
    L, T, B, H = hs.shape
    get_kernel("gru_saved_states")(
        _grid(hs.size), (THREADS,),
        (h0, hs, gates, reset, np.int64(L), np.int64(T), np.int64(B), np.int64(H), prev, q))


# -- output layer ----------------------------------------------------------------------------
def launch_output_loss(xp, get_kernel, hidden, out_table, samples, loss, bpreg, grad_scale,
                       d_hidden, d_rows, row_loss):
    """Sampled-output loss of G groups (time steps) of N rows at once.

    hidden T[G, N, H]; samples I[G, S] (group g's first N samples are its rows' targets);
    writes d_hidden T[G, N, H], d_rows T[G, S, H+1] and row_loss float64[G * N]. The hidden
    states get a column of ones, so one batched GEMM gives the scores with their biases and one
    gives the sampled rows' gradients with their bias column.
    """
    G, N, H = hidden.shape
    S = samples.shape[1]
    dtype = hidden.dtype.type
    augmented = xp.empty((G, N, H + 1), hidden.dtype)
    augmented[..., :H] = hidden
    augmented[..., H] = 1
    W = xp.take(out_table, samples, axis=0)                              # [G, S, H+1]
    scores = xp.matmul(augmented, W.transpose(0, 2, 1))                  # [G, N, S]
    get_kernel("gru4rec_loss_rows")(
        (max(1, min(G * N, 65535)),), (LOSS_THREADS,),
        (scores, np.int64(G * N), np.int64(N), np.int64(S), np.int32(loss), dtype(bpreg),
         dtype(grad_scale), row_loss))
    d_hidden[...] = xp.matmul(scores, W)[..., :H]
    xp.matmul(scores.transpose(0, 2, 1), augmented, out=d_rows)


# -- training epoch --------------------------------------------------------------------------
def launch_train_epoch(xp, get_kernel, inputs, targets, reset, hidden, emb, emb_s1, emb_s2,
                       gru_params, gru_s1, gru_s2, out_table, out_s1, out_s2, neg_prob,
                       neg_alias, spec):
    """One epoch (see ``_contract.GRU4REC_TRAIN_EPOCH_DOC``) on device arrays; the parameters,
    optimizer states and ``hidden`` are updated in place. Returns ``(loss_sum, n_events)`` with
    loss_sum a 0-d float64 device array (reading it synchronises)."""
    n_steps, B = inputs.shape
    L, _, H = hidden.shape
    T, K, D = int(spec.bptt), int(spec.n_sample), emb.shape[1]
    H3, S, n = 3 * H, B + int(spec.n_sample), T * B
    dtype = gru_params.dtype
    t_ = dtype.type
    n_items = emb.shape[0]
    layout = gru_layout(L, H, D, spec.embedded)
    w = layout.views(gru_params)
    grads = xp.zeros_like(gru_params)
    g = layout.views(grads)
    streams = rng_streams(spec.epoch)
    key_neg, key_emb, key_hid = (np.uint64(rng_key(spec.seed, s)[0]) for s in streams)
    p_emb = float(spec.dropout_embed) if spec.embedded else 0.0
    p_hid = float(spec.dropout_hidden)
    keep_emb = t_(1.0 / (1.0 - p_emb))
    keep_hid = t_(1.0 / (1.0 - p_hid))
    X = xp.empty((n, D), dtype)
    A0 = xp.empty((n, H3), dtype)
    hs, prev, q = (xp.empty((L, T, B, H), dtype) for _ in range(3))
    gates = xp.empty((L, T, B, H3), dtype)
    top = xp.empty((T, B, H), dtype) if p_hid > 0 else None
    samples = xp.empty((T, S), inputs.dtype)
    d_top = xp.empty((T, B, H), dtype)
    d_rows = xp.empty((T, S, H + 1), dtype)
    row_loss = xp.empty(n, np.float64)
    dA0 = xp.empty((T, B, H3), dtype)
    loss_sum = xp.zeros((), np.float64)
    embed_rows, dropout = get_kernel("gru4rec_embed_rows"), get_kernel("gru_dropout")
    draw_samples = get_kernel("gru4rec_draw_samples")
    n_blocks = n_steps // T
    for block in range(n_blocks):
        s0 = block * T
        x_items = inputs[s0:s0 + T]
        block_reset = reset[s0:s0 + T]
        embed_rows(_grid(n * max(D, H3)), (THREADS,),
                   (x_items, emb, np.int64(n), np.int64(D), w.b[0], np.int64(H3),
                    np.int32(bool(spec.embedded)), key_emb, np.uint64(s0 * B * D), p_emb,
                    keep_emb, X, A0))
        if spec.embedded:
            A0 += xp.matmul(X, w.wx0)
        launch_stack_forward(xp, get_kernel, A0.reshape(T, B, H3), hidden, block_reset,
                             w.wx_rest, w.wh, w.b, hs, gates, prev, q)
        if p_hid > 0:
            dropout(_grid(n * H), (THREADS,), (hs[L - 1], np.int64(n * H), key_hid,
                                              np.uint64(s0 * B * H), p_hid, keep_hid, top))
            out_in = top
        else:
            out_in = hs[L - 1]
        draw_samples(_grid(T * S), (THREADS,),
                     (targets[s0:s0 + T], np.int64(T), np.int64(B), np.int64(K), np.int64(s0),
                      key_neg, neg_prob, neg_alias, np.int64(n_items), samples))
        launch_output_loss(xp, get_kernel, out_in, out_table, samples, spec.loss, spec.bpreg,
                           1.0 / n, d_top, d_rows, row_loss)
        loss_sum += row_loss.sum()
        if p_hid > 0:
            dropout(_grid(n * H), (THREADS,), (d_top, np.int64(n * H), key_hid,
                                              np.uint64(s0 * B * H), p_hid, keep_hid, d_top))
        launch_stack_backward(xp, get_kernel, block_reset, w.wx_rest, w.wh, hs, gates, prev, q,
                              d_top, dA0, None, g.wx_rest, g.wh, g.b)
        dA0_flat = dA0.reshape(n, H3)
        if spec.embedded:
            g.wx0[...] = xp.matmul(X.T, dA0_flat)
            dX = xp.matmul(dA0_flat, w.wx0.T)
            if p_emb > 0:
                dropout(_grid(n * D), (THREADS,), (dX, np.int64(n * D), key_emb,
                                                  np.uint64(s0 * B * D), p_emb, keep_emb, dX))
        else:
            dX = dA0_flat
        opt = (spec.lr, spec.beta1, spec.beta2, spec.eps, spec.step0 + block + 1, spec.momentum)
        optim.launch_dense_step(get_kernel, spec.method, gru_params, grads, gru_s1, gru_s2, *opt)
        optim.launch_sparse_step(xp, get_kernel, spec.method, emb, x_items.reshape(n), dX,
                                 emb_s1, emb_s2, *opt)
        optim.launch_sparse_step(xp, get_kernel, spec.method, out_table, samples.reshape(T * S),
                                 d_rows.reshape(T * S, H + 1), out_s1, out_s2, *opt)
        hidden[...] = hs[:, T - 1]
    return loss_sum, n_blocks * n


# -- public contract functions -------------------------------------------------------------
def _is_host(*arrays) -> bool:
    return all(isinstance(a, np.ndarray) for a in arrays)


def _getter(dtype, index_dtype=np.int32):
    from fastrec.backends.cuda._loader import get_function

    def get_kernel(name):
        return get_function(kernel_source(name), kernel_expression(name, dtype, index_dtype))

    return get_kernel


def gru_forward(X, h0, reset, Wx0, Wx_rest, Wh, b, n_threads=1):
    """See ``fastrec.backends._contract.GRU_FORWARD_DOC``. Returns CuPy arrays for CuPy inputs,
    numpy arrays for numpy inputs. ``n_threads`` is ignored."""
    host = _is_host(X, h0, reset, Wx0, Wx_rest, Wh, b)
    check_gru(X, h0, reset, Wx0, Wx_rest, Wh, b)
    import cupy

    X, h0, reset, Wx0, Wx_rest, Wh, b = (cupy.asarray(a) for a in (X, h0, reset, Wx0, Wx_rest,
                                                                   Wh, b))
    hs, gates = run_stack_forward(cupy, _getter(X.dtype), X, h0, reset, Wx0, Wx_rest, Wh, b)
    return (hs.get(), gates.get()) if host else (hs, gates)


def gru_backward(X, h0, reset, Wx0, Wx_rest, Wh, b, hs, gates, d_top, n_threads=1):
    """See ``fastrec.backends._contract.GRU_BACKWARD_DOC``. Returns CuPy arrays for CuPy inputs,
    numpy arrays for numpy inputs. ``n_threads`` is ignored."""
    host = _is_host(X, h0, reset, Wx0, Wx_rest, Wh, b, hs, gates, d_top)
    check_gru(X, h0, reset, Wx0, Wx_rest, Wh, b)
    T, B, D = X.shape
    L, H = Wh.shape[:2]
    for name, arr, shape in (("hs", hs, (L, T, B, H)), ("gates", gates, (L, T, B, 3 * H)),
                             ("d_top", d_top, (T, B, H))):
        check_array(name, arr, X.dtype, len(shape), shape)
    import cupy

    arrays = [cupy.asarray(a) for a in (X, h0, reset, Wx0, Wx_rest, Wh, b, hs, gates, d_top)]
    out = run_stack_backward(cupy, _getter(arrays[0].dtype), *arrays)
    return tuple(a.get() for a in out) if host else out


def run_stack_forward(xp, get_kernel, X, h0, reset, Wx0, Wx_rest, Wh, b):
    """The stack's forward pass on arrays of module ``xp`` (CuPy; numpy with the emulator's
    kernels from ``get_kernel``): ``(hs, gates)`` as ``gru_forward``. The first layer's input
    product is one matmul (cuBLAS on the device), the rest the gru.cu kernels."""
    T, B, D = X.shape
    L, H = Wh.shape[:2]
    hs, prev, q = (xp.empty((L, T, B, H), X.dtype) for _ in range(3))
    gates = xp.empty((L, T, B, 3 * H), X.dtype)
    A0 = (xp.matmul(X.reshape(T * B, D), Wx0) + b[0]).reshape(T, B, 3 * H)
    launch_stack_forward(xp, get_kernel, A0, h0, reset, Wx_rest, Wh, b, hs, gates, prev, q)
    return hs, gates


def run_stack_backward(xp, get_kernel, X, h0, reset, Wx0, Wx_rest, Wh, b, hs, gates, d_top):
    """The stack's backward pass on arrays of module ``xp`` (as :func:`run_stack_forward`):
    ``(dX, dh0, dWx0, dWx_rest, dWh, db)`` as ``gru_backward``."""
    T, B, D = X.shape
    H = Wh.shape[1]
    prev, q = xp.empty_like(hs), xp.empty_like(hs)
    launch_saved_states(xp, get_kernel, h0, hs, gates, reset, prev, q)
    dA0 = xp.empty((T, B, 3 * H), X.dtype)
    dh0 = xp.empty_like(h0)
    dWx_rest, dWh, db = (xp.empty_like(a) for a in (Wx_rest, Wh, b))
    launch_stack_backward(xp, get_kernel, reset, Wx_rest, Wh, hs, gates, prev, q, d_top, dA0,
                          dh0, dWx_rest, dWh, db)
    flat = dA0.reshape(T * B, 3 * H)
    return (xp.matmul(flat, Wx0.T).reshape(T, B, D), dh0, xp.matmul(X.reshape(T * B, D).T, flat),
            dWx_rest, dWh, db)


def gru4rec_output_loss(hidden, out_table, samples, loss, bpreg, grad_scale, n_threads=1):
    """See ``fastrec.backends._contract.GRU4REC_OUTPUT_LOSS_DOC``. Returns CuPy gradients for
    CuPy inputs, numpy gradients for numpy inputs; the loss as a float (synchronises)."""
    check_output_loss(hidden, out_table, samples)
    host = _is_host(hidden, out_table, samples)
    import cupy

    hidden, out_table, samples = (cupy.asarray(a) for a in (hidden, out_table, samples))
    N, H = hidden.shape
    S = samples.shape[0]
    d_hidden = cupy.empty((1, N, H), hidden.dtype)
    d_rows = cupy.empty((1, S, H + 1), hidden.dtype)
    row_loss = cupy.empty(N, np.float64)
    get_kernel = _getter(hidden.dtype, samples.dtype)
    launch_output_loss(cupy, get_kernel, hidden[None], out_table, samples[None], int(loss),
                       float(bpreg), float(grad_scale), d_hidden, d_rows, row_loss)
    total = float(row_loss.sum())
    if host:
        return total, d_hidden[0].get(), d_rows[0].get()
    return total, d_hidden[0], d_rows[0]


def gru4rec_train_epoch(inputs, targets, reset, hidden, emb, emb_s1, emb_s2, gru_params, gru_s1,
                        gru_s2, out_table, out_s1, out_s2, neg_prob, neg_alias, spec,
                        n_threads=1):
    """See ``fastrec.backends._contract.GRU4REC_TRAIN_EPOCH_DOC``. CuPy arrays are updated in
    place; numpy arrays are copied to the device and the modified ones copied back.
    ``n_threads`` is ignored. Returns ``(loss_sum, n_events)`` (synchronises once)."""
    arrays = (inputs, targets, reset, hidden, emb, emb_s1, emb_s2, gru_params, gru_s1, gru_s2,
              out_table, out_s1, out_s2, neg_prob, neg_alias)
    check_gru4rec_epoch(inputs, targets, reset, hidden, emb, gru_params, out_table, neg_prob,
                        neg_alias, spec, values=host_values(*arrays))
    for name, state, param in (("emb", (emb_s1, emb_s2), emb),
                               ("gru", (gru_s1, gru_s2), gru_params),
                               ("out", (out_s1, out_s2), out_table)):
        for s in state:
            check_array(f"{name} optimizer state", s, param.dtype, param.ndim, param.shape)
    import cupy

    device = [cupy.asarray(a) for a in arrays]
    get_kernel = _getter(gru_params.dtype, inputs.dtype)
    loss_sum, n_events = launch_train_epoch(cupy, get_kernel, *device, spec)
    for host, dev in zip(arrays[3:13], device[3:13], strict=True):  # hidden .. out_s2
        if isinstance(host, np.ndarray):
            dev.get(out=host)
    return float(loss_sum), int(n_events)
