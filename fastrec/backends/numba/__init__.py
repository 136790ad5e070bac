"""Numba kernels (@njit, compiled on first call and cached on disk)."""

import numba

from fastrec.backends.numba.sgd import sgd_epoch

__all__ = ["probe", "sgd_epoch"]


def probe():
    return f"numba {numba.__version__}", {
        "threads": numba.config.NUMBA_NUM_THREADS,
        "threading_layer": numba.config.THREADING_LAYER,
    }
