"""CUDA SGD epoch: one kernel launch per stratum, a warp per block of the stratum.

Inside a block a warp runs the ratings in stored order (a warp per rating, its lanes sharing the
k factors), and the blocks of a stratum are conflict-free, so the update sequence is exactly the
contract's sequential one: no Hogwild, no atomics. Results are deterministic (bit for bit from
run to run on one device, independent of ``n_threads`` and of the launch configuration); they
differ from the CPU backends only by rounding (warp-tree dot product, FMA contraction, CuPy's
flush-to-zero for float32). Concurrency is one warp per block of a stratum: give the GPU a grid
side ``G`` of several hundred on large data.
"""

from __future__ import annotations

import numpy as np

from fastrec.backends._contract import INDEX_DTYPES, ContractError

WARPS_PER_CTA = 8
WARP_SIZE = 32


def launch_sgd_epoch(kernel, users, items, ratings, block_ptr, schedule, user_factors,
                     item_factors, user_bias, item_bias, block_sse, global_mean, lr, lr_bias,
                     reg, reg_bias, biased, warps_per_cta=WARPS_PER_CTA) -> None:
    """Launch ``kernel`` (``sgd_stratum<T, I>``, CuPy calling convention) once per stratum.

    Every array is a device array (anything CuPy's launcher accepts: CuPy arrays on a GPU, numpy
    arrays in the test emulator); ``block_sse`` is float64[n_blocks] and receives each scheduled
    block's SSE. Does not synchronise.
    """
    n_strata, width = schedule.shape
    if n_strata == 0 or width == 0 or users.shape[0] == 0:
        return
    dtype = user_factors.dtype.type
    scalars = (np.int64(user_factors.shape[1]), dtype(global_mean), dtype(lr), dtype(lr_bias),
               dtype(reg), dtype(reg_bias), np.int32(bool(biased)))
    grid = (int(-(-width // warps_per_cta)),)
    block = (warps_per_cta * WARP_SIZE,)
    for s in range(n_strata):
        kernel(grid, block, (users, items, ratings, block_ptr, schedule[s], np.int64(width),
                             user_factors, item_factors, user_bias, item_bias, *scalars,
                             block_sse))


def _check_device_arrays(users, items, ratings, block_ptr, schedule, user_factors, item_factors,
                         user_bias, item_bias) -> None:
    """Dtype, shape and layout checks that need no device synchronisation (index ranges are the
    caller's duty on the device, as for any CUDA kernel)."""
    dtype = user_factors.dtype
    if dtype not in (np.float32, np.float64):
        raise ContractError(f"factors must be float32 or float64, got {dtype}")
    if users.dtype not in INDEX_DTYPES or items.dtype != users.dtype:
        raise ContractError(f"users and items must share an int32 or int64 dtype, got "
                            f"{users.dtype} and {items.dtype}")
    nnz = users.shape[0]
    n_users, k = user_factors.shape
    n_items = item_factors.shape[0]
    expected = {
        "users": (users, users.dtype, (nnz,)),
        "items": (items, users.dtype, (nnz,)),
        "ratings": (ratings, dtype, (nnz,)),
        "block_ptr": (block_ptr, np.int64, (block_ptr.shape[0],)),
        "schedule": (schedule, np.int64, schedule.shape),
        "item_factors": (item_factors, dtype, (n_items, k)),
        "user_bias": (user_bias, dtype, (n_users,)),
        "item_bias": (item_bias, dtype, (n_items,)),
    }
    for name, (arr, want_dtype, shape) in expected.items():
        if arr.dtype != want_dtype:
            raise ContractError(f"{name} must have dtype {np.dtype(want_dtype)}, got {arr.dtype}")
        if tuple(arr.shape) != tuple(shape) or arr.ndim != len(shape):
            raise ContractError(f"{name} must have shape {tuple(shape)}, got {arr.shape}")
        if not arr.flags.c_contiguous:
            raise ContractError(f"{name} must be C-contiguous")
    if schedule.ndim != 2 or block_ptr.ndim != 1 or block_ptr.shape[0] < 1:
        raise ContractError("schedule must be 2-D and block_ptr 1-D with n_blocks + 1 entries")


def sgd_epoch(users, items, ratings, block_ptr, schedule, user_factors, item_factors,
              user_bias, item_bias, global_mean, lr, lr_bias, reg, reg_bias, biased,
              n_threads=1) -> float:
    """See ``fastrec.backends._contract.SGD_EPOCH_DOC``.

    Arrays may be CuPy arrays (used in place, no copies) or numpy arrays (copied to the device;
    the factor and bias arrays are copied back into the given numpy arrays). ``n_threads`` is
    ignored: the launch configuration is fixed and does not change the result. Returns the SSE
    (synchronises the device).
    """
    import cupy

    from fastrec.backends.cuda._loader import get_function, name_expression

    _check_device_arrays(users, items, ratings, block_ptr, schedule, user_factors,
                         item_factors, user_bias, item_bias)
    host_outputs = (user_factors, item_factors, user_bias, item_bias)
    device = [cupy.asarray(a) for a in (users, items, ratings, block_ptr, schedule,
                                        *host_outputs)]
    d_users, d_items, d_ratings, d_block_ptr, d_schedule, d_p, d_q, d_bu, d_bi = device
    block_sse = cupy.zeros(max(block_ptr.shape[0] - 1, 0), dtype=np.float64)
    kernel = get_function("sgd", name_expression("sgd_stratum", user_factors.dtype, users.dtype))
    launch_sgd_epoch(kernel, d_users, d_items, d_ratings, d_block_ptr, d_schedule, d_p, d_q,
                     d_bu, d_bi, block_sse, global_mean, lr, lr_bias, reg, reg_bias, biased)
    sse = float(block_sse.sum())
    for host, dev in zip(host_outputs, (d_p, d_q, d_bu, d_bi), strict=True):
        if isinstance(host, np.ndarray):
            dev.get(out=host)
    return sse
