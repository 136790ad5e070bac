"""Dense numpy reference kernels: plain, readable math; the oracle for every other backend."""

import numpy as np

from fastrec.backends.reference.gru import (
    gru4rec_output_loss,
    gru4rec_train_epoch,
    gru_backward,
    gru_forward,
)
from fastrec.backends.reference.ncf import ncf_backward, ncf_forward, ncf_train_epoch
from fastrec.backends.reference.nmf import (
    nmf_loss_full,
    nmf_loss_observed,
    nmf_update_full,
    nmf_update_observed,
)
from fastrec.backends.reference.optim import adam_step, sparse_adagrad_step, sparse_adam_step
from fastrec.backends.reference.sgd import sgd_epoch
from fastrec.backends.reference.svdpp import svdpp_epoch

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
    return f"numpy {np.__version__}", {"threads": 1}
