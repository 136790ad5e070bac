"""The kernel contract: the functions every backend implements, with their shapes and dtypes.

Every kernel works at the granularity of a *pass* (a whole SGD epoch, a whole update of one
factor, a whole forward or backward pass over a batch), so Python overhead is paid per pass.
Models call kernels only through :func:`fastrec.backends.get_backend` and never branch on the
backend. Conventions shared by all kernels:

- ``T`` is the floating dtype, float32 or float64, the same for every floating array of a call.
- ``I`` is the index dtype, int32 or int64, the same for every index array of a call.
- Arrays are C-contiguous. Arguments documented as *modified in place* are the only ones written.
- ``n_threads`` is a positive int; results never depend on it unless a kernel says so.

The numpy reference backend implements every function plainly and is the oracle the others are
tested against. A backend may implement a subset; :func:`fastrec.backends.show_backends` lists
what each one has.
"""

from __future__ import annotations

import numpy as np

SGD_EPOCH_DOC = """sgd_epoch(users, items, ratings, block_ptr, schedule, user_factors, item_factors,
          user_bias, item_bias, global_mean, lr, lr_bias, reg, reg_bias, biased, n_threads)
    -> float

One SGD epoch of biased matrix factorisation (math: ``csrc/include/fastrec/sgd.h``).

users, items : I[nnz]           rating coordinates, grouped by block (see block_ptr)
ratings      : T[nnz]
block_ptr    : int64[G*G+1]     ratings of block b are ``block_ptr[b]:block_ptr[b+1]``; block b
               holds users of user block ``b // G`` and items of item block ``b % G``
schedule     : int64[n_strata, width] block ids; -1 entries are skipped. Strata run in order;
               the blocks of one stratum must touch pairwise disjoint users and items, so a
               backend may run them concurrently.
user_factors : T[n_users, k]    modified in place
item_factors : T[n_items, k]    modified in place
user_bias    : T[n_users]       modified in place when ``biased``
item_bias    : T[n_items]       modified in place when ``biased``
global_mean, lr, lr_bias, reg, reg_bias : float scalars (cast to T)
biased       : bool             False gives plain (PMF-style) MF: biases are left untouched
n_threads    : int

Semantics: exactly sequential SGD over the ratings taken stratum by stratum, block by block in
schedule order, ratings in stored order within a block. Because the blocks of a stratum are
conflict-free, every backend's result is independent of its thread count (a backend may run a
block as soon as the previous scheduled blocks on its user block and its item block are done).
Returns the sum of squared errors of the ratings, each measured just before its own update.
CUDA: a warp per block, started after its row's and column's predecessors, keeps this exact
order (no Hogwild) and the CPU's summation order without FMA contraction: deterministic, and
bitwise equal to a CPU kernel built with -ffp-contract=off. Arrays may be CuPy arrays (in place).
"""

ADAM_STEP_DOC = """adam_step(params, grads, m, v, step, lr, beta1=0.9, beta2=0.999, eps=1e-8,
          n_threads=1) -> None

One Adam step over a flat parameter vector (math: ``csrc/include/fastrec/optim.h``, the
torch.optim.Adam formula with bias correction).

params : T[n]   modified in place
grads  : T[n]   gradient (any L2 term already added)
m, v   : T[n]   first and second moments, modified in place (start at zero)
step   : int    1-based step number t (for the bias corrections 1 - beta**t)
lr, beta1, beta2, eps : float
"""

SPARSE_ADAM_STEP_DOC = """sparse_adam_step(table, rows, row_grads, m, v, step, lr, beta1=0.9,
                 beta2=0.999, eps=1e-8, n_threads=1) -> None

Lazy Adam (torch.optim.SparseAdam) on the embedding rows a batch touched.

table     : T[n_rows, d]  modified in place (only rows listed in ``rows``)
rows      : I[n]          row of each gradient; duplicates allowed
row_grads : T[n, d]       gradient of each position (not modified)
m, v      : T[n_rows, d]  moments, modified in place for the touched rows only
step      : int           1-based global step number

The gradients of duplicate rows are summed (in position order) and every distinct row gets one
Adam update; rows not in ``rows`` are left untouched (their moments do not decay).
"""

SPARSE_ADAGRAD_STEP_DOC = """sparse_adagrad_step(table, rows, row_grads, acc, lr, eps=1e-10,
                    n_threads=1) -> None

Adagrad on the embedding rows a batch touched: ``acc += g**2; w -= lr * g / (sqrt(acc) + eps)``
with ``g`` the summed gradient of each distinct row (arguments as ``sparse_adam_step``;
``acc`` T[n_rows, d] is modified in place).
"""

NCF_LAYOUT_DOC = """Layouts shared by the NCF kernels (GMF, MLP and NeuMF are one network):

user_emb : T[n_users, d], item_emb : T[n_items, d], d = n_gmf + n_mlp. Columns [0, n_gmf) are
           the GMF embedding, [n_gmf, d) the MLP embedding.
layers   : int64[n_widths] MLP widths; layers[0] = 2 * n_mlp (the concatenated user and item MLP
           embeddings), layers[l] the output width of dense layer l (ReLU). Empty: no MLP tower
           (GMF). n_gmf = 0: no GMF branch (MLP).
dense    : T[n_dense], concatenated: for l = 1..n_widths-1, W_l row-major [layers[l-1], layers[l]]
           then b_l [layers[l]]; then the output weights h [n_gmf + last] and the output bias [1]
           (last = layers[-1], or 0 without MLP).
logit    : z = h . [p_u * q_i (GMF part) ; mlp_L] + b_out, with
           mlp_0 = [p_u (MLP part) ; q_i (MLP part)], mlp_l = relu(mlp_{l-1} W_l + b_l).
cache    : T[B * (n_gmf + sum(layers))], block-major: gmf [B, n_gmf], then mlp_0 [B, layers[0]],
           ..., mlp_L [B, layers[-1]], each block a C-contiguous matrix.
loss     : 0 = binary cross-entropy with logits (targets in [0, 1]); 1 = squared error (z - y)^2.
optimizer: 0 = Adam (lazy on embedding rows), 1 = Adagrad, 2 = SGD (optim.h).
Math of the activations and losses: ``csrc/include/fastrec/ncf.h``.
"""

NCF_FORWARD_DOC = """ncf_forward(users, items, user_emb, item_emb, dense, layers, n_gmf, cache,
            logits, n_threads=1) -> None

Forward pass of a mini-batch (layouts: NCF_LAYOUT_DOC).

users, items : I[B]
cache        : T[B * (n_gmf + sum(layers))]  written (activations for the backward pass)
logits       : T[B]                           written
"""

NCF_BACKWARD_DOC = """ncf_backward(users, items, targets, user_emb, item_emb, dense, layers, n_gmf,
             cache, logits, loss, dense_grad, user_grads, item_grads, n_threads=1) -> float

Backward pass of the mini-batch whose forward pass filled ``cache`` and ``logits``.

targets    : T[B]       labels (BCE) or ratings (squared error)
loss       : int        0 BCE with logits, 1 squared error
dense_grad : T[n_dense] written: gradient of the mean loss over the batch
user_grads : T[B, d]    written: gradient of the mean loss w.r.t. the user row of each position
item_grads : T[B, d]    written: the same for the item rows
Returns the summed (not mean) loss of the batch. Inputs other than the outputs are unchanged.
"""

NCF_TRAIN_EPOCH_DOC = """ncf_train_epoch(pos_users, pos_items, pos_targets, seen_indptr,
                seen_indices, order, n_negatives, seed, epoch, user_emb, item_emb, dense,
                layers, n_gmf, loss, optimizer, lr, beta1, beta2, eps, step, dense_state1,
                dense_state2,
                user_state1, user_state2, item_state1, item_state2, batch_size, n_threads=1)
    -> float

A whole training epoch: sampling, batching, forward, backward and optimiser steps.

pos_users, pos_items : I[P]   observed pairs; pos_targets : T[P] their targets
seen_indptr, seen_indices : int64[n_users+1], I[nnz]  CSR of the items each user has seen,
               sorted within rows (negatives are drawn outside it)
order        : int64[N]  sample slots in processing order; slot s stands for positive
               p = s // (n_negatives + 1) and j = s % (n_negatives + 1): j = 0 is the positive
               (target pos_targets[p]); j >= 1 is its negative number k = p * n_negatives + j - 1
               with target 0, the item drawn with the counter RNG (rng.h) under
               key = rng_key(seed, epoch): candidate t is
               rng_below(rng_at(key, k * 64 + t), n_items), t = 0..63, the first one not seen by
               the user (or the 64th). Batches are consecutive runs of ``batch_size`` slots
               (the last may be shorter).
user_emb, item_emb, dense : modified in place
*_state1, *_state2 : optimiser state shaped like dense / user_emb / item_emb, modified in place
               (Adam: moments; Adagrad: accumulator in state1; SGD: unused)
step         : Adam steps taken before this epoch; batch b uses step + b + 1
Each batch: forward, backward (mean loss), then one optimiser step of the dense vector and one
lazy step of each distinct user and item row of the batch (duplicates summed).
Returns the summed loss of every sample, measured in its batch's forward pass. Results do not
depend on n_threads (float rounding aside between backends).
"""

NMF_UPDATE_FULL_DOC = """\
nmf_update_full(indptr, indices, data, factors, other, beta_loss, l1_reg, l2_reg,
                n_threads) -> None

One multiplicative update of ``factors`` for X ~ factors @ other.T, every entry of X counted
(absent entries are zeros), after Lee & Seung as scikit-learn's ``NMF(solver="mu")``.
Math: ``csrc/include/fastrec/nmf.h``. To update W call it with (X, W, H^T); to update H, with
(X^T, H^T, W): one kernel serves both factors.

indptr, indices : I[n_rows+1], I[nnz]   CSR structure of X (rows of ``factors``)
data      : T[nnz]        stored values of X, >= 0
factors   : T[n_rows, k]  modified in place, entries >= 0
other     : T[n_cols, k]  the fixed factor, entries >= 0
beta_loss : int           2 Frobenius, 1 generalised Kullback-Leibler
l1_reg, l2_reg : float    penalties added to the denominator (already scaled, e.g. by n_cols)
n_threads : int

Frobenius: factors *= (X other) / (factors (other^T other) + l1 + l2 factors).
KL: factors *= ((X / (factors other^T)) other) / (colsum(other) + l1 + l2 factors), the ratio
taken at stored entries only, with (factors other^T) floored at float32 eps. A zero denominator
is replaced by float32 eps. Deterministic: independent of ``n_threads``.
"""

NMF_UPDATE_OBSERVED_DOC = """\
nmf_update_observed(indptr, indices, data, factors, other, bias, other_bias,
                    global_mean, beta_loss, l1_reg, l2_reg, reg_bias, biased, n_threads) -> None

One multiplicative update of ``factors`` (and ``bias``) where only the stored entries of X
(the set Omega) count, as Surprise's NMF (Luo et al. 2014) but alternating (one factor per call).

indptr, indices, data : CSR of the observed entries over the rows of ``factors``; data T[nnz]
factors    : T[n_rows, k]  modified in place
other      : T[n_cols, k]
bias       : T[n_rows]     modified in place when ``biased`` (exact minimiser, before the step)
other_bias : T[n_cols]
global_mean : float        mu; prediction = mu + bias[u] + other_bias[i] + factors[u].other[i]
                           when ``biased``, else factors[u].other[i]
beta_loss  : int           2 Frobenius, 1 Kullback-Leibler (then ``biased`` must be False)
l1_reg, l2_reg : float     per observation; row u's penalties are n_u * l1_reg, n_u * l2_reg
reg_bias   : float         bias penalty per observation
biased     : bool
n_threads  : int

Frobenius: with target t = r - mu - b_u - b_i (t = r unbiased), row u's step is
factors[u] *= sum_i t+ q_i / (sum_i (p.q_i + t-) q_i + n_u (l1 + l2 factors[u])).
KL: factors[u] *= sum_i (r / max(p.q_i, eps)) q_i / (sum_i q_i + n_u (l1 + l2 factors[u])).
Empty rows get zero factors and zero bias. Deterministic: independent of ``n_threads``.
"""

NMF_LOSS_FULL_DOC = """\
nmf_loss_full(indptr, indices, data, factors, other, beta_loss, n_threads) -> float

The beta divergence of X and factors @ other.T over every entry: 1/2 ||X - W H||_F^2
(beta_loss 2) or sum x log(x / wh) - x + wh (beta_loss 1, wh floored at float32 eps inside the
log), accumulated in float64. Arguments as ``nmf_update_full``.
"""

NMF_LOSS_OBSERVED_DOC = """\
nmf_loss_observed(indptr, indices, data, factors, other, bias, other_bias,
                  global_mean, beta_loss, biased, n_threads) -> float

The data term of the observed-entries loss, over the stored entries only, in float64:
1/2 sum (r - prediction)^2 (beta_loss 2) or sum r log(r / wh) - r + wh (beta_loss 1).
Arguments as ``nmf_update_observed``; the regularisation is added by the caller.
"""

CONTRACT: dict[str, str] = {
    "sgd_epoch": SGD_EPOCH_DOC,
    "adam_step": ADAM_STEP_DOC,
    "sparse_adam_step": SPARSE_ADAM_STEP_DOC,
    "sparse_adagrad_step": SPARSE_ADAGRAD_STEP_DOC,
    "ncf_forward": NCF_FORWARD_DOC,
    "ncf_backward": NCF_BACKWARD_DOC,
    "ncf_train_epoch": NCF_TRAIN_EPOCH_DOC,
    "nmf_update_full": NMF_UPDATE_FULL_DOC,
    "nmf_update_observed": NMF_UPDATE_OBSERVED_DOC,
    "nmf_loss_full": NMF_LOSS_FULL_DOC,
    "nmf_loss_observed": NMF_LOSS_OBSERVED_DOC,
}

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
INDEX_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))


class ContractError(ValueError):
    """Raised when arguments to a kernel break the contract (a bug in the caller)."""


def _check_array(name: str, arr: np.ndarray, dtype, ndim: int, shape=None) -> None:
    if not isinstance(arr, np.ndarray):
        raise ContractError(f"{name} must be a numpy array, got {type(arr).__name__}")
    if arr.dtype != dtype:
        raise ContractError(f"{name} must have dtype {np.dtype(dtype)}, got {arr.dtype}")
    if arr.ndim != ndim:
        raise ContractError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if not arr.flags.c_contiguous:
        raise ContractError(f"{name} must be C-contiguous")
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise ContractError(f"{name} must have shape {tuple(shape)}, got {arr.shape}")


def check_sgd_epoch(users, items, ratings, block_ptr, schedule, user_factors, item_factors,
                    user_bias, item_bias) -> None:
    """Validate the array arguments of ``sgd_epoch`` (O(nnz) only for the index range check)."""
    dtype = user_factors.dtype
    if dtype not in FLOAT_DTYPES:
        raise ContractError(f"factors must be float32 or float64, got {dtype}")
    if users.dtype not in INDEX_DTYPES:
        raise ContractError(f"indices must be int32 or int64, got {users.dtype}")
    nnz = users.shape[0]
    n_users, k = user_factors.shape
    n_items = item_factors.shape[0]
    _check_array("users", users, users.dtype, 1)
    _check_array("items", items, users.dtype, 1, (nnz,))
    _check_array("ratings", ratings, dtype, 1, (nnz,))
    _check_array("block_ptr", block_ptr, np.int64, 1)
    _check_array("schedule", schedule, np.int64, 2)
    _check_array("user_factors", user_factors, dtype, 2)
    _check_array("item_factors", item_factors, dtype, 2, (n_items, k))
    _check_array("user_bias", user_bias, dtype, 1, (n_users,))
    _check_array("item_bias", item_bias, dtype, 1, (n_items,))
    n_blocks = block_ptr.shape[0] - 1
    if round(n_blocks ** 0.5) ** 2 != n_blocks:
        raise ContractError("block_ptr must describe a square G x G grid (G*G + 1 entries)")
    if n_blocks < 0 or block_ptr[0] != 0 or block_ptr[-1] != nnz or np.any(np.diff(block_ptr) < 0):
        raise ContractError("block_ptr must rise from 0 to nnz")
    if schedule.size and (schedule.max() >= n_blocks or schedule.min() < -1):
        raise ContractError("schedule holds a block id outside [-1, n_blocks)")
    if nnz:
        if users.min() < 0 or users.max() >= n_users:
            raise ContractError(f"user index out of range [0, {n_users})")
        if items.min() < 0 or items.max() >= n_items:
            raise ContractError(f"item index out of range [0, {n_items})")


def check_adam_step(params, grads, m, v, step) -> None:
    """Validate the arguments of ``adam_step``."""
    if params.dtype not in FLOAT_DTYPES:
        raise ContractError(f"params must be float32 or float64, got {params.dtype}")
    _check_array("params", params, params.dtype, 1)
    for name, arr in (("grads", grads), ("m", m), ("v", v)):
        _check_array(name, arr, params.dtype, 1, params.shape)
    if int(step) < 1:
        raise ContractError(f"step must be >= 1, got {step}")


def check_sparse_step(table, rows, row_grads, *states) -> None:
    """Validate the arguments of ``sparse_adam_step`` / ``sparse_adagrad_step``."""
    if table.dtype not in FLOAT_DTYPES:
        raise ContractError(f"table must be float32 or float64, got {table.dtype}")
    if rows.dtype not in INDEX_DTYPES:
        raise ContractError(f"rows must be int32 or int64, got {rows.dtype}")
    _check_array("table", table, table.dtype, 2)
    _check_array("rows", rows, rows.dtype, 1)
    _check_array("row_grads", row_grads, table.dtype, 2, (rows.shape[0], table.shape[1]))
    for j, state in enumerate(states):
        _check_array(f"optimizer state {j}", state, table.dtype, 2, table.shape)
    if rows.size and (rows.min() < 0 or rows.max() >= table.shape[0]):
        raise ContractError(f"row index out of range [0, {table.shape[0]})")


def check_ncf_net(user_emb, item_emb, dense, layers, n_gmf) -> None:
    """Validate an NCF network's arrays against the layout (NCF_LAYOUT_DOC)."""
    dtype = dense.dtype
    if dtype not in FLOAT_DTYPES:
        raise ContractError(f"dense must be float32 or float64, got {dtype}")
    _check_array("layers", layers, np.int64, 1)
    n_mlp = int(layers[0]) // 2 if layers.shape[0] else 0
    if layers.shape[0] and (layers.min() < 1 or layers[0] % 2):
        raise ContractError(f"layers must be positive with an even layers[0], got {layers}")
    if n_gmf < 0 or (n_gmf == 0 and layers.shape[0] == 0):
        raise ContractError("the network needs n_gmf > 0 or MLP layers")
    _check_array("user_emb", user_emb, dtype, 2)
    _check_array("item_emb", item_emb, dtype, 2, (item_emb.shape[0], n_gmf + n_mlp))
    if user_emb.shape[1] != n_gmf + n_mlp:
        raise ContractError(f"embedding rows must have n_gmf + layers[0] / 2 = {n_gmf + n_mlp}"
                            f" columns, got {user_emb.shape[1]}")
    weights = sum(int(a) * int(b) + int(b) for a, b in zip(layers[:-1], layers[1:], strict=False))
    last = int(layers[-1]) if layers.shape[0] else 0
    _check_array("dense", dense, dtype, 1, (weights + n_gmf + last + 1,))


def check_ncf_batch(users, items, user_emb, item_emb) -> None:
    """Validate a batch's index arrays (O(B) range check)."""
    if users.dtype not in INDEX_DTYPES:
        raise ContractError(f"indices must be int32 or int64, got {users.dtype}")
    _check_array("users", users, users.dtype, 1)
    _check_array("items", items, users.dtype, 1, users.shape)
    if users.size:
        if users.min() < 0 or users.max() >= user_emb.shape[0]:
            raise ContractError(f"user index out of range [0, {user_emb.shape[0]})")
        if items.min() < 0 or items.max() >= item_emb.shape[0]:
            raise ContractError(f"item index out of range [0, {item_emb.shape[0]})")


def check_nmf(indptr, indices, data, factors, other, bias=None, other_bias=None,
              beta_loss: int = 2) -> None:
    """Validate the array arguments of the NMF kernels (O(nnz) for the index range check)."""
    dtype = factors.dtype
    if dtype not in FLOAT_DTYPES:
        raise ContractError(f"factors must be float32 or float64, got {dtype}")
    if indptr.dtype not in INDEX_DTYPES:
        raise ContractError(f"indptr must be int32 or int64, got {indptr.dtype}")
    if beta_loss not in (1, 2):
        raise ContractError(f"beta_loss must be 1 or 2, got {beta_loss!r}")
    n_rows, k = factors.shape if factors.ndim == 2 else (-1, -1)
    _check_array("factors", factors, dtype, 2)
    if k < 1:
        raise ContractError("factors must have at least one column")
    _check_array("other", other, dtype, 2, (other.shape[0] if other.ndim == 2 else -1, k))
    _check_array("indptr", indptr, indptr.dtype, 1, (n_rows + 1,))
    nnz = int(indptr[-1])
    _check_array("indices", indices, indptr.dtype, 1, (nnz,))
    _check_array("data", data, dtype, 1, (nnz,))
    if indptr[0] != 0 or np.any(np.diff(indptr) < 0):
        raise ContractError("indptr must rise from 0 to nnz")
    if nnz and (indices.min() < 0 or indices.max() >= other.shape[0]):
        raise ContractError(f"column index out of range [0, {other.shape[0]})")
    if bias is not None:
        _check_array("bias", bias, dtype, 1, (n_rows,))
    if other_bias is not None:
        _check_array("other_bias", other_bias, dtype, 1, (other.shape[0],))
