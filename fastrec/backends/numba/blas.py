"""BLAS from Numba kernels: SciPy's (scipy.linalg.cython_blas, the one every CPU kernel calls),
with the argument conventions of ``csrc/include/fastrec/blas_cpu.h`` so the Numba kernels make
the same calls as the Cython ones. Callers hold ``fastrec.backends._blas.single_threaded_blas()``.

GEMMs go through ``numba_xxgemm``, the symbol Numba's own ``np.dot`` uses (it forwards to
scipy.linalg.cython_blas); SYRK, which Numba has no helper for, through SciPy's own function
registered under a symbol name (``register_syrk``). Both are called by name, so the kernels stay
cacheable, unlike a ctypes function pointer baked into the code.
"""

import numpy as np
from llvmlite import binding, ir
from numba import njit, types
from numba.extending import get_cython_function_address, intrinsic

_xxgemm = types.ExternalFunction("numba_xxgemm", types.intc(
    types.char, types.char, types.char, types.intp, types.intp, types.intp, types.voidptr,
    types.voidptr, types.intp, types.voidptr, types.intp, types.voidptr, types.voidptr,
    types.intp))

# Fortran ?syrk(uplo, trans, n, k, alpha, a, lda, beta, c, ldc): every argument by address.
_SYRK_SIGNATURE = types.void(*(types.voidptr,) * 10)
_ssyrk = types.ExternalFunction("fastrec_scipy_ssyrk", _SYRK_SIGNATURE)
_dsyrk = types.ExternalFunction("fastrec_scipy_dsyrk", _SYRK_SIGNATURE)
_registered = False


def register_syrk() -> None:
    """Bind the SYRK symbols to SciPy's functions; call before a kernel that uses
    :func:`syrk_upper_rm` is compiled or loaded from the cache. Not done at import: loading
    SciPy's BLAS is left to the first kernel that needs it (see fastrec.backends._blas)."""
    global _registered
    if not _registered:
        for name in ("ssyrk", "dsyrk"):
            binding.add_symbol(f"fastrec_scipy_{name}",
                               get_cython_function_address("scipy.linalg.cython_blas", name))
        _registered = True

_N, _T = np.int8(ord("N")), np.int8(ord("T"))
_S, _D = np.int8(ord("s")), np.int8(ord("d"))
_L = np.int8(ord("L"))


@intrinsic
def _ptr(typingctx, arr, offset):
    """Address of element ``offset`` of a 1-D array, as void*."""
    sig = types.voidptr(arr, types.intp)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.bitcast(builder.gep(ary.data, [args[1]]), ir.IntType(8).as_pointer())

    return sig, codegen


@njit(cache=True, nogil=True, error_model="numpy")
def gemm_rm(ta, tb, M, N, K, alpha, A, a0, lda, B, b0, ldb, beta, C, c0, ldc):
    """Row-major C[M,N] = alpha op(A) op(B) + beta C on flat arrays with element offsets."""
    if M <= 0 or N <= 0:
        return
    if K <= 0:
        for i in range(M):
            for j in range(N):
                C[c0 + i * ldc + j] = C[c0 + i * ldc + j] * beta if beta != 0 else 0
        return
    sc = np.empty(2, C.dtype)
    sc[0], sc[1] = alpha, beta
    # column-major C^T = op(B)^T op(A)^T
    _xxgemm(_S if C.itemsize == 4 else _D, _T if tb else _N, _T if ta else _N, N, M, K,
            _ptr(sc, 0), _ptr(B, b0), ldb, _ptr(A, a0), lda, _ptr(sc, 1), _ptr(C, c0), ldc)


@njit(cache=True, nogil=True, error_model="numpy")
def syrk_upper_rm(N, K, alpha, A, a0, lda, beta, C, c0, ldc):
    """Upper triangle of the row-major C[N, N] = alpha A^T A + beta C for the row-major A[K, N]
    (flat arrays with element offsets): blas_cpu.h's syrk_upper_rm, the column-major lower
    triangle of A^T (A^T)^T. The strictly lower triangle of C is not touched."""
    if N <= 0:
        return
    if K <= 0:
        for i in range(N):
            for j in range(i, N):
                C[c0 + i * ldc + j] = C[c0 + i * ldc + j] * beta if beta != 0 else 0
        return
    sc = np.empty(2, C.dtype)
    sc[0], sc[1] = alpha, beta
    chars = np.empty(2, np.int8)
    chars[0], chars[1] = _L, _N
    ints = np.empty(4, np.int32)
    ints[0], ints[1], ints[2], ints[3] = N, K, lda, ldc
    args = (_ptr(chars, 0), _ptr(chars, 1), _ptr(ints, 0), _ptr(ints, 1), _ptr(sc, 0),
            _ptr(A, a0), _ptr(ints, 2), _ptr(sc, 1), _ptr(C, c0), _ptr(ints, 3))
    if C.itemsize == 4:
        _ssyrk(*args)
    else:
        _dsyrk(*args)
