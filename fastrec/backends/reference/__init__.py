"""Dense numpy reference kernels: plain, readable math; the oracle for every other backend."""

import numpy as np

from fastrec.backends.reference.nmf import (
    nmf_loss_full,
    nmf_loss_observed,
    nmf_update_full,
    nmf_update_observed,
)
from fastrec.backends.reference.sgd import sgd_epoch

__all__ = [
    "nmf_loss_full",
    "nmf_loss_observed",
    "nmf_update_full",
    "nmf_update_observed",
    "probe",
    "sgd_epoch",
]


def probe():
    return f"numpy {np.__version__}", {"threads": 1}
