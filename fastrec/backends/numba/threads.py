"""Numba's thread count for one call, restored afterwards even when the kernel raises."""

from contextlib import contextmanager

import numba


@contextmanager
def thread_limit(n_threads: int):
    n = max(1, min(int(n_threads), numba.config.NUMBA_NUM_THREADS))
    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield n
    finally:
        numba.set_num_threads(previous)
