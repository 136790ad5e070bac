"""The BLAS pointer struct of csrc/include/fastrec/blas_cpu.h, filled with SciPy's BLAS
(scipy.linalg.cython_blas: no link-time BLAS dependency). Callers hold
``fastrec.backends._blas.single_threaded_blas()`` while the kernels run."""

from scipy.linalg.cython_blas cimport dgemm, dsyrk, sgemm, ssyrk


cdef extern from "fastrec/blas_cpu.h" namespace "fastrec" nogil:
    ctypedef void (*sgemm_fn)(char *, char *, int *, int *, int *, float *, float *, int *,
                              float *, int *, float *, float *, int *) noexcept nogil
    ctypedef void (*dgemm_fn)(char *, char *, int *, int *, int *, double *, double *, int *,
                              double *, int *, double *, double *, int *) noexcept nogil
    ctypedef void (*ssyrk_fn)(char *, char *, int *, int *, float *, float *, int *, float *,
                              float *, int *) noexcept nogil
    ctypedef void (*dsyrk_fn)(char *, char *, int *, int *, double *, double *, int *, double *,
                              double *, int *) noexcept nogil

    cdef struct Blas:
        sgemm_fn sgemm
        dgemm_fn dgemm
        ssyrk_fn ssyrk
        dsyrk_fn dsyrk


cdef inline Blas scipy_blas() noexcept nogil:
    cdef Blas blas
    blas.sgemm = <sgemm_fn>sgemm
    blas.dgemm = <dgemm_fn>dgemm
    blas.ssyrk = <ssyrk_fn>ssyrk
    blas.dsyrk = <dsyrk_fn>dsyrk
    return blas
