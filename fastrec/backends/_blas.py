"""BLAS stays single-threaded while fastrec's own threads (OpenMP, Numba) call it: the kernels
split every product into per-thread chunks, and a threaded BLAS underneath would oversubscribe
the cores.

Most BLAS builds have one process-wide thread setting (OpenBLAS's pthreads layer, MKL), so for
them the guard is reference-counted across Python threads: the first thread to enter sets one
thread and the last one to leave restores the previous settings. Two serving threads whose
calls overlap therefore both run with single-threaded BLAS from start to end, whichever leaves
first. OpenBLAS built on OpenMP keeps a setting per calling thread: each guard sets and restores
its own thread's. Between the first entry and the last exit the cost is a lock and a counter.

threadpoolctl finds the libraries, but its OpenBLAS setter ignores every thread but the first
that used it (so concurrent limits cannot fight): a serving thread's limit would be dropped.
The guard's lock already serialises the changes, so it calls the library's own setter.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

_LOCK = threading.Lock()
_SHARED = None  # controllers of the loaded BLAS libraries with a process-wide setting
_PER_THREAD = None  # ... and of those with a setting per calling thread (OpenMP layer)
_DEPTH = 0  # guards entered and not yet left, over all threads
_SAVED: list = []  # (library, its thread count before the outermost entry) to restore


def _libraries() -> tuple[list, list]:
    global _SHARED, _PER_THREAD
    if _SHARED is None:
        # The controller only sees BLAS libraries loaded when it is made: load SciPy's, the one
        # every kernel calls (Numba's too), first, or a limit would miss it and OpenBLAS would
        # start its own threads inside ours.
        import scipy.linalg.cython_blas  # noqa: F401
        from threadpoolctl import ThreadpoolController

        found = ThreadpoolController().select(user_api="blas").lib_controllers
        per_thread = [lib for lib in found if lib.internal_api == "openblas"
                      and getattr(lib, "threading_layer", None) == "openmp"]
        _SHARED, _PER_THREAD = [lib for lib in found if lib not in per_thread], per_thread
    return _SHARED, _PER_THREAD


def _set_threads(library, n: int) -> None:
    getattr(library, "_real_set_num_threads", library.set_num_threads)(n)


def _limit(libraries) -> list:
    """Set each library to one thread; returns (library, previous count) of those changed."""
    saved = []
    for library in libraries:
        threads = library.get_num_threads()
        if threads != 1:
            _set_threads(library, 1)
            saved.append((library, threads))
    return saved


def _restore(saved) -> None:
    for library, threads in saved:
        _set_threads(library, threads)


@contextmanager
def single_threaded_blas():
    """Every loaded BLAS library runs one thread inside the block, also while other threads
    are inside their own blocks; the settings found at the first entry come back after the
    last exit (also when the block raises)."""
    global _DEPTH, _SAVED
    shared, per_thread = _libraries()
    with _LOCK:
        if _DEPTH == 0:
            _SAVED = _limit(shared)
        _DEPTH += 1
    own = _limit(per_thread)
    try:
        yield
    finally:
        _restore(own)
        with _LOCK:
            _DEPTH -= 1
            if _DEPTH == 0:
                _restore(_SAVED)
                _SAVED = []
