// Sparse building blocks on the CPU: the transpose of a CSR matrix (its CSC, as the CSR of X^T)
// and products of a CSR matrix with a dense block of vectors, for the NMF data path and the
// truncated SVD behind its NNDSVD initialisation. Every output row is computed by one call, in
// stored order, so results do not depend on the thread count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "fastrec/common.h"

namespace fastrec {

// ---- Products with a dense block -------------------------------------------------------------
// out[r, :] = sum over the stored entries p of row r, in stored order, of data[p] *
// dense[indices[p], :] for the rows r in [begin, end); dense is [n_cols, width] and out
// [n_rows, width], both row-major in the data's type T (a float32 X multiplies a float32 block,
// as scipy does with float32 operands). Each entry is a multiply then an add in T (no fused
// multiply-add, -ffp-contract=off), summed from zero in
// stored order: scipy's csr_matvecs, bit for bit, so the scipy fallback and the cupyx products
// of the emulated device tests agree with it exactly. The rows of `dense` named by the entries
// are gathered in random order, so the row of the entry a few ahead is requested early, letting
// independent loads overlap.
template <typename T, typename I>
static inline __attribute__((always_inline)) void csr_dense_rows_impl(
    const I *indptr, const I *indices, const T *data, const T *dense, int64_t width,
    int64_t begin, int64_t end, T *out) {
  constexpr int64_t kAhead = 8;
  for (int64_t r = begin; r < end; ++r) {
    T *row = out + r * width;
    for (int64_t c = 0; c < width; ++c) row[c] = T(0);
    const int64_t first = indptr[r], last = indptr[r + 1];
    for (int64_t p = first; p < last; ++p) {
      if (p + kAhead < last) __builtin_prefetch(dense + int64_t(indices[p + kAhead]) * width);
      const T a = data[p];
      const T *v = dense + int64_t(indices[p]) * width;
      for (int64_t c = 0; c < width; ++c) row[c] += a * v[c];
    }
  }
}

#define FASTREC_SPARSE_PRODUCT(T, I)                                                           \
  FASTREC_CPU_CLONES void csr_dense_rows_clone(const I *indptr, const I *indices, const T *data, \
                                               const T *dense, int64_t width, int64_t begin,     \
                                               int64_t end, T *out) {                            \
    csr_dense_rows_impl<T, I>(indptr, indices, data, dense, width, begin, end, out);          \
  }

FASTREC_SPARSE_PRODUCT(float, int32_t)
FASTREC_SPARSE_PRODUCT(float, int64_t)
FASTREC_SPARSE_PRODUCT(double, int32_t)
FASTREC_SPARSE_PRODUCT(double, int64_t)
#undef FASTREC_SPARSE_PRODUCT

template <typename T, typename I>
static inline void csr_dense_rows(const I *indptr, const I *indices, const T *data,
                                  const T *dense, int64_t width, int64_t begin, int64_t end,
                                  T *out) {
  csr_dense_rows_clone(indptr, indices, data, dense, width, begin, end, out);
}

// ---- A^T (A dense) in one pass -------------------------------------------------------------
// out += A[r0:r1]^T (A[r0:r1] dense) for the CSR A [n_rows, n_cols], dense and out [n_cols, width]
// row-major in the data's type T. Row r's product t = A[r] dense (summed from zero in stored
// order, as csr_dense_rows) is added to out at each of the row's entries, rows in increasing
// order: out[c] gets its terms in the order of column c's entries by increasing row, which is
// the stored order of A^T's CSR. So on a zeroed out the result equals csr_dense_rows over the
// rows' A^T of csr_dense_rows over them, bit for bit, without the [r1 - r0, width]
// intermediate, whose gathers from memory cost the two-product form most of its time. Callers
// run disjoint row ranges into separate outputs on separate threads and add those.
// W: the width when it is a compile-time constant (0: `width` at run time).
template <int W, typename T, typename I>
static inline __attribute__((always_inline)) void csr_gram_rows_impl(
    const I *indptr, const I *indices, const T *data, int64_t r0, int64_t r1, const T *dense,
    int64_t width, T *out) {
  constexpr int64_t kAhead = 8;
  const int64_t n = W > 0 ? W : width;
  const int64_t end = indptr[r1];
  T t[W > 0 ? W : 1];
  T *row = t;
  std::vector<T> runtime_row(W > 0 ? 0 : width);
  if (W == 0) row = runtime_row.data();
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t first = indptr[r], last = indptr[r + 1];
    for (int64_t c = 0; c < n; ++c) row[c] = T(0);
    for (int64_t p = first; p < last; ++p) {
      if (p + kAhead < end) {
        const int64_t ahead = int64_t(indices[p + kAhead]) * n;
        __builtin_prefetch(dense + ahead);
        __builtin_prefetch(out + ahead, 1);
      }
      const T a = data[p];
      const T *v = dense + int64_t(indices[p]) * n;
      for (int64_t c = 0; c < n; ++c) row[c] += a * v[c];
    }
    for (int64_t p = first; p < last; ++p) {
      const T a = data[p];
      T *o = out + int64_t(indices[p]) * n;
      for (int64_t c = 0; c < n; ++c) o[c] += a * row[c];
    }
  }
}

#define FASTREC_SPARSE_GRAM(T, I)                                                                 \
  FASTREC_CPU_CLONES void csr_gram_rows_clone(const I *indptr, const I *indices, const T *data,  \
                                              int64_t r0, int64_t r1, const T *dense,            \
                                              int64_t width, T *out) {                           \
    if (width == 8)                                                                               \
      csr_gram_rows_impl<8, T, I>(indptr, indices, data, r0, r1, dense, 8, out);                  \
    else if (width == 16)                                                                         \
      csr_gram_rows_impl<16, T, I>(indptr, indices, data, r0, r1, dense, 16, out);                \
    else if (width == 32)                                                                         \
      csr_gram_rows_impl<32, T, I>(indptr, indices, data, r0, r1, dense, 32, out);                \
    else                                                                                          \
      csr_gram_rows_impl<0, T, I>(indptr, indices, data, r0, r1, dense, width, out);              \
  }

FASTREC_SPARSE_GRAM(float, int32_t)
FASTREC_SPARSE_GRAM(float, int64_t)
FASTREC_SPARSE_GRAM(double, int32_t)
FASTREC_SPARSE_GRAM(double, int64_t)
#undef FASTREC_SPARSE_GRAM

template <typename T, typename I>
static inline void csr_gram_rows(const I *indptr, const I *indices, const T *data, int64_t r0,
                                 int64_t r1, const T *dense, int64_t width, T *out) {
  csr_gram_rows_clone(indptr, indices, data, r0, r1, dense, width, out);
}

// ---- Transpose --------------------------------------------------------------------------------
// The CSR of X^T (t_indptr [n_cols + 1], t_indices, t_data [nnz]) from the CSR of X [n_rows,
// n_cols]: a stable counting sort of the entries by column, so each row of X^T lists its
// entries by increasing row of X (sorted when X's rows are). The rows are dealt in contiguous
// chunks, one histogram of the columns each, chunk t's entries of a column placed after chunk
// t-1's: the same arrays at any thread count. Chunks are only made while their histograms stay
// small next to the data.
template <typename T, typename I>
void csr_transpose(const I *indptr, const I *indices, const T *data, int64_t n_rows,
                   int64_t n_cols, I *t_indptr, I *t_indices, T *t_data, int n_threads) {
  const int64_t nnz = int64_t(indptr[n_rows]);
  const int64_t chunks =
      std::max<int64_t>(1, std::min<int64_t>({int64_t(n_threads), n_rows,
                                              nnz / (4 * (n_cols + 1))}));
  std::vector<int64_t> cursor(static_cast<size_t>(chunks * n_cols), 0);
  auto first_row = [&](int64_t t) { return n_rows * t / chunks; };
#pragma omp parallel for schedule(static, 1) num_threads(n_threads)
  for (int64_t t = 0; t < chunks; ++t) {
    int64_t *h = cursor.data() + t * n_cols;
    for (int64_t p = int64_t(indptr[first_row(t)]); p < int64_t(indptr[first_row(t + 1)]); ++p)
      ++h[indices[p]];
  }
  int64_t total = 0;
  for (int64_t c = 0; c < n_cols; ++c) {
    t_indptr[c] = static_cast<I>(total);
    for (int64_t t = 0; t < chunks; ++t) {
      const int64_t count = cursor[t * n_cols + c];
      cursor[t * n_cols + c] = total;
      total += count;
    }
  }
  t_indptr[n_cols] = static_cast<I>(total);
#pragma omp parallel for schedule(static, 1) num_threads(n_threads)
  for (int64_t t = 0; t < chunks; ++t) {
    int64_t *at = cursor.data() + t * n_cols;
    for (int64_t r = first_row(t); r < first_row(t + 1); ++r) {
      for (int64_t p = int64_t(indptr[r]); p < int64_t(indptr[r + 1]); ++p) {
        const int64_t q = at[indices[p]]++;
        t_indices[q] = static_cast<I>(r);
        t_data[q] = data[p];
      }
    }
  }
}

}  // namespace fastrec
