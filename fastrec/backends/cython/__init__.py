"""Cython + OpenMP kernels (compiled at install); the per-element math is in csrc/include."""

from fastrec.backends._cpu_layout import row_width
from fastrec.backends.cython._gru import (
    gru4rec_output_loss,
    gru4rec_train_epoch,
    gru_backward,
    gru_forward,
)
from fastrec.backends.cython._info import build_info
from fastrec.backends.cython._ncf import ncf_backward, ncf_forward, ncf_train_epoch
from fastrec.backends.cython._nmf import (
    nmf_loss_full,
    nmf_loss_observed,
    nmf_update_full,
    nmf_update_observed,
)
from fastrec.backends.cython._optim import adam_step, sparse_adagrad_step, sparse_adam_step
from fastrec.backends.cython._sgd import sgd_epoch
from fastrec.backends.cython._svdpp import svdpp_epoch

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
    "row_width",
    "sgd_epoch",
    "sparse_adagrad_step",
    "sparse_adam_step",
    "svdpp_epoch",
]


def probe():
    info = build_info()
    return f"g++ {info['compiler']}", {
        "openmp": "on" if info["openmp"] else "off (serial build)",
        "threads": info["max_threads"],
        "isa": info["isa"],
    }
