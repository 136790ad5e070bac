"""Helpers shared by the CUDA tests and the AddressSanitizer script."""

from __future__ import annotations

from pathlib import Path

import numpy as np

EMULATOR_DIR = Path(__file__).resolve().parent / "emulator"


def gpu_unavailable_reason() -> str | None:
    """Why the real-device tests cannot run here, or None when a CUDA device is usable."""
    from fastrec.backends import BackendUnavailable, get_backend

    try:
        get_backend("cuda", require=("sgd_epoch",))
    except BackendUnavailable as exc:
        return str(exc)
    return None


def make_sgd_problem(seed=0, n_users=30, n_items=20, nnz=300, k=40, n_blocks=4,
                     dtype=np.float64, index_dtype=np.int32):
    """A blocked random problem: (arrays dict, factors tuple, scalars tuple)."""
    from fastrec._algorithms.sgd_schedule import BlockedRatings

    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, nnz).astype(index_dtype)
    items = rng.integers(0, n_items, nnz).astype(index_dtype)
    ratings = rng.uniform(1, 5, nnz).astype(dtype)
    blocked = BlockedRatings.build(users, items, ratings, n_users, n_items, n_blocks, rng)
    data = {"users": blocked.users, "items": blocked.items, "ratings": blocked.ratings,
            "block_ptr": blocked.block_ptr, "schedule": blocked.epoch_schedule(rng)}
    factors = (rng.normal(0, 0.1, (n_users, k)).astype(dtype),
               rng.normal(0, 0.1, (n_items, k)).astype(dtype),
               rng.normal(0, 0.1, n_users).astype(dtype),
               rng.normal(0, 0.1, n_items).astype(dtype))
    scalars = (3.0, 0.01, 0.02, 0.05, 0.01)
    return data, factors, scalars


def kernel_getter(module, data, factors, order="forward", seed=0):
    """``get_kernel(name)`` for ``launch_sgd_epoch``: the emulated kernels for the problem's
    dtypes, run in thread order ``order``."""
    from fastrec.backends.cuda import _loader

    dtype, index_dtype = factors[0].dtype, data["users"].dtype

    def get_kernel(name):
        if name == "sgd_dataflow_positions":
            expression = f"fastrec::cuda::{name}"
        else:
            expression = _loader.name_expression(name, dtype, index_dtype)
        return module.get_function(expression, order=order, seed=seed)

    return get_kernel
