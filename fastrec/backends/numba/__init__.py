"""Numba kernels (@njit, compiled on first call and cached on disk).

The on-disk cache goes to a per-user folder (``numba_cache_dir()``), never next to the sources:
numba's default writes ``__pycache__`` into the installed package, and a folder left there by
an uninstall shadows a later editable install as an empty namespace package (``import
fastrec`` then finds no ``__version__``). ``NUMBA_CACHE_DIR``, when the user sets it, wins.
"""

import contextlib
import os

import numba
from numba.misc.appdirs import AppDirs


def numba_cache_dir() -> str:
    """Where fastrec's compiled Numba kernels are cached: ``NUMBA_CACHE_DIR`` when set, else
    ``<user cache dir>/fastrec/numba`` (``~/.cache/fastrec/numba`` on Linux)."""
    return numba.config.CACHE_DIR or os.path.join(
        AppDirs("fastrec", appauthor=False).user_cache_dir, "numba")


@contextlib.contextmanager
def _caching_to_user_folder():
    """numba picks a function's cache folder when ``@njit(cache=True)`` decorates it, from
    ``numba.config.CACHE_DIR`` (what ``NUMBA_CACHE_DIR`` sets); point it at ours while our
    kernels are defined, then restore it so other numba code in the process keeps numba's
    default."""
    user_setting = numba.config.CACHE_DIR
    numba.config.CACHE_DIR = numba_cache_dir()
    try:
        yield
    finally:
        numba.config.CACHE_DIR = user_setting


with _caching_to_user_folder():
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

from fastrec.backends._cpu_layout import row_width  # noqa: E402 - padded rows

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
    "numba_cache_dir",
    "probe",
    "row_width",
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
