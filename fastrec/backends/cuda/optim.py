"""CUDA optimiser steps (``csrc/cuda/optim.cu``): dense and lazy sparse Adam / Adagrad (with
GRU4Rec's momentum) / SGD, the optimiser of ``csrc/include/fastrec/optim.h``.

The launchers ``launch_dense_step`` and ``launch_sparse_step`` are shared by every model family
that trains on the GPU (NCF, GRU4Rec): they take device arrays of the array module ``xp`` and a
``get_kernel(name)`` that returns the compiled kernel ``fastrec::cuda::<name><...>`` for the
call's dtypes (see :func:`kernel_expression`).

Thread mapping and determinism: the dense step runs a thread per parameter. A sparse step sorts
the batch positions by (row, position) (distinct keys, so any sort gives the same order) and
finds each row's run in the sorted order; pass 1 sums every piece of ``OPTIM_PIECE`` positions
of a run (a warp per piece, gradients in position order), pass 2 adds a run's piece sums in order
(a warp per distinct row) and updates the row once. No float atomics: results repeat bit for bit;
rows repeated at most ``OPTIM_PIECE`` times equal the CPU kernels' bit for bit.
"""

from __future__ import annotations

import numpy as np

from fastrec.backends._contract import (
    OPT_ADAGRAD,
    OPT_ADAM,
    ContractError,
    check_adam_step,
    check_sparse_step,
)
from fastrec.backends.cuda._checks import host_values

THREADS = 256
WARP_SIZE = 32
MAX_BLOCKS = 4096

OPTIM_PIECE = 32  # positions per piece of a row's run (OPTIM_PIECE in optim.cu)

# Template parameters of each kernel: T (float type) and/or I (index type).
KERNEL_TEMPLATES = {"optim_dense_step": "T", "optim_sort_keys": "I", "optim_sparse_pieces": "T",
                    "optim_sparse_step": "TI"}

_C_TYPES = {"float32": "float", "float64": "double", "int32": "int", "int64": "long long"}


def kernel_expression(name: str, templates: str, dtype, index_dtype) -> str:
    """The NVRTC name expression of kernel ``name`` with template parameters ``templates`` (a
    string of "T" and "I") for the numpy dtypes ``dtype`` and ``index_dtype``."""
    types = {"T": _C_TYPES[np.dtype(dtype).name],
             "I": _C_TYPES[np.dtype(index_dtype).name] if index_dtype is not None else None}
    return f"fastrec::cuda::{name}<{', '.join(types[t] for t in templates)}>"


def _blocks(n: int, per_block: int) -> tuple[int]:
    return (max(1, min(-(-n // per_block), MAX_BLOCKS)),)


def launch_dense_step(get_kernel, kind, params, grads, state1, state2, lr, beta1, beta2, eps,
                      step, momentum=0.0) -> None:
    """One optimiser step (``kind``: an ``OPTIMIZERS`` code of ``_contract``) of a flat parameter
    vector, in place; does not synchronise. ``state2`` may be ``state1`` (SGD, and Adagrad
    without ``momentum``)."""
    n = params.shape[0]
    if n == 0:
        return
    get_kernel("optim_dense_step")(
        _blocks(n, THREADS), (THREADS,),
        (np.int32(kind), params, grads, state1, state2, np.int64(n), np.float64(lr),
         np.float64(beta1), np.float64(beta2), np.float64(eps), np.float64(momentum),
         np.int64(step)))


def launch_sparse_step(xp, get_kernel, kind, table, rows, row_grads, state1, state2, lr, beta1,
                       beta2, eps, step, momentum=0.0) -> None:
    """One lazy optimiser step of the rows of ``table`` (T[n_rows, d]) listed in ``rows``
    (I[n], duplicates summed in pieces, see above) with per-position gradients ``row_grads``
    (T[n, d], not modified); ``state1``/``state2`` shaped like ``table``, in place. Does not
    synchronise."""
    n = rows.shape[0]
    d = table.shape[1]
    if n == 0 or d == 0:
        return
    keys = xp.empty(n, dtype=np.int64)
    get_kernel("optim_sort_keys")(_blocks(n, THREADS), (THREADS,), (rows, np.int64(n), keys))
    order = xp.argsort(keys).astype(np.int64, copy=False)
    sorted_rows = rows[order]
    run_start = xp.searchsorted(sorted_rows, sorted_rows, side="left").astype(np.int64,
                                                                              copy=False)
    run_end = xp.searchsorted(sorted_rows, sorted_rows, side="right").astype(np.int64,
                                                                             copy=False)
    partials = xp.empty_like(row_grads)
    grid = _blocks(n * WARP_SIZE, THREADS)
    get_kernel("optim_sparse_pieces")(
        grid, (THREADS,), (order, run_start, run_end, np.int64(n), row_grads, np.int64(d),
                           partials))
    get_kernel("optim_sparse_step")(
        grid, (THREADS,),
        (np.int32(kind), table, np.int64(d), rows, order, run_start, run_end, np.int64(n),
         partials, state1, state2, np.float64(lr), np.float64(beta1), np.float64(beta2),
         np.float64(eps), np.float64(momentum), np.int64(step)))




def _device_getter(source: str, dtype, index_dtype):
    from fastrec.backends.cuda._loader import get_function

    def get_kernel(name):
        return get_function(source, kernel_expression(name, KERNEL_TEMPLATES[name], dtype,
                                                      index_dtype))

    return get_kernel


def _to_device(cupy, arrays):
    return [cupy.asarray(a) for a in arrays]


def copy_back(hosts, devices) -> None:
    for host, dev in zip(hosts, devices, strict=True):
        if isinstance(host, np.ndarray):
            dev.get(out=host)


def adam_step(params, grads, m, v, step, lr, beta1=0.9, beta2=0.999, eps=1e-8,
              n_threads=1) -> None:
    """See ``fastrec.backends._contract.ADAM_STEP_DOC``. CuPy arrays are updated in place; numpy
    arrays are copied to the device and the results back. ``n_threads`` is ignored."""
    check_adam_step(params, grads, m, v, step)
    import cupy

    d_params, d_grads, d_m, d_v = _to_device(cupy, (params, grads, m, v))
    launch_dense_step(_device_getter("optim", params.dtype, None), OPT_ADAM, d_params, d_grads,
                      d_m, d_v, lr, beta1, beta2, eps, int(step))
    copy_back((params, m, v), (d_params, d_m, d_v))


def _sparse(kind, table, rows, row_grads, state1, state2, step, lr, beta1, beta2, eps) -> None:
    check_sparse_step(table, rows, row_grads, state1, state2, values=host_values(rows))
    import cupy

    same_state = state2 is state1
    d_table, d_rows, d_grads, d_s1 = _to_device(cupy, (table, rows, row_grads, state1))
    d_s2 = d_s1 if same_state else cupy.asarray(state2)
    launch_sparse_step(cupy, _device_getter("optim", table.dtype, rows.dtype), kind, d_table,
                       d_rows, d_grads, d_s1, d_s2, lr, beta1, beta2, eps, int(step))
    hosts, devices = [table, state1], [d_table, d_s1]
    if not same_state:
        hosts.append(state2)
        devices.append(d_s2)
    copy_back(hosts, devices)


def sparse_adam_step(table, rows, row_grads, m, v, step, lr, beta1=0.9, beta2=0.999, eps=1e-8,
                     n_threads=1) -> None:
    """See ``fastrec.backends._contract.SPARSE_ADAM_STEP_DOC`` (arrays as :func:`adam_step`)."""
    if int(step) < 1:
        raise ContractError(f"step must be >= 1, got {step}")
    _sparse(OPT_ADAM, table, rows, row_grads, m, v, step, lr, beta1, beta2, eps)


def sparse_adagrad_step(table, rows, row_grads, acc, lr, eps=1e-10, n_threads=1) -> None:
    """See ``fastrec.backends._contract.SPARSE_ADAGRAD_STEP_DOC`` (arrays as
    :func:`adam_step`)."""
    _sparse(OPT_ADAGRAD, table, rows, row_grads, acc, acc, 1, lr, 0.0, 0.0, eps)
