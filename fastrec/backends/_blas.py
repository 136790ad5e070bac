"""BLAS stays single-threaded while fastrec's own threads (OpenMP, Numba) call it: the kernels
split every product into per-thread chunks, and a threaded BLAS underneath would oversubscribe
the cores."""

from __future__ import annotations

from contextlib import contextmanager

_CONTROLLER = None


@contextmanager
def single_threaded_blas():
    global _CONTROLLER
    if _CONTROLLER is None:
        # The controller only sees BLAS libraries loaded when it is made: load SciPy's, the one
        # every kernel calls (Numba's too), first, or a limit would miss it and OpenBLAS would
        # start its own threads inside ours.
        import scipy.linalg.cython_blas  # noqa: F401
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    with _CONTROLLER.limit(limits=1, user_api="blas"):
        yield
