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
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    with _CONTROLLER.limit(limits=1, user_api="blas"):
        yield
