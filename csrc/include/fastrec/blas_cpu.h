// The BLAS of the CPU kernels: function pointers handed in by the Cython modules
// (scipy.linalg.cython_blas, so no link-time BLAS dependency) and a row-major GEMM on top.
// The callers keep BLAS single-threaded (fastrec/backends/_blas.py): the kernels split every
// product into fixed chunks on their own OpenMP threads, so results do not depend on the thread
// count and a threaded BLAS underneath would oversubscribe the cores.
#pragma once

#include <type_traits>

#include "fastrec/common.h"

namespace fastrec {

typedef void (*sgemm_fn)(char *, char *, int *, int *, int *, float *, float *, int *, float *,
                         int *, float *, float *, int *);
typedef void (*dgemm_fn)(char *, char *, int *, int *, int *, double *, double *, int *,
                         double *, int *, double *, double *, int *);
typedef void (*ssyrk_fn)(char *, char *, int *, int *, float *, float *, int *, float *, float *,
                         int *);
typedef void (*dsyrk_fn)(char *, char *, int *, int *, double *, double *, int *, double *,
                         double *, int *);

struct Blas {
  sgemm_fn sgemm;
  dgemm_fn dgemm;
  ssyrk_fn ssyrk;
  dsyrk_fn dsyrk;
};

// Row-major C[M, N] = alpha op(A)[M, K] op(B)[K, N] + beta C, as the column-major product
// C^T = op(B)^T op(A)^T (no copies: a row-major matrix is its transpose in column-major).
template <typename T>
static inline void gemm_rm(const Blas &blas, bool ta, bool tb, int M, int N, int K, T alpha,
                           const T *A, int lda, const T *B, int ldb, T beta, T *C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j)
        C[(int64_t)i * ldc + j] = beta == T(0) ? T(0) : beta * C[(int64_t)i * ldc + j];
    return;
  }
  char ca = ta ? 'T' : 'N', cb = tb ? 'T' : 'N';
  if constexpr (std::is_same<T, float>::value)
    blas.sgemm(&cb, &ca, &N, &M, &K, &alpha, const_cast<T *>(B), &ldb, const_cast<T *>(A), &lda,
               &beta, C, &ldc);
  else
    blas.dgemm(&cb, &ca, &N, &M, &K, &alpha, const_cast<T *>(B), &ldb, const_cast<T *>(A), &lda,
               &beta, C, &ldc);
}

// Upper triangle of the row-major C[N, N] = alpha A^T A + beta C for the row-major A[K, N]: the
// column-major product A^T (A^T)^T, whose lower triangle is the row-major upper one (half a
// GEMM's multiply-adds). The strictly lower triangle of C is not touched.
template <typename T>
static inline void syrk_upper_rm(const Blas &blas, int N, int K, T alpha, const T *A, int lda,
                                 T beta, T *C, int ldc) {
  if (N <= 0) return;
  if (K <= 0) {
    for (int i = 0; i < N; ++i)
      for (int j = i; j < N; ++j)
        C[(int64_t)i * ldc + j] = beta == T(0) ? T(0) : beta * C[(int64_t)i * ldc + j];
    return;
  }
  char uplo = 'L', trans = 'N';
  if constexpr (std::is_same<T, float>::value)
    blas.ssyrk(&uplo, &trans, &N, &K, &alpha, const_cast<T *>(A), &lda, &beta, C, &ldc);
  else
    blas.dsyrk(&uplo, &trans, &N, &K, &alpha, const_cast<T *>(A), &lda, &beta, C, &ldc);
}

}  // namespace fastrec
