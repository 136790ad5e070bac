"""Dense numpy reference kernels: plain, readable math; the oracle for every other backend."""

import numpy as np

from fastrec.backends.reference.gru import (
    gru4rec_output_loss,
    gru4rec_train_epoch,
    gru_backward,
    gru_forward,
    optimizer_step,
    optimizer_step_rows,
)
from fastrec.backends.reference.sgd import sgd_epoch

__all__ = [
    "gru4rec_output_loss",
    "gru4rec_train_epoch",
    "gru_backward",
    "gru_forward",
    "optimizer_step",
    "optimizer_step_rows",
    "probe",
    "sgd_epoch",
]


def probe():
    return f"numpy {np.__version__}", {"threads": 1}
