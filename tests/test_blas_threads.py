"""The kernels call SciPy's BLAS from their own threads; it must stay single-threaded there even
when the first limit is taken before SciPy's BLAS is loaded (Numba loads it lazily)."""

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
