"""fastrec: fast matrix factorisation and neural recommenders (Cython, Numba and CUDA kernels)."""

import logging

from fastrec.backends import BackendUnavailable, show_backends
from fastrec.data import Interactions, Sessions, synthetic_ratings, synthetic_sessions
from fastrec.models import MF, GRU4Rec

__version__ = "0.1.0"

logging.getLogger("fastrec").addHandler(logging.NullHandler())

__all__ = ["MF", "BackendUnavailable", "GRU4Rec", "Interactions", "Sessions", "__version__",
           "show_backends", "synthetic_ratings", "synthetic_sessions"]
