"""Numba kernels (@njit, compiled on first call and cached on disk)."""

import numba

from fastrec.backends.numba.nmf import (
    nmf_loss_full,
    nmf_loss_observed,
    nmf_update_full,
    nmf_update_observed,
)
from fastrec.backends.numba.sgd import sgd_epoch

__all__ = [
    "nmf_loss_full",
    "nmf_loss_observed",
    "nmf_update_full",
    "nmf_update_observed",
    "probe",
    "sgd_epoch",
]


def probe():
    return f"numba {numba.__version__}", {
        "threads": numba.config.NUMBA_NUM_THREADS,
        "threading_layer": numba.config.THREADING_LAYER,
    }
