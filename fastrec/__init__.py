"""fastrec: fast matrix factorisation and neural recommenders (Cython, Numba and CUDA kernels)."""

import logging

from fastrec import evaluation
from fastrec.backends import BackendUnavailable, show_backends
from fastrec.data import Interactions, Sessions, synthetic_ratings, synthetic_sessions
from fastrec.exceptions import DivergenceError, ModelFileError, NotFittedError
from fastrec.models import GMF, MF, MLP, NMF, GRU4Rec, JointNeuMF, NeuMF, SVDpp

__version__ = "0.1.0"

logging.getLogger("fastrec").addHandler(logging.NullHandler())

__all__ = ["GMF", "GRU4Rec", "MF", "MLP", "NMF", "BackendUnavailable", "DivergenceError",
           "Interactions", "JointNeuMF", "ModelFileError", "NeuMF", "NotFittedError", "SVDpp",
           "Sessions", "__version__", "evaluation", "show_backends", "synthetic_ratings",
           "synthetic_sessions"]
