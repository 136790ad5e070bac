"""The kernels call SciPy's BLAS from their own threads; it must stay single-threaded there even
when the first limit is taken before SciPy's BLAS is loaded (Numba loads it lazily)."""

import os
import subprocess
import sys
import textwrap


def test_limit_reaches_scipy_blas_loaded_after_first_use():
    code = textwrap.dedent("""
        import sys
        assert "scipy.linalg.cython_blas" not in sys.modules
        from threadpoolctl import threadpool_info
        from fastrec.backends._blas import single_threaded_blas
        with single_threaded_blas():
            pass
        import scipy.linalg.cython_blas
        with single_threaded_blas():
            blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
            scipy_blas = [i for i in blas if "scipy.libs" in i["filepath"]
                          or "scipy/" in i["filepath"]]
            assert scipy_blas, blas
            assert all(i["num_threads"] == 1 for i in blas), blas
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_ncf_kernels_after_a_numba_fit_run_with_single_threaded_blas():
    """Every NCF kernel that calls BLAS runs under fastrec.backends._blas's guard: checked from
    inside the Numba epoch and at the Cython call, in a process whose first NCF kernel call
    comes before SciPy's BLAS is loaded (Numba loads it when it compiles that call), so a guard
    made then would miss it and OpenBLAS would run four threads of its own."""
    code = textwrap.dedent("""
        import sys
        from contextlib import contextmanager
        import numpy as np
        from threadpoolctl import threadpool_info
        import fastrec
        from fastrec._algorithms.ncf import cache_size, init_params
        from fastrec.backends import _blas
        from fastrec.backends.numba import ncf as numba_ncf
        from fastrec.data import synthetic_ratings

        assert "scipy.linalg.cython_blas" not in sys.modules
        layers = np.array([8, 4], np.int64)
        user_emb, item_emb, dense = init_params(3, 3, 4, layers, np.float64,
                                                np.random.default_rng(0))
        pairs = np.array([0, 1, 2], np.int32)
        numba_ncf.ncf_forward(pairs, pairs, user_emb, item_emb, dense, layers, 4,
                              np.empty(cache_size(3, layers, 4)), np.empty(3))
        seen = {"numba": [], "cython": []}

        def blas_threads():
            return [(i["filepath"], i["num_threads"]) for i in threadpool_info()
                    if i["user_api"] == "blas"]

        epoch = numba_ncf._train_epoch
        def probed_epoch(*args):
            seen["numba"].append(blas_threads())
            return epoch(*args)
        numba_ncf._train_epoch = probed_epoch

        data = synthetic_ratings(n_users=60, n_items=40, n_ratings=600, seed=0).interactions
        fastrec.NeuMF(n_factors=4, layers=(8, 4), n_epochs=2, backend="numba", random_state=0,
                      n_threads=2).fit(data)

        from fastrec.backends.cython import _ncf

        @contextmanager
        def probed_guard():
            with _blas.single_threaded_blas():
                seen["cython"].append(blas_threads())
                yield
        _ncf.single_threaded_blas = probed_guard
        fastrec.NeuMF(n_factors=4, layers=(8, 4), n_epochs=2, backend="cython", random_state=0,
                      n_threads=2).fit(data)
        for backend, calls in seen.items():
            scipy_seen = [t for call in calls for path, t in call
                          if "scipy.libs" in path or "scipy/" in path]
            assert scipy_seen, (backend, calls)
            assert all(t == 1 for call in calls for _, t in call), (backend, calls)
        print("ok")
    """)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "4"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_overlapping_guards_keep_blas_single_threaded_until_the_last_leaves():
    """Two serving threads whose guarded calls overlap: when the first leaves, the other is
    still inside and BLAS must stay at one thread; the last to leave restores the settings.
    The main thread set a limit through threadpoolctl first, which makes it the only thread
    whose OpenBLAS limits threadpoolctl applies: the serving threads' must apply all the same."""
    code = textwrap.dedent("""
        import threading
        from threadpoolctl import threadpool_info, threadpool_limits
        from fastrec.backends._blas import single_threaded_blas

        def blas_threads():
            return {i["filepath"]: i["num_threads"] for i in threadpool_info()
                    if i["user_api"] == "blas"}

        with single_threaded_blas():
            pass
        threadpool_limits(2, user_api="blas")  # what a 1-core machine would start with, too
        before = blas_threads()
        assert before and all(t == 2 for t in before.values()), before
        a_inside, b_inside, a_left, b_may_leave = (threading.Event() for _ in range(4))
        seen = {}

        def a():
            with single_threaded_blas():
                a_inside.set()
                b_inside.wait()
            a_left.set()

        def b():
            a_inside.wait()
            with single_threaded_blas():
                b_inside.set()
                a_left.wait()
                seen["b after a left"] = blas_threads()
                b_may_leave.wait()

        threads = [threading.Thread(target=a), threading.Thread(target=b)]
        for t in threads:
            t.start()
        a_left.wait()
        seen["main while b inside"] = blas_threads()
        b_may_leave.set()
        for t in threads:
            t.join()
        for when in ("b after a left", "main while b inside"):
            assert all(t == 1 for t in seen[when].values()), (when, seen[when])
        assert blas_threads() == before, blas_threads()
        try:
            with single_threaded_blas(), single_threaded_blas():
                raise KeyError
        except KeyError:
            pass
        assert blas_threads() == before, blas_threads()
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
