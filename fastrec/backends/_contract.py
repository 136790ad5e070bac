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

import importlib
import math
from typing import NamedTuple

import numpy as np

from fastrec._array import array_module, is_device_array

SGD_EPOCH_DOC = """sgd_epoch(users, items, ratings, block_ptr, schedule, user_factors, item_factors,
          user_bias, item_bias, global_mean, lr, lr_bias, reg, reg_bias, biased, n_threads)
    -> float

One SGD epoch of biased matrix factorisation (math: ``csrc/include/fastrec/sgd.h``).

users, items : I[nnz]           rating coordinates, grouped by block (see block_ptr)
ratings      : T[nnz]
block_ptr    : int64[G*G+1]     ratings of block b are ``block_ptr[b]:block_ptr[b+1]``; block b
               holds users of user block ``b // G`` and items of item block ``b % G``
schedule     : int64[n_strata, width] block ids; -1 entries are skipped. Strata run in order;
               a stratum uses each row block (``b // G``) and each column block (``b % G``) at
               most once, so its blocks touch pairwise disjoint users and items and a backend
               may run them concurrently (CUDA's dataflow driver records one predecessor per row
               and column block and stratum: a repeat would leave one unwaited for, a race).
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


SVDPP_EPOCH_DOC = """svdpp_epoch(users, items, ratings, block_ptr, schedule, user_ptr, user_items,
            item_ptr, item_users, user_factors, item_factors, implicit_factors, user_bias,
            item_bias, global_mean, lr, lr_bias, reg, reg_bias, reg_implicit, biased, n_threads)
    -> float

One SGD epoch of SVD++, ``r_hat = mu + b_u + b_i + q_i . (p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j)``
(math and update order: ``csrc/include/fastrec/svdpp.h``). The ratings, blocks and schedule are
those of ``sgd_epoch``.

users, items, ratings, block_ptr, schedule : as in ``sgd_epoch``
user_ptr, user_items : int64[n_users+1], I[n_implicit]  CSR of N(u): the items of user u are
               ``user_items[user_ptr[u]:user_ptr[u+1]]`` (no duplicates)
item_ptr, item_users : int64[n_items+1], I[n_implicit]  the same pairs by item (CSC), users
               ascending within an item
user_factors, item_factors, implicit_factors : T[n_users, k], T[n_items, k], T[n_items, k]
               modified in place
user_bias, item_bias : T[n_users], T[n_items]  modified in place when ``biased``
global_mean, lr, lr_bias, reg, reg_bias, reg_implicit : float scalars (cast to T)
biased, n_threads : as in ``sgd_epoch``

Semantics: (1) z_u = |N(u)|^-1/2 sum_j y_j for every user, from y at the start of the epoch;
(2) sequential SGD over the ratings in schedule order as ``sgd_epoch``, with p_u + z_u in
place of p_u, g_u += e q_i accumulated per user and z_u += lr e q_i (when N(u) is not empty);
(3) y_j = (y_j + lr sum_{u: j in
N(u)} |N(u)|^-1/2 g_u) / (1 + lr reg_implicit n_j), n_j = the number of users of item j. The
result does not depend on ``n_threads``. Returns the SSE of the ratings, each measured just
before its own update. CUDA: arrays may be CuPy arrays (in place).
"""


GRU_FORWARD_DOC = """gru_forward(X, h0, reset, Wx0, Wx_rest, Wh, b, n_threads) -> (hs, gates)

Stacked GRU over a block of T steps of B parallel sequences (math: ``csrc/include/fastrec/gru.h``,
GRU4Rec's gate order and reset-before-product form):
    a = x Wx + b;  r = sig(a_r + h Wh_r);  z = sig(a_z + h Wh_z);
    n = tanh(a_n + (r * h) Wh_n);  h' = (1 - z) * h + z * n

X       : T[T, B, D]       inputs of layer 0
h0      : T[L, B, H]       states before step 0
reset   : uint8[T, B]      nonzero: slot b starts a new sequence at step t (previous state is 0)
Wx0     : T[D, 3H]         layer-0 input weights, columns [r | z | n]
Wx_rest : T[L-1, H, 3H]    input weights of layers 1..L-1 (shape (0, H, 3H) for one layer)
Wh      : T[L, H, 3H]      recurrent weights
b       : T[L, 3H]         biases
Returns hs T[L, T, B, H] (every layer's output at every step) and gates T[L, T, B, 3H]
(post-activation r, z, n), which gru_backward needs. Nothing is modified in place.
"""

GRU_BACKWARD_DOC = """gru_backward(X, h0, reset, Wx0, Wx_rest, Wh, b, hs, gates, d_top, n_threads)
    -> (dX, dh0, dWx0, dWx_rest, dWh, db)

Full backpropagation through time over the block given d_top T[T, B, H], the gradient of the
loss with respect to the top layer's outputs hs[L-1]. Gradients do not cross a reset. Returns
new arrays shaped like X, h0, Wx0, Wx_rest, Wh and b.
"""

GRU4REC_OUTPUT_LOSS_DOC = """gru4rec_output_loss(hidden, out_table, samples, loss, bpreg,
                    grad_scale, n_threads)
    -> (loss_sum, d_hidden, d_rows)

Scores the N hidden states against S = N + K sampled items and returns the loss with its gradient.
hidden    : T[N, H]
out_table : T[n_items, H+1]   output item vectors; the last column is the item bias
samples   : I[S]              samples[i] for i < N is row i's target (the other targets act as
                              in-batch negatives); samples[N:] are shared extra negatives
loss      : LOSS_CROSS_ENTROPY (softmax over all S), LOSS_BPR_MAX or LOSS_TOP1_MAX (softmax over
            the negatives of the row, GRU4Rec v2 with ``bpreg`` score regularisation for BPR-max)
grad_scale: float, multiplies the returned gradients (1/N for a mean)
Returns the summed (unscaled) loss, d_hidden T[N, H] and d_rows T[S, H+1] (the gradient of each
sampled column; duplicates are not merged). Scores are linear (no final activation).
"""

GRU4REC_TRAIN_EPOCH_DOC = """gru4rec_train_epoch(inputs, targets, reset, hidden, emb, emb_s1,
                    emb_s2, gru_params, gru_s1, gru_s2, out_table, out_s1, out_s2,
                    neg_prob, neg_alias, spec, n_threads)
    -> (loss_sum, n_events)

A whole epoch of session-parallel GRU4Rec training (see fastrec._algorithms.gru4rec).
inputs, targets : I[n_steps, B]   the item each slot reads and must predict at each step
reset           : uint8[n_steps, B]  a new session starts in the slot (hidden state zeroed)
hidden          : T[L, B, H]      carried state, modified in place
emb             : T[n_items, D]   input embedding (spec.embedded) or, without embedding, the
                                  layer-0 input weights T[n_items, 3H]; sparse updates
gru_params      : T[P]            flat Wx0 (when embedded), Wx_rest, Wh, b (see gru_layout)
out_table       : T[n_items, H+1] output vectors + bias column; sparse updates
*_s1, *_s2      : optimizer state shaped like their parameter, modified in place
neg_prob, neg_alias : float64[n_items], I[n_items]  alias table of the extra negatives
                  distribution (popularity ** sample_alpha), drawn with rng_alias_draw
spec            : GRU4RecSpec

Steps are taken in blocks of spec.bptt (a trailing partial block is skipped); each block runs
forward, scores every step against its B targets plus spec.n_sample negatives drawn by the
counter-based RNG (stream negatives, counter step * n_sample + k), averages the loss over the
block's events, runs full BPTT over the block and takes one optimizer step for every parameter
(optimizer step count spec.step0 + block + 1). Dropout masks come from the same RNG (element k
of the block starting at step s: counter s * B * width + k). Returns the summed loss and the
number of events trained.
CUDA: cuBLAS GEMMs around fused gate, loss and optimizer kernels, the same samples and masks;
each distinct sparse row has one owning warp (no atomics), so a device run repeats bit for bit
and agrees with the CPU backends to rounding. Arrays may be CuPy arrays (updated in place).
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
CUDA: positions sorted by row; each run of a row is summed in pieces of 32 positions (a warp
per piece, position order), then a warp per row adds the piece sums in order and updates it.
Deterministic; rows repeated at most 32 times are bitwise equal to the CPU kernels, hotter rows
agree to rounding. Arrays may be CuPy arrays (in place).
"""

SPARSE_ADAGRAD_STEP_DOC = """sparse_adagrad_step(table, rows, row_grads, acc, lr, eps=1e-10,
                    n_threads=1) -> None

Adagrad on the embedding rows a batch touched: ``acc += g**2; w -= lr * g / (sqrt(acc) + eps)``
with ``g`` the summed gradient of each distinct row (arguments as ``sparse_adam_step``;
``acc`` T[n_rows, d] is modified in place).
"""

NCF_LAYOUT_DOC = """Layouts shared by the NCF kernels (GMF, MLP and NeuMF are one network):

user_emb : T[n_users, w], item_emb : T[n_items, w], w = d or d + 1, d = n_gmf + n_mlp. Columns
           [0, n_gmf) are the GMF embedding, [n_gmf, d) the MLP embedding; with w = d + 1,
           column d is the joint model's rating bias (b_u, b_i), which the network ignores.
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
rating   : the joint model's term, added to the loss of a row with a rating r and weight w > 0:
           w ((mu + b_u + b_i + p_u . q_i - r)^2 + reg (|p_u|^2 + |q_i|^2 + b_u^2 + b_i^2))
           (p, q the first n_rating GMF columns, 1 <= n_rating <= n_gmf, default n_gmf; b the
           bias column; needs w = d + 1). It trains those columns and the bias column only.
optimizer: an OPTIMIZERS code: Adam (lazy on embedding rows), Adagrad or SGD (optim.h).
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
user_grads : T[B, w]    written: gradient of the mean loss w.r.t. the user row of each position
item_grads : T[B, w]    written: the same for the item rows
ratings, rating_weights : T[B] or None (keywords)  the rating term of each row (weight 0: none),
             around the global mean ``rating_mean`` with penalty ``rating_reg``, over the first
             ``n_rating`` GMF columns (None: all; NCF_LAYOUT_DOC); both or neither
Returns the summed (not mean) loss of the batch, the rating term's included. Inputs other than
the outputs are unchanged.
"""

NCF_TRAIN_EPOCH_DOC = """ncf_train_epoch(pos_users, pos_items, pos_targets, seen_indptr,
                seen_indices, order, n_negatives, seed, epoch, user_emb, item_emb, dense,
                layers, n_gmf, loss, optimizer, lr, beta1, beta2, eps, step, dense_state1,
                dense_state2,
                user_state1, user_state2, item_state1, item_state2, batch_size, n_threads=1,
                ratings=None, rating_weight=0.0, rating_mean=0.0, rating_reg=0.0,
                n_rating=None, nonnegative=False) -> float

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
ratings      : T[P] or None  the joint model's explicit ratings of the positives: each positive
               slot gets the rating term with weight ``rating_weight`` around ``rating_mean``,
               penalty ``rating_reg``, over the first ``n_rating`` GMF columns (None: all;
               NCF_LAYOUT_DOC; negatives get none)
nonnegative  : after each step the rating term's GMF columns (the first ``n_rating``; all GMF
               columns when None) of the rows it updated are set to max(0, .)
Each batch: forward, backward (mean loss), then one optimiser step of the dense vector and one
lazy step of each distinct user and item row of the batch (duplicates summed).
Returns the summed loss of every sample, measured in its batch's forward pass. Results do not
depend on n_threads (float rounding aside between backends).
CUDA: the negatives are drawn on the device with the same RNG (the same items as every backend);
no float atomics, so an epoch repeats bit for bit on a given GPU. Arrays may be CuPy arrays
(in place).
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
is replaced by float32 eps; where num / den overflows (an underflowed denominator), the step is
num / (den / factors) and zero entries stay zero (a non-finite num or den keeps its
non-finite step). Deterministic: independent of ``n_threads``.
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
The zero and overflow rules of the step are ``nmf_update_full``'s. Empty rows get zero factors
and zero bias. Deterministic: independent of ``n_threads``.
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
    "svdpp_epoch": SVDPP_EPOCH_DOC,
    "gru_forward": GRU_FORWARD_DOC,
    "gru_backward": GRU_BACKWARD_DOC,
    "gru4rec_output_loss": GRU4REC_OUTPUT_LOSS_DOC,
    "gru4rec_train_epoch": GRU4REC_TRAIN_EPOCH_DOC,
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

# Where each backend package keeps the contract kernels: one module per model family,
# ``<backend>/<family>.py`` (the compiled ones ``cython/_<family>.pyx``).
KERNEL_MODULES: dict[str, tuple[str, ...]] = {
    "sgd": ("sgd_epoch",),
    "svdpp": ("svdpp_epoch",),
    "gru": ("gru_forward", "gru_backward", "gru4rec_output_loss", "gru4rec_train_epoch"),
    "optim": ("adam_step", "sparse_adam_step", "sparse_adagrad_step"),
    "ncf": ("ncf_forward", "ncf_backward", "ncf_train_epoch"),
    "nmf": ("nmf_update_full", "nmf_update_observed", "nmf_loss_full", "nmf_loss_observed"),
}


def export_kernels(namespace: dict, package: str, prefix: str = "") -> list[str]:
    """Import the contract kernels of the backend package ``package`` from its family modules
    (``<package>.<prefix><family>``, see ``KERNEL_MODULES``) into ``namespace`` (the package's
    globals) and return their names, for its ``__all__``. The one registration every backend
    package does, so no backend lists the kernels by hand."""
    names = []
    for family, kernels in KERNEL_MODULES.items():
        module = importlib.import_module(f"{package}.{prefix}{family}")
        for name in kernels:
            namespace[name] = getattr(module, name)
        names.extend(kernels)
    return names


FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
INDEX_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))

# Optimizer codes: OptimizerKind in csrc/include/fastrec/optim.h, the only other definition
# (tests/kernels/test_optimizer_codes.py checks that the two agree).
OPT_ADAM, OPT_ADAGRAD, OPT_SGD = 0, 1, 2
OPTIMIZERS = {"adam": OPT_ADAM, "adagrad": OPT_ADAGRAD, "sgd": OPT_SGD}


class ContractError(ValueError):
    """Raised when arguments to a kernel break the contract (a bug in the caller)."""


VALUES = """The validators take numpy or CuPy arrays (any mix a backend accepts) and give the same
messages for both. Dtypes, shapes and layout are read from the array headers. With ``values``
(the default) they also read the arrays' contents (index ranges, monotone row pointers, the
schedule's strata), O(n) reductions in the arrays' own module, which on a device end in a
synchronisation: the models validate once per fit with ``values``; the CUDA backend validates
every launch without them for device arrays (index ranges on the device are the caller's duty,
as for any CUDA kernel) and with them for host arrays."""


def check_array(name: str, arr, dtype, ndim: int, shape=None) -> None:
    """``arr`` is a numpy or CuPy array of ``dtype``, ``ndim`` dimensions, C order and (unless
    None) ``shape``. Reads only the array's header: never its values, so it costs no device
    synchronisation."""
    if not (isinstance(arr, np.ndarray) or is_device_array(arr)):
        raise ContractError(f"{name} must be a numpy or CuPy array, got {type(arr).__name__}")
    if arr.dtype != dtype:
        raise ContractError(f"{name} must have dtype {np.dtype(dtype)}, got {arr.dtype}")
    if arr.ndim != ndim:
        raise ContractError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if not arr.flags.c_contiguous:
        raise ContractError(f"{name} must be C-contiguous")
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise ContractError(f"{name} must have shape {tuple(shape)}, got {arr.shape}")


def _out_of_range(indices, stop: int) -> bool:
    """True when an entry of ``indices`` (numpy or CuPy) is outside [0, stop)."""
    return indices.size > 0 and (int(indices.min()) < 0 or int(indices.max()) >= stop)


def _rises(ptr, start: int, stop: int) -> bool:
    """True when the row pointers ``ptr`` (numpy or CuPy) go from ``start`` to ``stop`` without
    falling."""
    xp = array_module(ptr)
    return int(ptr[0]) == start and int(ptr[-1]) == stop and not bool(xp.any(xp.diff(ptr) < 0))


def check_sgd_epoch(users, items, ratings, block_ptr, schedule, user_factors, item_factors,
                    user_bias, item_bias, values: bool = True) -> None:
    """Validate the array arguments of ``sgd_epoch``, numpy or CuPy (see :data:`VALUES`)."""
    dtype = user_factors.dtype
    if dtype not in FLOAT_DTYPES:
        raise ContractError(f"factors must be float32 or float64, got {dtype}")
    if users.dtype not in INDEX_DTYPES:
        raise ContractError(f"indices must be int32 or int64, got {users.dtype}")
    nnz = users.shape[0]
    n_users, k = user_factors.shape
    n_items = item_factors.shape[0]
    check_array("users", users, users.dtype, 1)
    check_array("items", items, users.dtype, 1, (nnz,))
    check_array("ratings", ratings, dtype, 1, (nnz,))
    check_array("block_ptr", block_ptr, np.int64, 1)
    check_array("schedule", schedule, np.int64, 2)
    check_array("user_factors", user_factors, dtype, 2)
    check_array("item_factors", item_factors, dtype, 2, (n_items, k))
    check_array("user_bias", user_bias, dtype, 1, (n_users,))
    check_array("item_bias", item_bias, dtype, 1, (n_items,))
    n_blocks = block_ptr.shape[0] - 1
    if n_blocks < 0 or math.isqrt(max(n_blocks, 0)) ** 2 != n_blocks:
        raise ContractError("block_ptr must describe a square G x G grid (G*G + 1 entries)")
    if not values:
        return
    if not _rises(block_ptr, 0, nnz):
        raise ContractError("block_ptr must rise from 0 to nnz")
    if _out_of_range(schedule + 1, n_blocks + 1):
        raise ContractError("schedule holds a block id outside [-1, n_blocks)")
    check_strata_disjoint(schedule, math.isqrt(n_blocks))
    if _out_of_range(users, n_users):
        raise ContractError(f"user index out of range [0, {n_users})")
    if _out_of_range(items, n_items):
        raise ContractError(f"item index out of range [0, {n_items})")


def check_svdpp_epoch(users, items, ratings, block_ptr, schedule, user_ptr, user_items, item_ptr,
                      item_users, user_factors, item_factors, implicit_factors, user_bias,
                      item_bias, values: bool = True) -> None:
    """Validate the array arguments of ``svdpp_epoch``, numpy or CuPy (see :data:`VALUES`)."""
    check_sgd_epoch(users, items, ratings, block_ptr, schedule, user_factors, item_factors,
                    user_bias, item_bias, values)
    n_users, n_items = user_factors.shape[0], item_factors.shape[0]
    check_array("implicit_factors", implicit_factors, user_factors.dtype, 2,
                item_factors.shape)
    for name, ptr, indices, rows, cols in (("user", user_ptr, user_items, n_users, n_items),
                                           ("item", item_ptr, item_users, n_items, n_users)):
        check_array(f"{name}_ptr", ptr, np.int64, 1, (rows + 1,))
        check_array(f"{name} indices", indices, users.dtype, 1)
        if values and not _rises(ptr, 0, indices.shape[0]):
            raise ContractError(f"{name}_ptr must rise from 0 to {indices.shape[0]}")
        if values and _out_of_range(indices, cols):
            raise ContractError(f"{name} indices out of range [0, {cols})")
    if user_items.shape[0] != item_users.shape[0]:
        raise ContractError("user_items and item_users must hold the same pairs")


def check_strata_disjoint(schedule, grid_side: int) -> None:
    """Raise unless every stratum (row of ``schedule``, int64[n_strata, width], numpy or CuPy)
    uses each row block and each column block of the ``grid_side`` x ``grid_side`` grid at most
    once (-1 entries ignored)."""
    xp = array_module(schedule)
    stratum = xp.broadcast_to(xp.arange(schedule.shape[0])[:, None], schedule.shape)
    used = schedule >= 0
    for name, line in (("row", schedule // grid_side), ("column", schedule % grid_side)):
        keys = xp.sort((stratum * grid_side + line)[used])
        repeated = xp.flatnonzero(keys[1:] == keys[:-1])
        if repeated.size:
            key = int(keys[int(repeated[0])])
            raise ContractError(f"stratum {key // grid_side} of the schedule uses {name} block "
                                f"{key % grid_side} more than once: the blocks of a stratum must "
                                "share no row or column block")


# -- GRU4Rec shared definitions ------------------------------------------------------------------
LOSS_CROSS_ENTROPY, LOSS_BPR_MAX, LOSS_TOP1_MAX = 0, 1, 2
LOSS_CODES = {"cross-entropy": LOSS_CROSS_ENTROPY, "bpr-max": LOSS_BPR_MAX,
              "top1-max": LOSS_TOP1_MAX}
# GRU4Rec trains with Adagrad (optionally with momentum) or Adam.
OPTIMIZER_CODES = {name: OPTIMIZERS[name] for name in ("adagrad", "adam")}


class GRU4RecSpec(NamedTuple):
    """Scalars of one gru4rec_train_epoch call (codes from LOSS_CODES / OPTIMIZER_CODES)."""

    embedded: bool
    loss: int
    bpreg: float
    n_sample: int
    dropout_embed: float
    dropout_hidden: float
    bptt: int
    method: int
    lr: float
    momentum: float
    beta1: float
    beta2: float
    eps: float
    step0: int
    seed: int
    epoch: int


class _GRUViews(NamedTuple):
    wx0: np.ndarray
    wx_rest: np.ndarray
    wh: np.ndarray
    b: np.ndarray


class GRULayout(NamedTuple):
    """Offsets of the dense GRU parameters inside one flat buffer: Wx0 (only when the input is
    an embedding), Wx_rest, Wh, b, in that order."""

    n_layers: int
    hidden: int
    input_dim: int
    embedded: bool

    @property
    def sizes(self) -> tuple[int, int, int, int]:
        L, H = self.n_layers, self.hidden
        return ((self.input_dim * 3 * H) if self.embedded else 0, (L - 1) * H * 3 * H,
                L * H * 3 * H, L * 3 * H)

    @property
    def size(self) -> int:
        return sum(self.sizes)

    def views(self, flat: np.ndarray) -> _GRUViews:
        L, H = self.n_layers, self.hidden
        s = np.cumsum((0, *self.sizes))
        return _GRUViews(flat[s[0]:s[1]].reshape(self.input_dim if self.embedded else 0, 3 * H),
                         flat[s[1]:s[2]].reshape(L - 1, H, 3 * H),
                         flat[s[2]:s[3]].reshape(L, H, 3 * H), flat[s[3]:s[4]].reshape(L, 3 * H))


def gru_layout(n_layers: int, hidden: int, input_dim: int, embedded: bool) -> GRULayout:
    return GRULayout(int(n_layers), int(hidden), int(input_dim), bool(embedded))


class _Streams(NamedTuple):
    negatives: int
    embed: int
    hidden: int


def rng_streams(epoch: int) -> _Streams:
    """Streams of one GRU4Rec epoch for the counter-based RNG of ``csrc/include/fastrec/rng.h``
    (keys ``rng_key(seed, stream)``): negatives, embedding dropout, hidden dropout."""
    return _Streams(4 * epoch + 1, 4 * epoch + 2, 4 * epoch + 3)


def check_gru(X, h0, reset, Wx0, Wx_rest, Wh, b) -> None:
    """Validate the arguments of ``gru_forward`` / ``gru_backward``."""
    dtype = X.dtype
    if dtype not in FLOAT_DTYPES:
        raise ContractError(f"X must be float32 or float64, got {dtype}")
    if X.ndim != 3:
        raise ContractError(f"X must be 3-D [T, B, D], got shape {X.shape}")
    T, B, D = X.shape
    if Wh.ndim != 3:
        raise ContractError(f"Wh must be 3-D [L, H, 3H], got shape {Wh.shape}")
    L, H = Wh.shape[:2]
    if T < 1 or L < 1 or H < 1:
        raise ContractError("T, L and H must be >= 1")
    check_array("X", X, dtype, 3)
    check_array("h0", h0, dtype, 3, (L, B, H))
    check_array("reset", reset, np.uint8, 2, (T, B))
    check_array("Wx0", Wx0, dtype, 2, (D, 3 * H))
    check_array("Wx_rest", Wx_rest, dtype, 3, (L - 1, H, 3 * H))
    check_array("Wh", Wh, dtype, 3, (L, H, 3 * H))
    check_array("b", b, dtype, 2, (L, 3 * H))


def check_output_loss(hidden, out_table, samples) -> None:
    """Validate the arguments of ``gru4rec_output_loss``."""
    if hidden.dtype not in FLOAT_DTYPES:
        raise ContractError(f"hidden must be float32 or float64, got {hidden.dtype}")
    if samples.dtype not in INDEX_DTYPES:
        raise ContractError(f"samples must be int32 or int64, got {samples.dtype}")
    check_array("hidden", hidden, hidden.dtype, 2)
    check_array("out_table", out_table, hidden.dtype, 2, (out_table.shape[0],
                                                          hidden.shape[1] + 1))
    check_array("samples", samples, samples.dtype, 1)
    if samples.shape[0] < hidden.shape[0]:
        raise ContractError(f"samples must hold at least the N={hidden.shape[0]} targets")


def check_gru4rec_epoch(inputs, targets, reset, hidden, emb, gru_params, out_table, neg_prob,
                        neg_alias, spec: GRU4RecSpec, values: bool = True) -> None:
    """Validate the arguments of ``gru4rec_train_epoch``, numpy or CuPy (see :data:`VALUES`)."""
    dtype = gru_params.dtype
    if dtype not in FLOAT_DTYPES:
        raise ContractError(f"parameters must be float32 or float64, got {dtype}")
    if inputs.dtype not in INDEX_DTYPES:
        raise ContractError(f"item indices must be int32 or int64, got {inputs.dtype}")
    check_array("inputs", inputs, inputs.dtype, 2)
    check_array("targets", targets, inputs.dtype, 2, inputs.shape)
    check_array("reset", reset, np.uint8, 2, inputs.shape)
    check_array("hidden", hidden, dtype, 3)
    L, B, H = hidden.shape
    if B != inputs.shape[1]:
        raise ContractError(f"hidden has {B} slots, the schedule {inputs.shape[1]}")
    check_array("emb", emb, dtype, 2)
    n_items, D = emb.shape
    if not spec.embedded and D != 3 * H:
        raise ContractError(f"without embedding, emb must be [n_items, 3H={3 * H}], got {D}")
    check_array("gru_params", gru_params, dtype, 1, (gru_layout(L, H, D, spec.embedded).size,))
    check_array("out_table", out_table, dtype, 2, (n_items, H + 1))
    check_array("neg_prob", neg_prob, np.float64, 1, (n_items,))
    check_array("neg_alias", neg_alias, inputs.dtype, 1, (n_items,))
    if spec.bptt < 1 or spec.n_sample < 0:
        raise ContractError("bptt must be >= 1 and n_sample >= 0")
    if values and (_out_of_range(inputs, n_items) or _out_of_range(targets, n_items)):
        raise ContractError(f"item index out of range [0, {n_items})")


def check_adam_step(params, grads, m, v, step) -> None:
    """Validate the arguments of ``adam_step``."""
    if params.dtype not in FLOAT_DTYPES:
        raise ContractError(f"params must be float32 or float64, got {params.dtype}")
    check_array("params", params, params.dtype, 1)
    for name, arr in (("grads", grads), ("m", m), ("v", v)):
        check_array(name, arr, params.dtype, 1, params.shape)
    if int(step) < 1:
        raise ContractError(f"step must be >= 1, got {step}")


def check_sparse_step(table, rows, row_grads, *states, values: bool = True) -> None:
    """Validate the arguments of ``sparse_adam_step`` / ``sparse_adagrad_step``, numpy or CuPy
    (see :data:`VALUES`)."""
    if table.dtype not in FLOAT_DTYPES:
        raise ContractError(f"table must be float32 or float64, got {table.dtype}")
    if rows.dtype not in INDEX_DTYPES:
        raise ContractError(f"rows must be int32 or int64, got {rows.dtype}")
    check_array("table", table, table.dtype, 2)
    check_array("rows", rows, rows.dtype, 1)
    check_array("row_grads", row_grads, table.dtype, 2, (rows.shape[0], table.shape[1]))
    for j, state in enumerate(states):
        check_array(f"optimizer state {j}", state, table.dtype, 2, table.shape)
    if values and _out_of_range(rows, table.shape[0]):
        raise ContractError(f"row index out of range [0, {table.shape[0]})")


def check_ncf_net(user_emb, item_emb, dense, layers, n_gmf) -> None:
    """Validate an NCF network's arrays (numpy or CuPy) against the layout (NCF_LAYOUT_DOC);
    ``layers`` is read (a few integers)."""
    dtype = dense.dtype
    if dtype not in FLOAT_DTYPES:
        raise ContractError(f"dense must be float32 or float64, got {dtype}")
    check_array("layers", layers, np.int64, 1)
    widths = [int(w) for w in layers.tolist()]
    n_mlp = widths[0] // 2 if widths else 0
    if widths and (min(widths) < 1 or widths[0] % 2):
        raise ContractError(f"layers must be positive with an even layers[0], got {widths}")
    if n_gmf < 0 or (n_gmf == 0 and not widths):
        raise ContractError("the network needs n_gmf > 0 or MLP layers")
    check_array("user_emb", user_emb, dtype, 2)
    if user_emb.shape[1] not in (n_gmf + n_mlp, n_gmf + n_mlp + 1):
        raise ContractError(f"embedding rows must have n_gmf + layers[0] / 2 = {n_gmf + n_mlp}"
                            f" columns (+ 1 rating bias), got {user_emb.shape[1]}")
    check_array("item_emb", item_emb, dtype, 2, (item_emb.shape[0], user_emb.shape[1]))
    weights = sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=False))
    last = widths[-1] if widths else 0
    check_array("dense", dense, dtype, 1, (weights + n_gmf + last + 1,))


def ncf_n_rating(n_rating, n_gmf: int) -> int:
    """The GMF columns of the joint model's rating term (NCF_LAYOUT_DOC): ``n_rating``, or all
    ``n_gmf`` when None."""
    n = int(n_gmf) if n_rating is None else int(n_rating)
    if not 1 <= n <= n_gmf:
        raise ContractError(f"n_rating must be in [1, n_gmf={n_gmf}], got {n_rating}")
    return n


def ncf_epoch_columns(n_rating, n_gmf: int, with_rating: bool,
                      nonnegative: bool) -> tuple[int, int]:
    """The GMF columns an epoch (NCF_TRAIN_EPOCH_DOC) gives the rating term (0 without
    ratings) and those it projects onto >= 0 (the rating term's, 0 unless ``nonnegative``)."""
    n = ncf_n_rating(n_rating, n_gmf) if with_rating or nonnegative else 0
    return (n if with_rating else 0), (n if nonnegative else 0)


def check_ncf_batch(users, items, user_emb, item_emb, values: bool = True) -> None:
    """Validate a batch's index arrays, numpy or CuPy (see :data:`VALUES`)."""
    if users.dtype not in INDEX_DTYPES:
        raise ContractError(f"indices must be int32 or int64, got {users.dtype}")
    check_array("users", users, users.dtype, 1)
    check_array("items", items, users.dtype, 1, users.shape)
    if values:
        if _out_of_range(users, user_emb.shape[0]):
            raise ContractError(f"user index out of range [0, {user_emb.shape[0]})")
        if _out_of_range(items, item_emb.shape[0]):
            raise ContractError(f"item index out of range [0, {item_emb.shape[0]})")


def check_nmf(indptr, indices, data, factors, other, bias=None, other_bias=None,
              beta_loss: int = 2, values: bool = True) -> None:
    """Validate the array arguments of the NMF kernels, numpy or CuPy (see :data:`VALUES`)."""
    dtype = factors.dtype
    if dtype not in FLOAT_DTYPES:
        raise ContractError(f"factors must be float32 or float64, got {dtype}")
    if indptr.dtype not in INDEX_DTYPES:
        raise ContractError(f"indptr must be int32 or int64, got {indptr.dtype}")
    if beta_loss not in (1, 2):
        raise ContractError(f"beta_loss must be 1 or 2, got {beta_loss!r}")
    n_rows, k = factors.shape if factors.ndim == 2 else (-1, -1)
    check_array("factors", factors, dtype, 2)
    if k < 1:
        raise ContractError("factors must have at least one column")
    check_array("other", other, dtype, 2, (other.shape[0] if other.ndim == 2 else -1, k))
    check_array("indptr", indptr, indptr.dtype, 1, (n_rows + 1,))
    check_array("indices", indices, indptr.dtype, 1)
    nnz = indices.shape[0]
    check_array("data", data, dtype, 1, (nnz,))
    if bias is not None:
        check_array("bias", bias, dtype, 1, (n_rows,))
    if other_bias is not None:
        check_array("other_bias", other_bias, dtype, 1, (other.shape[0],))
    if not values:
        return
    if not _rises(indptr, 0, nnz):
        raise ContractError("indptr must rise from 0 to nnz")
    if _out_of_range(indices, other.shape[0]):
        raise ContractError(f"column index out of range [0, {other.shape[0]})")
