"""fastrec: fast matrix factorisation and neural recommenders (Cython, Numba and CUDA kernels)."""

import logging

from fastrec.backends import BackendUnavailable, show_backends
from fastrec.data import Interactions, synthetic_ratings
from fastrec.models import MF, NMF

__version__ = "0.1.0"

logging.getLogger("fastrec").addHandler(logging.NullHandler())

__all__ = ["MF", "NMF", "BackendUnavailable", "Interactions", "__version__", "show_backends",
           "synthetic_ratings"]
