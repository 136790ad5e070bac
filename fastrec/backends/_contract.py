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

CONTRACT: dict[str, str] = {
    "sgd_epoch": SGD_EPOCH_DOC,
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
