"""fastrec: fast matrix factorisation and neural recommenders with Cython, Numba and CUDA kernels."""

from fastrec.backends import BackendUnavailable, show_backends

__version__ = "0.1.0"

__all__ = ["BackendUnavailable", "__version__", "show_backends"]
