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

from fastrec.backends._contract import export_kernels
from fastrec.backends._cpu_layout import row_width


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
    __all__ = ["numba_cache_dir", "probe", "row_width", *export_kernels(globals(), __name__)]


def probe():
    return f"numba {numba.__version__}", {
        "threads": numba.config.NUMBA_NUM_THREADS,
        "threading_layer": numba.config.THREADING_LAYER,
    }
