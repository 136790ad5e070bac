"""CUDA NCF passes (GMF, MLP, NeuMF): fused custom kernels around cuBLAS GEMMs.

A mini-batch is a handful of launches (``csrc/cuda/ncf.cu`` for the thread mapping):

- forward: one gather (a warp per row: the row's sample, its negative drawn on the device with
  the counter RNG of rng.h, so every backend draws the same items, and the embedding columns
  into the activation cache), then per dense layer a GEMM (``xp.matmul``: cuBLAS under CuPy) and
  a fused bias + ReLU, then one fused scoring + loss kernel (a warp per row: logit, loss, d loss
  / d logit, the GMF embedding gradients and the top layer's delta);
- backward: one reduction for the output layer's gradient, per dense layer a fused ReLU-mask +
  bias-gradient reduction and two GEMMs, one copy of the MLP input gradient into the embedding
  gradients; the column reductions run in two fixed-shape passes (chunks of ``CHUNK_ROWS`` rows,
  then the chunks in order), so they use many blocks and stay deterministic;
- optimiser: one dense step and two lazy sparse steps (``fastrec.backends.cuda.optim``).

``ncf_train_epoch`` loops over the mini-batches on the host without synchronising (the per-row
losses stay on the device until the end of the epoch). Every reduction runs in a fixed order and
no float atomics are used, so a pass repeats bit for bit; results match the other backends to
rounding (the GEMMs and the output dot product sum in other orders than the CPU's).

Launchers ``launch_*(xp, get_kernel, ...)`` take device arrays of the array module ``xp`` (CuPy;
numpy in the test emulator) and ``get_kernel(name)``, which returns the compiled kernel for the
call's dtypes (see :func:`kernel_expression` and :data:`KERNEL_TEMPLATES`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fastrec.backends._contract import (
    ContractError,
    check_array,
    check_ncf_batch,
    check_ncf_net,
    ncf_epoch_columns,
    ncf_n_rating,
)
from fastrec.backends.cuda import optim
from fastrec.backends.cuda._checks import host_values

WARP_SIZE = 32
THREADS = 256  # threads per block of the row-wise and elementwise kernels
MAX_BLOCKS = 4096
TILE = (32, 8)  # the column reductions' block (NCF_TILE_COLS, NCF_TILE_ROWS in ncf.cu)
CHUNK_ROWS = 32  # rows per chunk of their first pass (NCF_CHUNK_ROWS in ncf.cu)
MAX_GRID_Y = 65535  # CUDA's limit on gridDim.y (the first pass loops over further chunks)

KERNEL_TEMPLATES = {
    "ncf_gather_pairs": "TI", "ncf_sample_gather": "TI", "ncf_score": "TI",
    "ncf_bias_relu": "T", "ncf_output_grads": "T", "ncf_relu_bias_grad": "T",
    "ncf_column_sums": "T", "ncf_split_mlp_grads": "T", "ncf_project_nonnegative": "TI",
    **optim.KERNEL_TEMPLATES,
}


def kernel_source(name: str) -> str:
    """The ``csrc/cuda`` source (loader name) that holds kernel ``name``."""
    return "optim" if name.startswith("optim_") else "ncf"


def kernel_expression(name: str, dtype, index_dtype) -> str:
    return optim.kernel_expression(name, KERNEL_TEMPLATES[name], dtype, index_dtype)


class NcfShape(NamedTuple):
    """A network's widths and the offsets of the flat dense vector (NCF_LAYOUT_DOC);
    ``stride``: the embedding row width (d, or d + 1 with the joint model's rating bias)."""

    n_gmf: int
    widths: tuple[int, ...]
    stride: int

    @property
    def n_mlp(self) -> int:
        return self.widths[0] // 2 if self.widths else 0

    @property
    def d(self) -> int:
        return self.n_gmf + self.n_mlp

    @property
    def last(self) -> int:
        return self.widths[-1] if self.widths else 0

    @property
    def out_offset(self) -> int:
        return sum(a * b + b for a, b in zip(self.widths[:-1], self.widths[1:], strict=True))

    @property
    def n_dense(self) -> int:
        return self.out_offset + self.n_gmf + self.last + 1

    @property
    def cache_width(self) -> int:
        return self.n_gmf + sum(self.widths)

    def dense_views(self, dense):
        """([(W_l [in, out], b_l [out]) for each dense layer], h_and_bias [n_gmf + last + 1])."""
        views, off = [], 0
        for fan_in, fan_out in zip(self.widths[:-1], self.widths[1:], strict=True):
            w = dense[off:off + fan_in * fan_out].reshape(fan_in, fan_out)
            off += fan_in * fan_out
            views.append((w, dense[off:off + fan_out]))
            off += fan_out
        return views, dense[off:off + self.n_gmf + self.last + 1]

    def blocks(self, flat, batch: int, with_gmf: bool = True):
        """Block-major views of a cache (``with_gmf``) or of a gradient workspace:
        [gmf [batch, n_gmf]], mlp_0 [batch, widths[0]], ..., mlp_L."""
        out, off = [], 0
        for width in ((self.n_gmf,) if with_gmf else ()) + self.widths:
            out.append(flat[off:off + batch * width].reshape(batch, width))
            off += batch * width
        return out


def _host_ints(layers) -> tuple[int, ...]:
    values = layers.get() if hasattr(layers, "get") and not isinstance(layers, np.ndarray) \
        else np.asarray(layers)
    return tuple(int(w) for w in np.asarray(values).ravel())


def network_shape(layers, n_gmf, stride=None) -> NcfShape:
    """The shape of a network whose embedding rows are ``stride`` wide (default: no rating
    bias column)."""
    widths = _host_ints(layers)
    d = int(n_gmf) + (widths[0] // 2 if widths else 0)
    return NcfShape(int(n_gmf), widths, d if stride is None else int(stride))


class Rating(NamedTuple):
    """The joint model's rating term of a batch (NCF_BACKWARD_DOC): per-row ratings and
    weights (device arrays), the global mean, the L2 penalty and the GMF columns it spans."""

    ratings: object
    weights: object
    mean: float
    reg: float
    n_rating: int


def _row_blocks(rows: int) -> tuple[int]:
    return (max(1, min(-(-rows * WARP_SIZE // THREADS), MAX_BLOCKS)),)


def _elementwise_blocks(n: int) -> tuple[int]:
    return (max(1, min(-(-n // THREADS), MAX_BLOCKS)),)


def n_chunks(rows: int) -> int:
    """Chunks of the column reductions' first pass (at least one)."""
    return max(1, -(-rows // CHUNK_ROWS))


def _column_sums(get_kernel, first_pass: str, args, rows: int, out, partial) -> None:
    """out[c] = sum over rows of column c, in two passes: ``first_pass`` (called with ``args``
    then the partial sums) writes a sum per chunk and column into ``partial``, then
    ncf_column_sums adds the chunks in order. partial: at least n_chunks(rows) * cols."""
    cols, chunks = out.shape[0], n_chunks(rows)
    sums = partial[:chunks * cols]
    get_kernel(first_pass)((max(1, -(-cols // TILE[0])), min(chunks, MAX_GRID_Y)), TILE,
                           (*args, sums))
    get_kernel("ncf_column_sums")(_elementwise_blocks(cols), (THREADS,),
                                  (sums, np.int64(chunks), np.int64(cols), out))


def _mlp_forward(xp, get_kernel, shape: NcfShape, acts, dense, batch: int) -> None:
    """acts[l] = relu(acts[l-1] W_l + b_l) for the dense layers (acts: the cache's MLP blocks)."""
    weights, _ = shape.dense_views(dense)
    for (w, b), x, y in zip(weights, acts[:-1], acts[1:], strict=True):
        xp.matmul(x, w, out=y)
        get_kernel("ncf_bias_relu")(_elementwise_blocks(y.size), (THREADS,),
                                    (y, b, np.int64(batch), np.int64(y.shape[1])))


def _score(get_kernel, shape: NcfShape, users, items, targets, user_emb, item_emb, dense,
           blocks, batch, with_logit, with_loss, loss, logits, row_loss, dz, d_last, user_grads,
           item_grads, rating: Rating | None = None) -> None:
    _, h = shape.dense_views(dense)
    act = blocks[-1] if shape.widths else blocks[0]
    dtype = dense.dtype.type
    ratings, weights = (logits, logits) if rating is None else rating[:2]
    get_kernel("ncf_score")(
        _row_blocks(batch), (THREADS,),
        (users, items, targets, np.int64(batch), user_emb, item_emb, h, np.int64(shape.n_gmf),
         np.int64(shape.n_mlp), np.int64(shape.stride), np.int64(shape.last), blocks[0], act,
         np.int32(with_logit), np.int32(with_loss), np.int32(loss), np.int32(rating is not None),
         ratings, weights, dtype(0 if rating is None else rating.mean),
         dtype(0 if rating is None else rating.reg),
         np.int64(0 if rating is None else rating.n_rating), dtype(1) / dtype(max(batch, 1)),
         logits, row_loss, dz, d_last, user_grads, item_grads))


def _mlp_backward(xp, get_kernel, shape: NcfShape, blocks, grads, dense, dense_grad, dz,
                  batch: int, user_grads, item_grads) -> None:
    """Everything after the scoring kernel: the output layer's gradient, the dense layers' and
    the MLP columns of the embedding gradients. grads: the workspace's blocks (grads[-1] holds
    the top layer's delta)."""
    weights, _ = shape.dense_views(dense)
    g_weights, g_h = shape.dense_views(dense_grad)
    acts = blocks[1:]
    act = acts[-1] if shape.widths else blocks[0]
    partial = xp.empty(n_chunks(batch) * max(g_h.shape[0], *shape.widths[1:], 1), dense.dtype)
    _column_sums(get_kernel, "ncf_output_grads",
                 (dz, blocks[0], act, np.int64(batch), np.int64(shape.n_gmf),
                  np.int64(shape.last)), batch, g_h, partial)
    for layer in range(len(weights), 0, -1):
        w, _ = weights[layer - 1]
        g_w, g_b = g_weights[layer - 1]
        dy, y, x = grads[layer], acts[layer], acts[layer - 1]
        _column_sums(get_kernel, "ncf_relu_bias_grad",
                     (dy, y, np.int64(batch), np.int64(y.shape[1])), batch, g_b, partial)
        xp.matmul(x.T, dy, out=g_w)
        xp.matmul(dy, w.T, out=grads[layer - 1])
    if shape.widths:
        get_kernel("ncf_split_mlp_grads")(
            _elementwise_blocks(grads[0].size), (THREADS,),
            (grads[0], np.int64(batch), np.int64(shape.n_gmf), np.int64(shape.n_mlp),
             np.int64(shape.stride), user_grads, item_grads))


def launch_ncf_forward(xp, get_kernel, users, items, user_emb, item_emb, dense,
                       shape: NcfShape, cache, logits) -> None:
    """Forward pass (NCF_FORWARD_DOC) on device arrays; does not synchronise."""
    batch = users.shape[0]
    if batch == 0:
        return
    blocks = shape.blocks(cache, batch)
    x0 = blocks[1] if shape.widths else cache
    get_kernel("ncf_gather_pairs")(
        _row_blocks(batch), (THREADS,),
        (users, items, np.int64(batch), user_emb, item_emb, np.int64(shape.n_gmf),
         np.int64(shape.n_mlp), np.int64(shape.stride), blocks[0], x0))
    _mlp_forward(xp, get_kernel, shape, blocks[1:], dense, batch)
    unused = xp.empty(1, dtype=np.float64)
    _score(get_kernel, shape, users, items, logits, user_emb, item_emb, dense, blocks, batch, 1,
           0, 0, logits, unused, logits, logits, logits, logits)


def launch_ncf_backward(xp, get_kernel, users, items, targets, user_emb, item_emb, dense,
                        shape: NcfShape, cache, logits, loss, dense_grad, user_grads, item_grads,
                        row_loss, rating: Rating | None = None) -> None:
    """Backward pass (NCF_BACKWARD_DOC) on device arrays; row_loss (float64[B]) receives each
    row's loss. Does not synchronise."""
    batch = users.shape[0]
    if batch == 0:
        dense_grad[...] = 0
        return
    dtype = dense.dtype
    blocks = shape.blocks(cache, batch)
    grads = shape.blocks(xp.empty(max(batch * sum(shape.widths), 1), dtype), batch,
                         with_gmf=False)
    dz = xp.empty(batch, dtype)
    d_last = grads[-1] if shape.widths else dz
    _score(get_kernel, shape, users, items, targets, user_emb, item_emb, dense, blocks, batch, 0,
           1, loss, logits, row_loss, dz, d_last, user_grads, item_grads, rating)
    _mlp_backward(xp, get_kernel, shape, blocks, grads, dense, dense_grad, dz, batch, user_grads,
                  item_grads)


def launch_ncf_train_epoch(xp, get_kernel, pos_users, pos_items, pos_targets, seen_indptr,
                           seen_indices, order, n_negatives, seed, epoch, user_emb, item_emb,
                           dense, shape: NcfShape, loss, optimizer, lr, beta1, beta2, eps, step,
                           dense_state1, dense_state2, user_state1, user_state2, item_state1,
                           item_state2, batch_size, row_loss, pos_ratings=None,
                           rating_weight=0.0, rating_mean=0.0, rating_reg=0.0, n_rating=None,
                           nonnegative=False) -> None:
    """A whole epoch (NCF_TRAIN_EPOCH_DOC) on device arrays; row_loss (float64[N]) receives the
    loss of every slot in processing order. Does not synchronise."""
    n_samples = order.shape[0]
    if n_samples == 0:
        return
    dtype, index_dtype = dense.dtype, pos_users.dtype
    n_rows = min(int(batch_size), n_samples)
    d = shape.stride
    b_users = xp.empty(n_rows, index_dtype)
    b_items = xp.empty(n_rows, index_dtype)
    b_targets = xp.empty(n_rows, dtype)
    with_rating = pos_ratings is not None
    rating_columns, nonnegative_columns = ncf_epoch_columns(n_rating, shape.n_gmf, with_rating,
                                                            nonnegative)
    b_ratings = xp.empty(n_rows if with_rating else 1, dtype)
    b_weights = xp.empty(n_rows if with_rating else 1, dtype)
    cache_flat = xp.empty(max(n_rows * shape.cache_width, 1), dtype)
    work_flat = xp.empty(max(n_rows * sum(shape.widths), 1), dtype)
    logits = xp.empty(n_rows, dtype)
    dz = xp.empty(n_rows, dtype)
    dense_grad = xp.empty_like(dense)
    user_grads = xp.empty((n_rows, d), dtype)
    item_grads = xp.empty((n_rows, d), dtype)
    n_items = item_emb.shape[0]
    for b, start in enumerate(range(0, n_samples, int(batch_size))):
        bs = min(int(batch_size), n_samples - start)
        blocks = shape.blocks(cache_flat, bs)
        grads = shape.blocks(work_flat, bs, with_gmf=False)
        x0 = blocks[1] if shape.widths else cache_flat
        users, items, targets = b_users[:bs], b_items[:bs], b_targets[:bs]
        u_grads, i_grads = user_grads[:bs], item_grads[:bs]
        get_kernel("ncf_sample_gather")(
            _row_blocks(bs), (THREADS,),
            (pos_users, pos_items, pos_targets, seen_indptr, seen_indices, order[start:start + bs],
             np.int64(bs), np.int64(n_negatives), np.uint64(seed), np.int64(epoch), user_emb,
             item_emb, np.int64(n_items), np.int64(shape.n_gmf), np.int64(shape.n_mlp),
             np.int64(d), np.int32(with_rating), pos_targets if pos_ratings is None else
             pos_ratings, dtype.type(rating_weight), users, items, targets, b_ratings, b_weights,
             blocks[0], x0))
        _mlp_forward(xp, get_kernel, shape, blocks[1:], dense, bs)
        d_last = grads[-1] if shape.widths else dz
        rating = (Rating(b_ratings[:bs], b_weights[:bs], rating_mean, rating_reg,
                         rating_columns) if with_rating else None)
        _score(get_kernel, shape, users, items, targets, user_emb, item_emb, dense, blocks, bs, 1,
               1, loss, logits, row_loss[start:start + bs], dz, d_last, u_grads, i_grads, rating)
        _mlp_backward(xp, get_kernel, shape, blocks, grads, dense, dense_grad, dz, bs, u_grads,
                      i_grads)
        t = int(step) + b + 1
        optim.launch_dense_step(get_kernel, optimizer, dense, dense_grad, dense_state1,
                                dense_state2, lr, beta1, beta2, eps, t)
        for table, rows, row_grads, s1, s2 in ((user_emb, users, u_grads, user_state1,
                                                user_state2),
                                               (item_emb, items, i_grads, item_state1,
                                                item_state2)):
            optim.launch_sparse_step(xp, get_kernel, optimizer, table, rows, row_grads, s1, s2,
                                     lr, beta1, beta2, eps, t)
            if nonnegative_columns:
                get_kernel("ncf_project_nonnegative")(
                    _elementwise_blocks(bs * nonnegative_columns), (THREADS,),
                    (table, rows, np.int64(bs), np.int64(nonnegative_columns), np.int64(d)))


# -- public contract functions ------------------------------------------------------------------


def _check_net(user_emb, item_emb, dense, layers, n_gmf) -> NcfShape:
    check_ncf_net(user_emb, item_emb, dense, layers, n_gmf)
    return network_shape(layers, n_gmf, user_emb.shape[1])


def _check_pairs(users, items, user_emb, item_emb) -> None:
    check_ncf_batch(users, items, user_emb, item_emb, values=host_values(users, items))


def _check_like(name, arr, dtype, shape) -> None:
    check_array(name, arr, dtype, len(shape), shape)


def _check_rating(shape: NcfShape, ratings, weights, mean, reg, n_rating, dtype,
                  n: int) -> Rating | None:
    """The rating term's arrays (both or neither, T[n]); it needs the rating bias column."""
    if ratings is None and weights is None:
        return None
    if ratings is None or weights is None:
        raise ContractError("ratings and rating_weights go together")
    if shape.stride != shape.d + 1:
        raise ContractError("the rating term needs the rating bias column (embedding rows of "
                            "n_gmf + layers[0] / 2 + 1 columns)")
    _check_like("ratings", ratings, dtype, (n,))
    _check_like("rating_weights", weights, dtype, (n,))
    return Rating(ratings, weights, float(mean), float(reg), ncf_n_rating(n_rating, shape.n_gmf))


def _device_getter(dtype, index_dtype):
    from fastrec.backends.cuda._loader import get_function

    def get_kernel(name):
        return get_function(kernel_source(name), kernel_expression(name, dtype, index_dtype))

    return get_kernel


def ncf_forward(users, items, user_emb, item_emb, dense, layers, n_gmf, cache, logits,
                n_threads=1) -> None:
    """See ``fastrec.backends._contract.NCF_FORWARD_DOC``. CuPy arrays are used in place; numpy
    arrays are copied to the device (and ``cache``/``logits`` back). ``n_threads`` is ignored."""
    shape = _check_net(user_emb, item_emb, dense, layers, n_gmf)
    _check_pairs(users, items, user_emb, item_emb)
    batch = users.shape[0]
    _check_like("cache", cache, dense.dtype, (batch * shape.cache_width,))
    _check_like("logits", logits, dense.dtype, (batch,))
    if batch == 0:
        return
    import cupy

    dev = [cupy.asarray(a) for a in (users, items, user_emb, item_emb, dense, cache, logits)]
    launch_ncf_forward(cupy, _device_getter(dense.dtype, users.dtype), *dev[:5], shape, *dev[5:])
    optim.copy_back((cache, logits), dev[5:])


def ncf_backward(users, items, targets, user_emb, item_emb, dense, layers, n_gmf, cache, logits,
                 loss, dense_grad, user_grads, item_grads, n_threads=1, ratings=None,
                 rating_weights=None, rating_mean=0.0, rating_reg=0.0, n_rating=None) -> float:
    """See ``fastrec.backends._contract.NCF_BACKWARD_DOC`` (arrays as :func:`ncf_forward`;
    synchronises to return the loss)."""
    shape = _check_net(user_emb, item_emb, dense, layers, n_gmf)
    _check_pairs(users, items, user_emb, item_emb)
    batch, dtype = users.shape[0], dense.dtype
    _check_like("targets", targets, dtype, (batch,))
    _check_like("cache", cache, dtype, (batch * shape.cache_width,))
    _check_like("logits", logits, dtype, (batch,))
    _check_like("dense_grad", dense_grad, dtype, dense.shape)
    _check_like("user_grads", user_grads, dtype, (batch, shape.stride))
    _check_like("item_grads", item_grads, dtype, (batch, shape.stride))
    if int(loss) not in (0, 1):
        raise ContractError(f"loss must be 0 (BCE) or 1 (squared), got {loss}")
    rating = _check_rating(shape, ratings, rating_weights, rating_mean, rating_reg, n_rating,
                           dtype, batch)
    import cupy

    dev = [cupy.asarray(a) for a in (users, items, targets, user_emb, item_emb, dense, cache,
                                     logits, dense_grad, user_grads, item_grads)]
    row_loss = cupy.zeros(max(batch, 1), np.float64)
    if rating is not None:
        rating = rating._replace(ratings=cupy.asarray(rating.ratings),
                                 weights=cupy.asarray(rating.weights))
    launch_ncf_backward(cupy, _device_getter(dtype, users.dtype), *dev[:6], shape, *dev[6:8],
                        int(loss), *dev[8:], row_loss[:batch], rating)
    optim.copy_back((dense_grad, user_grads, item_grads), dev[8:])
    return float(row_loss.sum())


def ncf_train_epoch(pos_users, pos_items, pos_targets, seen_indptr, seen_indices, order,
                    n_negatives, seed, epoch, user_emb, item_emb, dense, layers, n_gmf, loss,
                    optimizer, lr, beta1, beta2, eps, step, dense_state1, dense_state2,
                    user_state1, user_state2, item_state1, item_state2, batch_size,
                    n_threads=1, ratings=None, rating_weight=0.0, rating_mean=0.0,
                    rating_reg=0.0, n_rating=None, nonnegative=False) -> float:
    """See ``fastrec.backends._contract.NCF_TRAIN_EPOCH_DOC``. CuPy arrays are updated in place;
    numpy arrays are copied to the device and the parameters and optimiser state back.
    ``n_threads`` is ignored. Synchronises once, at the end, for the returned loss."""
    shape = _check_net(user_emb, item_emb, dense, layers, n_gmf)
    dtype = dense.dtype
    _check_pairs(pos_users, pos_items, user_emb, item_emb)
    n_pos = pos_users.shape[0]
    _check_like("pos_targets", pos_targets, dtype, (n_pos,))
    if ratings is not None:
        _check_rating(shape, ratings, ratings, rating_mean, rating_reg, n_rating, dtype, n_pos)
    _check_like("seen_indptr", seen_indptr, np.int64, (user_emb.shape[0] + 1,))
    _check_like("seen_indices", seen_indices, pos_users.dtype, (seen_indices.shape[0],))
    _check_like("order", order, np.int64, (order.shape[0],))
    for name, arr, like in (("dense_state1", dense_state1, dense),
                            ("dense_state2", dense_state2, dense),
                            ("user_state1", user_state1, user_emb),
                            ("user_state2", user_state2, user_emb),
                            ("item_state1", item_state1, item_emb),
                            ("item_state2", item_state2, item_emb)):
        _check_like(name, arr, dtype, like.shape)
    if int(batch_size) < 1 or int(n_negatives) < 0:
        raise ContractError("batch_size must be >= 1 and n_negatives >= 0")
    if int(loss) not in (0, 1) or int(optimizer) not in (0, 1, 2):
        raise ContractError(f"unknown loss {loss} or optimizer {optimizer}")
    if not 0 < item_emb.shape[0] <= 2**32:
        raise ContractError("the negative draw needs 1 <= n_items <= 2**32")
    if host_values(order) and order.size and (
            order.min() < 0 or order.max() >= n_pos * (int(n_negatives) + 1)):
        raise ContractError("order holds a slot outside [0, P * (n_negatives + 1))")
    if order.shape[0] == 0:
        return 0.0
    import cupy

    inputs = [cupy.asarray(a) for a in (pos_users, pos_items, pos_targets, seen_indptr,
                                        seen_indices, order)]
    pos_ratings = None if ratings is None else cupy.asarray(ratings)
    outputs = (user_emb, item_emb, dense, dense_state1, dense_state2, user_state1, user_state2,
               item_state1, item_state2)
    dev = [cupy.asarray(a) for a in outputs]
    row_loss = cupy.zeros(order.shape[0], np.float64)
    launch_ncf_train_epoch(cupy, _device_getter(dtype, pos_users.dtype), *inputs,
                           int(n_negatives), int(seed), int(epoch), *dev[:3], shape, int(loss),
                           int(optimizer), lr, beta1, beta2, eps, int(step), *dev[3:],
                           int(batch_size), row_loss, pos_ratings, float(rating_weight),
                           float(rating_mean), float(rating_reg), n_rating, bool(nonnegative))
    total = float(row_loss.sum())
    optim.copy_back(outputs, dev)
    return total
