"""CUDA SGD epoch: a warp per block of the G x G grid, a warp per rating, no Hogwild.

A warp runs a block's ratings in stored order (its 32 lanes share the k factors) and a block
starts only after the previous scheduled block on its user block and on its item block, so the
update sequence is the contract's sequential one. ``order="dataflow"`` (the default) runs the
whole epoch in one launch, warps taking the schedule's blocks in order and waiting only for those
two predecessors; ``order="strata"`` launches once per stratum. The dot product sums in the CPU
kernels' order and nothing is FMA-contracted, so results are deterministic (the same for both
orders, independent of ``n_threads`` and of the launch configuration) and equal to a compiled CPU
backend's bit for bit when that backend does not contract FMAs either (float32 denormals aside:
CuPy compiles with -ftz=true). At most G blocks run at once: give the GPU a grid side G of
several hundred on large data: :func:`default_n_blocks` (what ``MF`` uses on this backend) takes
:func:`grid_side_for_sms` of the device, about four warps per SM.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from fastrec.backends._contract import ContractError, check_sgd_epoch
from fastrec.backends.cuda._checks import host_values

WARPS_PER_CTA = 8
WARP_SIZE = 32
ORDERS = ("dataflow", "strata")
# Block warps per SM the default grid aims for. A warp's ratings form one chain of dependent
# global loads, so an SM needs several warps to hide their latency; a stratum runs at most G
# blocks, so G = 4 x SMs gives every SM about four (more once the dataflow driver overlaps
# neighbouring strata). A larger G makes G^2 smaller blocks, each paying its predecessor
# look-ups and its acquire, which invalidates the SM's L1.
BLOCK_WARPS_PER_SM = 4


def grid_side_for_sms(n_sms: int, n_users: int, n_items: int) -> int:
    """Grid side ``G`` for a device with ``n_sms`` multiprocessors: ``BLOCK_WARPS_PER_SM * n_sms``
    (320, 432 and 528 for 80, 108 and 132 SMs), at most ``min(n_users, n_items)``, at least 1."""
    return max(1, min(BLOCK_WARPS_PER_SM * int(n_sms), n_users, n_items))


def warps_per_cta_for(n_warps: int, n_sms: int | None) -> int:
    """Warps per CTA that spread ``n_warps`` over all ``n_sms`` SMs: one or two when there are
    few (G = 16 on 132 SMs: 16 CTAs of one warp, not 2 CTAs of 8), up to ``WARPS_PER_CTA``;
    ``WARPS_PER_CTA`` when the SM count is unknown (``None``)."""
    if not n_sms:
        return WARPS_PER_CTA
    return max(1, min(WARPS_PER_CTA, n_warps // int(n_sms)))


@functools.cache
def _sm_count(device_id: int) -> int:
    import cupy

    return int(cupy.cuda.runtime.getDeviceProperties(device_id)["multiProcessorCount"])


def default_n_blocks(n_users: int, n_items: int) -> int:
    """The SGD grid side for the current CUDA device (:func:`grid_side_for_sms`)."""
    import cupy

    return grid_side_for_sms(_sm_count(cupy.cuda.Device().id), n_users, n_items)


def launch_sgd_epoch(xp, get_kernel, users, items, ratings, block_ptr, schedule, user_factors,
                     item_factors, user_bias, item_bias, ticket_sse, global_mean, lr, lr_bias,
                     reg, reg_bias, biased, order="dataflow", warps_per_cta=None,
                     n_warps=None, n_sms=None) -> None:
    """Launch one SGD epoch; does not synchronise.

    ``xp`` is the array module of the device arrays (CuPy on a GPU, numpy in the test
    emulator), ``get_kernel(name)`` returns the compiled kernel for ``fastrec::cuda::<name>``
    (``"sgd_dataflow"``, ``"sgd_stratum"`` or ``"sgd_dataflow_positions"``) with CuPy's calling
    convention ``kernel(grid, block, args)``. ``ticket_sse`` is float64[n_strata * width] of
    zeros and receives the SSE of each schedule slot (a block may run in several strata).
    ``n_warps`` caps the concurrent warps (default G); ``warps_per_cta`` defaults to
    :func:`warps_per_cta_for` those warps on ``n_sms`` SMs.
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    n_strata, width = schedule.shape
    grid_side = _grid_side(block_ptr)
    n_tickets = n_strata * width
    if n_tickets == 0 or users.shape[0] == 0:
        return
    dtype = user_factors.dtype.type
    factors = (user_factors, item_factors, user_bias, item_bias,
               np.int64(user_factors.shape[1]), dtype(global_mean), dtype(lr), dtype(lr_bias),
               dtype(reg), dtype(reg_bias), np.int32(bool(biased)))
    data = (users, items, ratings, block_ptr)
    warps = max(1, min(n_warps or grid_side, width if order == "strata" else n_tickets))
    warps_per_cta = warps_per_cta or warps_per_cta_for(warps, n_sms)
    threads = warps_per_cta * WARP_SIZE
    ctas = (-(-warps // warps_per_cta),)
    if order == "strata":
        kernel = get_kernel("sgd_stratum")
        for s in range(n_strata):
            kernel(ctas, (threads,), (*data, schedule[s], np.int64(width), *factors,
                                      ticket_sse[s * width:(s + 1) * width]))
        return
    row_ticket = xp.full(n_strata * grid_side, -1, dtype=np.int64)
    col_ticket = xp.full(n_strata * grid_side, -1, dtype=np.int64)
    done = xp.zeros(n_tickets, dtype=np.int32)
    next_ticket = xp.zeros(1, dtype=np.uint64)
    get_kernel("sgd_dataflow_positions")(
        (min(-(-n_tickets // 256), 1024),), (256,),
        (schedule, np.int64(n_tickets), np.int64(width), np.int64(grid_side), row_ticket,
         col_ticket))
    get_kernel("sgd_dataflow")(
        ctas, (threads,),
        (*data, schedule, np.int64(n_tickets), np.int64(width), np.int64(grid_side), row_ticket,
         col_ticket, done, next_ticket, *factors, ticket_sse))


def _grid_side(block_ptr) -> int:
    n_blocks = block_ptr.shape[0] - 1
    grid_side = math.isqrt(max(n_blocks, 0))
    if n_blocks < 1 or grid_side * grid_side != n_blocks:
        raise ContractError("block_ptr must describe a square G x G grid of blocks")
    return grid_side


def sgd_epoch(users, items, ratings, block_ptr, schedule, user_factors, item_factors,
              user_bias, item_bias, global_mean, lr, lr_bias, reg, reg_bias, biased,
              n_threads=1, *, order="dataflow") -> float:
    """See ``fastrec.backends._contract.SGD_EPOCH_DOC``.

    Arrays may be CuPy arrays (used in place, no copies) or numpy arrays (copied to the device;
    the factor and bias arrays are copied back into the given numpy arrays). ``n_threads`` is
    ignored: the launch configuration is fixed and does not change the result. ``order`` picks
    the driver (see the module docstring). Returns the SSE (synchronises the device).
    """
    arrays = (users, items, ratings, block_ptr, schedule, user_factors, item_factors, user_bias,
              item_bias)
    check_sgd_epoch(*arrays, values=host_values(*arrays))
    _grid_side(block_ptr)
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    import cupy

    from fastrec.backends.cuda._loader import get_function, name_expression

    host_outputs = (user_factors, item_factors, user_bias, item_bias)
    device = [cupy.asarray(a) for a in (users, items, ratings, block_ptr, schedule,
                                        *host_outputs)]
    d_users, d_items, d_ratings, d_block_ptr, d_schedule, d_p, d_q, d_bu, d_bi = device
    ticket_sse = cupy.zeros(schedule.size, dtype=np.float64)

    def get_kernel(name):
        if name == "sgd_dataflow_positions":
            return get_function("sgd", f"fastrec::cuda::{name}")
        return get_function("sgd", name_expression(name, user_factors.dtype, users.dtype))

    launch_sgd_epoch(cupy, get_kernel, d_users, d_items, d_ratings, d_block_ptr, d_schedule,
                     d_p, d_q, d_bu, d_bi, ticket_sse, global_mean, lr, lr_bias, reg, reg_bias,
                     biased, order=order, n_sms=_sm_count(cupy.cuda.Device().id))
    sse = float(ticket_sse.sum())
    for host, dev in zip(host_outputs, (d_p, d_q, d_bu, d_bi), strict=True):
        if isinstance(host, np.ndarray):
            dev.get(out=host)
    return sse
