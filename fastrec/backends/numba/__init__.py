"""Numba kernels (@njit, compiled on first call and cached on disk)."""

import numba

from fastrec.backends.numba.gru import (
    gru4rec_output_loss,
    gru4rec_train_epoch,
    gru_backward,
    gru_forward,
)
from fastrec.backends.numba.ncf import ncf_backward, ncf_forward, ncf_train_epoch
from fastrec.backends.numba.nmf import (
    nmf_loss_full,
    nmf_loss_observed,
    nmf_update_full,
    nmf_update_observed,
)
from fastrec.backends.numba.optim import adam_step, sparse_adagrad_step, sparse_adam_step
from fastrec.backends.numba.sgd import sgd_epoch
from fastrec.backends.numba.svdpp import svdpp_epoch

__all__ = [
    "adam_step",
    "gru4rec_output_loss",
    "gru4rec_train_epoch",
    "gru_backward",
    "gru_forward",
    "ncf_backward",
    "ncf_forward",
    "ncf_train_epoch",
    "nmf_loss_full",
    "nmf_loss_observed",
    "nmf_update_full",
    "nmf_update_observed",
    "probe",
    "sgd_epoch",
    "sparse_adagrad_step",
    "sparse_adam_step",
    "svdpp_epoch",
]


def probe():
    return f"numba {numba.__version__}", {
        "threads": numba.config.NUMBA_NUM_THREADS,
        "threading_layer": numba.config.THREADING_LAYER,
    }
