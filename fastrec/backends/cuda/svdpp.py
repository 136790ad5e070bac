"""CUDA SVD++ epoch: the three phases of ``csrc/include/fastrec/svdpp.h`` in ``csrc/cuda/svdpp.cu``.

A warp per user computes the implicit sums, one launch per stratum runs its blocks a warp each
(ratings in stored order, as the MF kernel's ``order="strata"`` driver), and a warp per item
applies the implicit factors' step. Sums run in the CPU kernels' order without FMA contraction,
so results are deterministic, independent of ``n_threads`` and of the launch configuration, and
equal to a compiled CPU backend's bit for bit when that backend does not contract FMAs either
(float32 denormals aside: CuPy compiles with -ftz=true).
"""

from __future__ import annotations

import numpy as np

from fastrec.backends._contract import check_svdpp_epoch
from fastrec.backends.cuda._checks import host_values
from fastrec.backends.cuda.sgd import _grid_side

WARPS_PER_CTA = 8
WARP_SIZE = 32
_MAX_CTAS = 4096  # grid-stride loops cover any number of rows


def launch_svdpp_epoch(xp, get_kernel, users, items, ratings, block_ptr, schedule, user_ptr,
                       user_items, item_ptr, item_users, user_factors, item_factors,
                       implicit_factors, user_bias, item_bias, slot_sse, global_mean, lr,
                       lr_bias, reg, reg_bias, reg_implicit, biased,
                       warps_per_cta=WARPS_PER_CTA) -> None:
    """Launch one SVD++ epoch; does not synchronise.

    ``xp`` is the array module of the device arrays (CuPy, or numpy in the test emulator),
    ``get_kernel(name)`` the compiled ``fastrec::cuda::<name><T, I>`` (``"svdpp_implicit_sums"``,
    ``"svdpp_stratum"``, ``"svdpp_implicit_update"``) called as ``kernel(grid, block, args)``.
    ``slot_sse`` is float64[n_strata * width] of zeros and receives each schedule slot's SSE.
    """
    n_strata, width = schedule.shape
    n_users, k = user_factors.shape
    n_items = item_factors.shape[0]
    if n_users == 0 or n_items == 0 or k == 0:
        return
    dtype = user_factors.dtype.type
    threads = warps_per_cta * WARP_SIZE

    def ctas(n_warps):
        return (max(1, min(-(-n_warps // warps_per_cta), _MAX_CTAS)),)

    norms = xp.empty(n_users, dtype=user_factors.dtype)
    sums = xp.empty_like(user_factors)
    grads = xp.empty_like(user_factors)
    get_kernel("svdpp_implicit_sums")(
        ctas(n_users), (threads,),
        (user_ptr, user_items, implicit_factors, np.int64(n_users), np.int64(k), norms, sums,
         grads))
    if users.shape[0]:
        stratum_kernel = get_kernel("svdpp_stratum")
        for s in range(n_strata):
            stratum_kernel(
                ctas(width), (threads,),
                (users, items, ratings, block_ptr, schedule[s], np.int64(width), user_factors,
                 item_factors, user_bias, item_bias, norms, sums, grads, np.int64(k),
                 dtype(global_mean), dtype(lr), dtype(lr_bias), dtype(reg), dtype(reg_bias),
                 np.int32(bool(biased)), slot_sse[s * width:(s + 1) * width]))
    get_kernel("svdpp_implicit_update")(
        ctas(n_items), (threads,),
        (item_ptr, item_users, norms, grads, implicit_factors, np.int64(n_items), np.int64(k),
         dtype(lr), dtype(reg_implicit)))


def svdpp_epoch(users, items, ratings, block_ptr, schedule, user_ptr, user_items, item_ptr,
                item_users, user_factors, item_factors, implicit_factors, user_bias, item_bias,
                global_mean, lr, lr_bias, reg, reg_bias, reg_implicit, biased,
                n_threads=1) -> float:
    """See ``fastrec.backends._contract.SVDPP_EPOCH_DOC``.

    Arrays may be CuPy arrays (used in place) or numpy arrays (copied to the device; the
    modified arrays are copied back into the given numpy arrays). ``n_threads`` is ignored.
    Returns the SSE (synchronises the device).
    """
    arrays = (users, items, ratings, block_ptr, schedule, user_ptr, user_items, item_ptr,
              item_users, user_factors, item_factors, implicit_factors, user_bias, item_bias)
    check_svdpp_epoch(*arrays, values=host_values(*arrays))
    _grid_side(block_ptr)
    import cupy

    from fastrec.backends.cuda._loader import get_function, name_expression

    host_outputs = (user_factors, item_factors, implicit_factors, user_bias, item_bias)
    inputs = (users, items, ratings, block_ptr, schedule, user_ptr, user_items, item_ptr,
              item_users)
    d_inputs = [cupy.asarray(a) for a in inputs]
    d_outputs = [cupy.asarray(a) for a in host_outputs]
    slot_sse = cupy.zeros(schedule.size, dtype=np.float64)

    def get_kernel(name):
        return get_function("svdpp", name_expression(name, user_factors.dtype, users.dtype))

    launch_svdpp_epoch(cupy, get_kernel, *d_inputs, *d_outputs, slot_sse, global_mean, lr,
                       lr_bias, reg, reg_bias, reg_implicit, biased)
    sse = float(slot_sse.sum())
    for host, dev in zip(host_outputs, d_outputs, strict=True):
        if isinstance(host, np.ndarray):
            dev.get(out=host)
    return sse
