// CPU loops of the NMF multiplicative updates, one range of rows per call. The Cython kernels
// run ranges in parallel (OpenMP); every output row is written by exactly one call and summed in
// stored order, so results do not depend on the thread count.
//
// Factors are row-major: `factors` is the [n_rows, k] factor being updated (W, or H^T when the
// driver passes the transposed problem), `other` is the [n_cols, k] fixed factor, and the data
// is CSR over the rows of `factors` (indptr, indices, data).
#pragma once

#include "fastrec/blas_cpu.h"
#include "fastrec/nmf.h"
#include "fastrec/sgd.h"
#include "fastrec/simd_cpu.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace fastrec {

// The row loops must be inlined into each ISA clone below; a separate out-of-line copy would be
// compiled for the baseline ISA only.
#if defined(__GNUC__)
#define FASTREC_NMF_INLINE static inline __attribute__((always_inline))
#else
#define FASTREC_NMF_INLINE static inline
#endif

// c + a * b, as one fused multiply-add where the ISA has one (see "Fused products" below).
template <bool FUSED, typename T>
FASTREC_NMF_INLINE T nmf_madd(T a, T b, T c) {
  if constexpr (FUSED)
    return std::fma(a, b, c);
  else
    return c + a * b;
}

// Upper triangle of sum_r other_r other_r^T over rows [begin, end), into out[k*k] (overwritten):
// one multiply-add chain per entry, rows in order. Four rows per sweep so each row of `out` is
// loaded and stored once per four rank-1 updates.
template <bool FUSED, typename T>
FASTREC_NMF_INLINE void nmf_gram_impl(
    const T *__restrict other, int64_t begin, int64_t end, int64_t k, T *__restrict out) {
  for (int64_t j = 0; j < k * k; ++j) out[j] = T(0);
  int64_t r = begin;
  for (; r + 4 <= end; r += 4) {
    const T *__restrict a = other + r * k;
    const T *__restrict b = a + k;
    const T *__restrict c = b + k;
    const T *__restrict d = c + k;
    for (int64_t j = 0; j < k; ++j) {
      const T aj = a[j], bj = b[j], cj = c[j], dj = d[j];
      T *__restrict g = out + j * k;
      for (int64_t l = j; l < k; ++l)
        g[l] = nmf_madd<FUSED>(dj, d[l], nmf_madd<FUSED>(cj, c[l], nmf_madd<FUSED>(bj, b[l],
                                                         nmf_madd<FUSED>(aj, a[l], g[l]))));
    }
  }
  for (; r < end; ++r) {
    const T *__restrict a = other + r * k;
    for (int64_t j = 0; j < k; ++j) {
      const T aj = a[j];
      T *__restrict g = out + j * k;
      for (int64_t l = j; l < k; ++l) g[l] = nmf_madd<FUSED>(aj, a[l], g[l]);
    }
  }
}

// Frobenius denominators of `rows` rows of w ([rows, k]) into out[rows, k]: out_r = w_r . G for
// the symmetric Gram matrix `gram` [k, k], one multiply-add chain over j in order.
template <bool FUSED, typename T>
FASTREC_NMF_INLINE void nmf_gram_times_rows_impl(const T *__restrict w, int64_t rows,
                                                 const T *__restrict gram, int64_t k,
                                                 T *__restrict out) {
  for (int64_t r = 0; r < rows; ++r) {
    T *__restrict den = out + r * k;
    for (int64_t f = 0; f < k; ++f) den[f] = T(0);
    for (int64_t j = 0; j < k; ++j) {
      const T wj = w[r * k + j];
      const T *__restrict g = gram + j * k;
      for (int64_t f = 0; f < k; ++f) den[f] = nmf_madd<FUSED>(wj, g[f], den[f]);
    }
  }
}

// Column sums of other over rows [begin, end), into out[k] (overwritten).
template <typename T>
FASTREC_NMF_INLINE void nmf_colsum_impl(
    const T *__restrict other, int64_t begin, int64_t end, int64_t k, T *__restrict out) {
  for (int64_t f = 0; f < k; ++f) out[f] = T(0);
  for (int64_t r = begin; r < end; ++r)
    for (int64_t f = 0; f < k; ++f) out[f] += other[r * k + f];
}

// The full mode's Frobenius denominators are computed NMF_DEN_ROWS rows at a time inside the
// row loops, just before those rows' gathers, so the out-of-order core can overlap these
// multiply-adds (on L1-resident rows) with the gathers' cache misses, and the caller needs no
// scratch for a whole chunk's. (Against a 64-row chunk's computed up front: within 2% either
// way, 1M nonzeros, rank 32, 1 or 2 threads.)
constexpr int NMF_DEN_ROWS = 4;

// Scratch (elements of T) that nmf_full_rows needs per calling thread at rank k.
constexpr int64_t nmf_full_scratch(int64_t k) { return (NMF_DEN_ROWS + 1) * k; }

// Frobenius numerator of row r into num[k] (accumulated: the caller zeroes it): the sum of
// data[n] * other[indices[n]] over the row's stored entries, one multiply-add chain per factor in
// entry order.
template <bool FUSED, typename T, typename I>
FASTREC_NMF_INLINE void nmf_frobenius_numerator(const I *__restrict indptr,
                                                const I *__restrict indices,
                                                const T *__restrict data,
                                                const T *__restrict other, int64_t r, int64_t k,
                                                T *__restrict num) {
  for (int64_t n = indptr[r]; n < indptr[r + 1]; ++n) {
    const T x = data[n];
    const T *__restrict h = other + (int64_t)indices[n] * k;
    for (int64_t f = 0; f < k; ++f) num[f] = nmf_madd<FUSED>(x, h[f], num[f]);
  }
}

// Full-matrix update of rows [begin, end). beta == 2 (Frobenius): `stats` is the symmetric Gram
// matrix G [k, k] of other; beta == 1 (KL): other's column sums [k].
// scratch: T[nmf_full_scratch(k)] owned by the calling thread.
template <bool FUSED, typename T, typename I>
FASTREC_NMF_INLINE void nmf_full_rows_impl(
    const I *__restrict indptr, const I *__restrict indices, const T *__restrict data,
    T *__restrict factors, const T *__restrict other, const T *__restrict stats, int64_t begin,
    int64_t end, int64_t k, int beta, T l1, T l2, T *__restrict scratch) {
  T *__restrict num = scratch;
  T *__restrict dens = scratch + k;
  for (int64_t r = begin; r < end; ++r) {
    T *__restrict w = factors + r * k;
    for (int64_t f = 0; f < k; ++f) num[f] = T(0);
    const T *__restrict den;
    if (beta == 2) {
      if ((r - begin) % NMF_DEN_ROWS == 0)
        nmf_gram_times_rows_impl<FUSED, T>(w, std::min<int64_t>(NMF_DEN_ROWS, end - r), stats, k,
                                           dens);
      nmf_frobenius_numerator<FUSED, T, I>(indptr, indices, data, other, r, k, num);
      den = dens + (r - begin) % NMF_DEN_ROWS * k;
    } else {
      for (int64_t n = indptr[r]; n < indptr[r + 1]; ++n) {
        const T *__restrict h = other + (int64_t)indices[n] * k;
        const T ratio = nmf_kl_ratio<T>(data[n], sgd_lane_dot<T>(w, h, k));
        for (int64_t f = 0; f < k; ++f) num[f] += ratio * h[f];
      }
      den = stats;
    }
    for (int64_t f = 0; f < k; ++f)
      w[f] = nmf_mu_step<T>(w[f], num[f], nmf_regularised_denominator<T>(den[f], w[f], l1, l2));
  }
}

// Observed-entries update of rows [begin, end) (sums over the stored entries only; l1 and l2 are
// per observation and scaled by the row's count). With `biased`, the row's bias is first set to
// its exact minimiser, then the factors take one step with the new bias.
// scratch: T[2k + max_row_length] owned by the calling thread.
template <typename T, typename I>
FASTREC_NMF_INLINE void nmf_observed_rows_impl(
    const I *__restrict indptr, const I *__restrict indices, const T *__restrict data,
    T *__restrict factors, const T *__restrict other, T *__restrict bias,
    const T *__restrict other_bias, T global_mean, int64_t begin, int64_t end, int64_t k, int beta,
    T l1, T l2, T reg_bias, int biased, T *__restrict scratch) {
  T *__restrict num = scratch;
  T *__restrict den = scratch + k;
  T *__restrict dots = scratch + 2 * k;
  for (int64_t r = begin; r < end; ++r) {
    T *__restrict w = factors + r * k;
    const int64_t start = indptr[r], stop = indptr[r + 1];
    const T count = T(stop - start);
    for (int64_t n = start; n < stop; ++n)
      dots[n - start] = sgd_lane_dot<T>(w, other + (int64_t)indices[n] * k, k);
    T offset = T(0);
    if (biased) {
      T residual_sum = T(0);
      for (int64_t n = start; n < stop; ++n)
        residual_sum += data[n] - global_mean - other_bias[indices[n]] - dots[n - start];
      bias[r] = nmf_bias_solve<T>(residual_sum, count, reg_bias);
      offset = global_mean + bias[r];
    }
    for (int64_t f = 0; f < k; ++f) num[f] = den[f] = T(0);
    for (int64_t n = start; n < stop; ++n) {
      const T *__restrict h = other + (int64_t)indices[n] * k;
      const T dot = dots[n - start];
      if (beta == 2) {
        const T target = biased ? data[n] - offset - other_bias[indices[n]] : data[n];
        const T pos = nmf_positive_part<T>(target);
        const T neg = dot + nmf_negative_part<T>(target);
        for (int64_t f = 0; f < k; ++f) {
          num[f] += pos * h[f];
          den[f] += neg * h[f];
        }
      } else {
        const T ratio = nmf_kl_ratio<T>(data[n], dot);
        for (int64_t f = 0; f < k; ++f) {
          num[f] += ratio * h[f];
          den[f] += h[f];
        }
      }
    }
    const T row_l1 = count * l1, row_l2 = count * l2;
    for (int64_t f = 0; f < k; ++f)
      w[f] = nmf_mu_step<T>(w[f], num[f],
                            nmf_regularised_denominator<T>(den[f], w[f], row_l1, row_l2));
  }
}

// Data term of the loss over rows [begin, end), in double. Full mode (observed == 0):
// Frobenius returns sum x^2 - 2 x (WH) over stored entries (the caller adds ||WH||^2 from the
// Gram matrices and halves); KL returns sum x log(x / WH) - x (the caller adds sum WH).
// Observed mode: Frobenius 1/2 sum e^2 with biases when `biased`; KL sum x log(x/WH) - x + WH.
template <typename T, typename I>
FASTREC_NMF_INLINE double nmf_loss_rows_impl(
    const I *__restrict indptr, const I *__restrict indices, const T *__restrict data,
    const T *__restrict factors, const T *__restrict other, const T *__restrict bias,
    const T *__restrict other_bias, double global_mean, int64_t begin, int64_t end, int64_t k,
    int beta, int observed, int biased) {
  double total = 0.0;
  for (int64_t r = begin; r < end; ++r) {
    const T *__restrict w = factors + r * k;
    for (int64_t n = indptr[r]; n < indptr[r + 1]; ++n) {
      const double x = data[n];
      const double dot = sgd_lane_dot<T>(w, other + (int64_t)indices[n] * k, k);
      if (beta == 2) {
        if (observed) {
          const double pred =
              biased ? global_mean + bias[r] + other_bias[indices[n]] + dot : dot;
          total += 0.5 * (x - pred) * (x - pred);
        } else {
          total += x * x - 2.0 * x * dot;
        }
      } else {
        total += nmf_kl_entry(x, dot) + (observed ? dot : 0.0);
      }
    }
  }
  return total;
}

// ---- Register-resident paths for common ranks ------------------------------------------------
// For k in {16, 32, 48, 64, 96, 128} a row of k values is held in vector registers (SimdRow,
// fastrec/simd_cpu.h: the running ISA's widest vectors, VB bytes), so the sparse accumulations
// run from registers instead of memory. The per-element math is still nmf.h's.

template <typename T, int K, int VB>
using NmfRow = SimdRow<T, K, VB>;

// The rows of `other` named by the stored entries are gathered in random order, from L2/L3 or
// memory: request the row of the entry P::distance ahead (the range's last entry is `last`) so
// the loads of independent entries overlap instead of stalling one at a time. P::locality is
// __builtin_prefetch's.
template <int DISTANCE, int LOCALITY>
struct NmfPrefetch {
  static constexpr int distance = DISTANCE, locality = LOCALITY;
};
// The default: 16 entries ahead, into L1.
using NmfPrefetchDefault = NmfPrefetch<16, 3>;
// The Frobenius numerator does little work per entry, so its gathers run further ahead and stop
// at L2 (prefetcht2): one iteration on 2 threads (1M nonzeros, rank 32, Zen 4) took 2-9% less
// than with the default (interleaved A/B rounds; the larger gain when other tenants load the
// shared L3) and 6% less than 48 ahead into L2. The KL loop lost 3% with it.
using NmfPrefetchFrobenius = NmfPrefetch<32, 1>;

template <typename P, typename T, typename I, int K>
FASTREC_NMF_INLINE void nmf_prefetch_row(const T *other, const I *indices, int64_t n,
                                         int64_t last) {
  if (n + P::distance < last) {
    const char *row = (const char *)(other + (int64_t)indices[n + P::distance] * K);
    for (int b = 0; b < K * (int)sizeof(T); b += 64) __builtin_prefetch(row + b, 0, P::locality);
  }
}

// The largest power of two <= n and <= cap (1 if n < 1): rows per register block.
constexpr int nmf_power_of_two_at_most(int n, int cap) {
  int p = 1;
  while (p * 2 <= n && p * 2 <= cap) p *= 2;
  return p;
}

// Passes of nmf_gram_fixed over the Gram rows whose diagonal lies in vector V0: J rows at a
// time, from vector V0 on (the caller reads the upper triangle only, so the vectors left of the
// diagonal, a quarter of the work at K = 32, are skipped). The J rows' sums stay in registers
// while a pass streams over the input rows: every sum is a chain over r, with J * (NV - V0)
// independent chains in flight.
template <typename T, int K, int VB, int J, int V0>
FASTREC_NMF_INLINE void nmf_gram_passes(const T *__restrict other, int64_t begin, int64_t end,
                                        T *__restrict out) {
  typedef NmfRow<T, K, VB> Row;
  typedef typename Row::S S;
  constexpr int NV = Row::NV - V0;
  for (int j0 = V0 * Row::W; j0 < (V0 + 1) * Row::W; j0 += J) {
    typename Row::V acc[J][NV];
    for (int j = 0; j < J; ++j)
      for (int v = 0; v < NV; ++v) acc[j][v] = typename Row::V{};
    for (int64_t r = begin; r < end; ++r) {
      const T *__restrict a = other + r * K;
      typename Row::V row[NV];
      for (int v = 0; v < NV; ++v) row[v] = S::load(a + (V0 + v) * Row::W);
      for (int j = 0; j < J; ++j)
        for (int v = 0; v < NV; ++v) acc[j][v] = Row::S::madd(a + j0 + j, row[v], acc[j][v]);
    }
    for (int j = 0; j < J; ++j)
      for (int v = 0; v < NV; ++v)
        __builtin_memcpy(out + (j0 + j) * K + (V0 + v) * Row::W, &acc[j][v], sizeof(acc[j][v]));
  }
}

template <typename T, int K, int VB, int J, int... V0>
FASTREC_NMF_INLINE void nmf_gram_all_passes(const T *__restrict other, int64_t begin,
                                            int64_t end, T *__restrict out,
                                            std::integer_sequence<int, V0...>) {
  (nmf_gram_passes<T, K, VB, J, V0>(other, begin, end, out), ...);
}

// Gram of rows [begin, end) for a compile-time K: the upper triangle of the [K, K] block (the
// rest is zero), each entry one fused multiply-add chain over the rows in order, as
// nmf_gram_impl (see "Fused products").
template <typename T, int K, int VB>
FASTREC_NMF_INLINE void nmf_gram_fixed(const T *__restrict other, int64_t begin, int64_t end,
                                       T *__restrict out) {
  typedef NmfRow<T, K, VB> Row;
  // Rows per pass: a power of two no wider than a vector (so it divides the vector width), with
  // the J * NV sums in half the registers.
  constexpr int J = nmf_power_of_two_at_most(simd_registers<VB>() / 2 / Row::NV, Row::W);
  for (int64_t j = 0; j < K * K; ++j) out[j] = T(0);
  nmf_gram_all_passes<T, K, VB, J>(other, begin, end, out,
                                   std::make_integer_sequence<int, Row::NV>{});
}

// nmf_gram_times_rows_impl for a compile-time K, M rows at a time: the M rows' sums and one row
// of G stay in registers, so each row of G is loaded once per M rows instead of once per row.
template <typename T, int K, int VB, int M>
FASTREC_NMF_INLINE void nmf_gram_times_block(const T *__restrict w, const T *__restrict gram,
                                             T *__restrict out) {
  NmfRow<T, K, VB> acc[M];
  for (int r = 0; r < M; ++r) acc[r].zero();
  for (int j = 0; j < K; ++j) {
    NmfRow<T, K, VB> gj;
    gj.load(gram + j * K);
    for (int r = 0; r < M; ++r) acc[r].fma_axpy(w + r * K + j, gj);
  }
  for (int r = 0; r < M; ++r) acc[r].store(out + r * K);
}

template <typename T, int K, int VB>
FASTREC_NMF_INLINE void nmf_gram_times_rows_fixed(const T *__restrict w, int64_t rows,
                                                  const T *__restrict gram, T *__restrict out) {
  // M rows' sums and one row of G in registers ((M + 1) * NV of them), at most 4 rows.
  constexpr int NV = NmfRow<T, K, VB>::NV;
  constexpr int M = nmf_power_of_two_at_most((simd_registers<VB>() - 2) / NV - 1, 4);
  int64_t r = 0;
  for (; r + M <= rows; r += M) nmf_gram_times_block<T, K, VB, M>(w + r * K, gram, out + r * K);
  for (; r < rows; ++r) nmf_gram_times_block<T, K, VB, 1>(w + r * K, gram, out + r * K);
}

// Ranks with a register-resident path (where two rows fit in the registers, simd_rows_fit); any
// other k takes the generic path. FIXED and GENERIC are expressions of the function's type.
#define FASTREC_NMF_CASE(KK, FIXED, T, ...)                                   \
  case KK:                                                                    \
    if constexpr (simd_rows_fit<T, KK, VB>()) return FIXED(KK, T, __VA_ARGS__); \
    break;
#define FASTREC_NMF_DISPATCH_K(FIXED, GENERIC, T, ...) \
  switch (k) {                                         \
    FASTREC_NMF_CASE(16, FIXED, T, __VA_ARGS__)        \
    FASTREC_NMF_CASE(32, FIXED, T, __VA_ARGS__)        \
    FASTREC_NMF_CASE(48, FIXED, T, __VA_ARGS__)        \
    FASTREC_NMF_CASE(64, FIXED, T, __VA_ARGS__)        \
    FASTREC_NMF_CASE(96, FIXED, T, __VA_ARGS__)        \
    FASTREC_NMF_CASE(128, FIXED, T, __VA_ARGS__)       \
    default:                                           \
      break;                                           \
  }                                                    \
  return GENERIC;

// nmf_mu_step(w, num, nmf_regularised_denominator(den, w, l1, l2)) for the K entries, a vector
// at a time: the same operations in the same order, so the same bits as the scalar functions,
// without a division per entry (a row's step was most of an item row's cost in observed mode,
// whose item rows hold a handful of ratings). A row with a non-finite step (nmf_mu_step's
// overflow case: rare) takes the scalar function for all its entries.
template <typename T, int K, int VB>
FASTREC_NMF_INLINE void nmf_step_fixed(T *__restrict w, const NmfRow<T, K, VB> &num,
                                       const NmfRow<T, K, VB> &den, T l1, T l2) {
  typedef NmfRow<T, K, VB> Row;
  typedef typename Row::V V;
  const V zero = V{};
  const V floor = zero + T(NMF_EPSILON);
  V stepped[Row::NV];
  V check = zero;  // 0 in every lane while every step is finite, NaN from the first that is not
  for (int j = 0; j < Row::NV; ++j) {
    const V value = Row::S::load(w + j * Row::W);
    const V regularised = (den.v[j] + l1) + value * l2;
    const V safe = regularised == zero ? floor : regularised;
    stepped[j] = value * (num.v[j] / safe);
    check += stepped[j] - stepped[j];
  }
  if (Row::S::template halve<V, Row::W>(check) == T(0)) {
    for (int j = 0; j < Row::NV; ++j) Row::S::store(w + j * Row::W, stepped[j]);
    return;
  }
  T n[K], d[K];
  num.store(n);
  den.store(d);
  for (int f = 0; f < K; ++f)
    w[f] = nmf_mu_step<T>(w[f], n[f], nmf_regularised_denominator<T>(d[f], w[f], l1, l2));
}

// The Frobenius numerator is one chain of fused multiply-adds in entry order, as the generic
// path (and the Numba kernel): fewer instructions between the gathers than a multiply and an
// add, so more gathers in flight. An iteration took 6% less in interleaved A/B rounds (1M
// nonzeros, rank 32, 2 threads, each round after a pause and warm-up calls; back-to-back blocks
// without pauses gave 6% the other way).
template <typename T, typename I, int K, int VB>
FASTREC_NMF_INLINE void nmf_frobenius_rows_fixed(const I *__restrict indptr,
                                                 const I *__restrict indices,
                                                 const T *__restrict data, T *__restrict factors,
                                                 const T *__restrict other,
                                                 const T *__restrict gram, int64_t begin,
                                                 int64_t end, T l1, T l2) {
  const int64_t last = indptr[end];
  alignas(64) T dens[NMF_DEN_ROWS * K];
  for (int64_t r = begin; r < end; ++r) {
    T *__restrict w = factors + r * K;
    if ((r - begin) % NMF_DEN_ROWS == 0)
      nmf_gram_times_rows_fixed<T, K, VB>(w, std::min<int64_t>(NMF_DEN_ROWS, end - r), gram,
                                          dens);
    NmfRow<T, K, VB> num, den;
    num.zero();
    const int64_t stop = indptr[r + 1];
    int64_t n = indptr[r];
    for (; n + 1 < stop; n += 2) {
      nmf_prefetch_row<NmfPrefetchFrobenius, T, I, K>(other, indices, n, last);
      nmf_prefetch_row<NmfPrefetchFrobenius, T, I, K>(other, indices, n + 1, last);
      num.fma_axpy(data + n, other + (int64_t)indices[n] * K);
      num.fma_axpy(data + n + 1, other + (int64_t)indices[n + 1] * K);
    }
    if (n < stop) num.fma_axpy(data + n, other + (int64_t)indices[n] * K);
    den.load(dens + (r - begin) % NMF_DEN_ROWS * K);
    nmf_step_fixed<T, K, VB>(w, num, den, l1, l2);
  }
}

template <typename T, typename I, int K, int VB>
FASTREC_NMF_INLINE void nmf_kl_rows_fixed(const I *__restrict indptr, const I *__restrict indices,
                                          const T *__restrict data, T *__restrict factors,
                                          const T *__restrict other, const T *__restrict colsums,
                                          int64_t begin, int64_t end, T l1, T l2) {
  const int64_t last = indptr[end];
  for (int64_t r = begin; r < end; ++r) {
    T *__restrict w = factors + r * K;
    NmfRow<T, K, VB> num, den, wr;
    num.zero();
    wr.load(w);
    const int64_t stop = indptr[r + 1];
    int64_t n = indptr[r];
    for (; n + 1 < stop; n += 2) {
      nmf_prefetch_row<NmfPrefetchDefault, T, I, K>(other, indices, n, last);
      nmf_prefetch_row<NmfPrefetchDefault, T, I, K>(other, indices, n + 1, last);
      const T *__restrict h = other + (int64_t)indices[n] * K;
      const T *__restrict h2 = other + (int64_t)indices[n + 1] * K;
      num.axpy(nmf_kl_ratio<T>(data[n], wr.dot(h)), h);
      num.axpy(nmf_kl_ratio<T>(data[n + 1], wr.dot(h2)), h2);
    }
    if (n < stop) {
      const T *__restrict h = other + (int64_t)indices[n] * K;
      num.axpy(nmf_kl_ratio<T>(data[n], wr.dot(h)), h);
    }
    den.load(colsums);
    nmf_step_fixed<T, K, VB>(w, num, den, l1, l2);
  }
}

template <typename T, typename I, int K, int VB>
FASTREC_NMF_INLINE void nmf_full_rows_fixed(const I *__restrict indptr,
                                            const I *__restrict indices,
                                            const T *__restrict data, T *__restrict factors,
                                            const T *__restrict other, const T *__restrict stats,
                                            int64_t begin, int64_t end, int beta, T l1, T l2) {
  if (beta == 2)
    nmf_frobenius_rows_fixed<T, I, K, VB>(indptr, indices, data, factors, other, stats, begin,
                                          end, l1, l2);
  else
    nmf_kl_rows_fixed<T, I, K, VB>(indptr, indices, data, factors, other, stats, begin, end, l1,
                                   l2);
}

template <typename T, typename I, int K, int VB>
FASTREC_NMF_INLINE void nmf_observed_rows_fixed(
    const I *__restrict indptr, const I *__restrict indices, const T *__restrict data,
    T *__restrict factors, const T *__restrict other, T *__restrict bias,
    const T *__restrict other_bias, T global_mean, int64_t begin, int64_t end, int beta, T l1,
    T l2, T reg_bias, int biased, T *__restrict dots) {
  const int64_t last = indptr[end];
  for (int64_t r = begin; r < end; ++r) {
    T *__restrict w = factors + r * K;
    const int64_t start = indptr[r], stop = indptr[r + 1];
    const T count = T(stop - start);
    NmfRow<T, K, VB> wr, num, den;
    wr.load(w);
    num.zero();
    den.zero();
    if (!biased) {
      // Each entry's dot product only feeds its own terms: one pass, no scratch.
      for (int64_t n = start; n < stop; ++n) {
        nmf_prefetch_row<NmfPrefetchDefault, T, I, K>(other, indices, n, last);
        const T *__restrict h = other + (int64_t)indices[n] * K;
        const T dot = wr.dot(h);
        if (beta == 2) {
          num.axpy(nmf_positive_part<T>(data[n]), h);
          den.axpy(dot + nmf_negative_part<T>(data[n]), h);
        } else {
          num.axpy(nmf_kl_ratio<T>(data[n], dot), h);
          den.add(h);
        }
      }
      nmf_step_fixed<T, K, VB>(w, num, den, count * l1, count * l2);
      continue;
    }
    for (int64_t n = start; n < stop; ++n) {
      nmf_prefetch_row<NmfPrefetchDefault, T, I, K>(other, indices, n, last);
      dots[n - start] = wr.dot(other + (int64_t)indices[n] * K);
    }
    // Biased (Frobenius only, as the contract requires): the row's bias first, from every
    // entry's dot product, then the factors' step with the new bias.
    T residual_sum = T(0);
    for (int64_t n = start; n < stop; ++n)
      residual_sum += data[n] - global_mean - other_bias[indices[n]] - dots[n - start];
    bias[r] = nmf_bias_solve<T>(residual_sum, count, reg_bias);
    const T offset = global_mean + bias[r];
    for (int64_t n = start; n < stop; ++n) {
      const T *__restrict h = other + (int64_t)indices[n] * K;
      const T target = data[n] - offset - other_bias[indices[n]];
      num.axpy(nmf_positive_part<T>(target), h);
      den.axpy(dots[n - start] + nmf_negative_part<T>(target), h);
    }
    nmf_step_fixed<T, K, VB>(w, num, den, count * l1, count * l2);
  }
}

template <typename T, typename I, int K, int VB>
FASTREC_NMF_INLINE double nmf_loss_rows_fixed(const I *__restrict indptr,
                                              const I *__restrict indices,
                                              const T *__restrict data,
                                              const T *__restrict factors,
                                              const T *__restrict other, const T *__restrict bias,
                                              const T *__restrict other_bias, double global_mean,
                                              int64_t begin, int64_t end, int beta, int observed,
                                              int biased) {
  const int64_t last = indptr[end];
  double total = 0.0;
  for (int64_t r = begin; r < end; ++r) {
    NmfRow<T, K, VB> wr;
    wr.load(factors + r * K);
    for (int64_t n = indptr[r]; n < indptr[r + 1]; ++n) {
      nmf_prefetch_row<NmfPrefetchDefault, T, I, K>(other, indices, n, last);
      const double x = data[n];
      const double dot = wr.dot(other + (int64_t)indices[n] * K);
      if (beta == 2) {
        if (observed) {
          const double pred =
              biased ? global_mean + bias[r] + other_bias[indices[n]] + dot : dot;
          total += 0.5 * (x - pred) * (x - pred);
        } else {
          total += x * x - 2.0 * x * dot;
        }
      } else {
        total += nmf_kl_entry(x, dot) + (observed ? dot : 0.0);
      }
    }
  }
  return total;
}

#define FASTREC_NMF_FULL_FIXED(KK, T, I)                                                   \
  nmf_full_rows_fixed<T, I, KK, VB>(indptr, indices, data, factors, other, stats, begin, end, \
                                    beta, l1, l2)
#define FASTREC_NMF_OBSERVED_FIXED(KK, T, I)                                                  \
  nmf_observed_rows_fixed<T, I, KK, VB>(indptr, indices, data, factors, other, bias,          \
                                        other_bias, global_mean, begin, end, beta, l1, l2,    \
                                        reg_bias, biased, scratch + 2 * KK)
#define FASTREC_NMF_LOSS_FIXED(KK, T, I)                                                  \
  nmf_loss_rows_fixed<T, I, KK, VB>(indptr, indices, data, factors, other, bias, other_bias, \
                                    global_mean, begin, end, beta, observed, biased)

#define FASTREC_NMF_ROWS(T, I)                                                                   \
  FASTREC_SIMD_VERSIONS(                                                                         \
      , void, nmf_full_rows_clone,                                                               \
      (const I *indptr, const I *indices, const T *data, T *factors, const T *other,             \
       const T *stats, int64_t begin, int64_t end, int64_t k, int beta, T l1, T l2,              \
       T *scratch),                                                                              \
      FASTREC_NMF_DISPATCH_K(FASTREC_NMF_FULL_FIXED,                                             \
                             (nmf_full_rows_impl<simd_has_fma<VB>(), T, I>(                     \
                                 indptr, indices, data, factors, other, stats, begin, end, k,    \
                                 beta, l1, l2, scratch)),                                        \
                             T, I))                                                              \
  FASTREC_SIMD_VERSIONS(                                                                         \
      , void, nmf_observed_rows_clone,                                                           \
      (const I *indptr, const I *indices, const T *data, T *factors, const T *other, T *bias,    \
       const T *other_bias, T global_mean, int64_t begin, int64_t end, int64_t k, int beta,      \
       T l1, T l2, T reg_bias, int biased, T *scratch),                                          \
      FASTREC_NMF_DISPATCH_K(FASTREC_NMF_OBSERVED_FIXED,                                         \
                             (nmf_observed_rows_impl<T, I>(indptr, indices, data, factors,       \
                                                           other, bias, other_bias, global_mean, \
                                                           begin, end, k, beta, l1, l2,          \
                                                           reg_bias, biased, scratch)),          \
                             T, I))                                                              \
  FASTREC_SIMD_VERSIONS(                                                                         \
      , double, nmf_loss_rows_clone,                                                             \
      (const I *indptr, const I *indices, const T *data, const T *factors, const T *other,       \
       const T *bias, const T *other_bias, double global_mean, int64_t begin, int64_t end,       \
       int64_t k, int beta, int observed, int biased),                                           \
      FASTREC_NMF_DISPATCH_K(FASTREC_NMF_LOSS_FIXED,                                             \
                             (nmf_loss_rows_impl<T, I>(indptr, indices, data, factors, other,    \
                                                       bias, other_bias, global_mean, begin, end, \
                                                       k, beta, observed, biased)),              \
                             T, I))

FASTREC_NMF_ROWS(float, int32_t)
FASTREC_NMF_ROWS(float, int64_t)
FASTREC_NMF_ROWS(double, int32_t)
FASTREC_NMF_ROWS(double, int64_t)
#undef FASTREC_NMF_ROWS
#undef FASTREC_NMF_FULL_FIXED
#undef FASTREC_NMF_OBSERVED_FIXED
#undef FASTREC_NMF_LOSS_FIXED

// ---- Fused products --------------------------------------------------------------------------
// The Frobenius full mode's products (the Gram matrices, the denominators w_r . G and the sparse
// numerators X H^T) are chains of fused multiply-adds, as in BLAS: half the instructions of a
// multiply and an add. The FMAs are explicit (std::fma, SimdVec::madd); everything else is
// unfused (-ffp-contract=off). So every ISA version with FMA rounds these products alike. A
// version without FMA (x86-64 before AVX2, or a build without runtime dispatch and without
// -mfma) multiplies and adds in the same order: the same sums, rounded twice per step (software
// FMA would be ~20x slower there).

#define FASTREC_NMF_GRAM_FIXED(KK, T, ...) nmf_gram_fixed<T, KK, VB>(other, begin, end, out)

#define FASTREC_NMF_STATS(T)                                                                     \
  FASTREC_SIMD_VERSIONS(                                                                         \
      , void, nmf_gram_clone, (const T *other, int64_t begin, int64_t end, int64_t k, T *out),   \
      FASTREC_NMF_DISPATCH_K(                                                                    \
          FASTREC_NMF_GRAM_FIXED,                                                                \
          (nmf_gram_impl<simd_has_fma<VB>(), T>(other, begin, end, k, out)), T, ))               \
  FASTREC_CPU_CLONES void nmf_colsum_clone(const T *other, int64_t begin, int64_t end,           \
                                           int64_t k, T *out) {                                  \
    nmf_colsum_impl<T>(other, begin, end, k, out);                                               \
  }

FASTREC_NMF_STATS(float)
FASTREC_NMF_STATS(double)
#undef FASTREC_NMF_STATS
#undef FASTREC_NMF_GRAM_FIXED

#undef FASTREC_NMF_DISPATCH_K
#undef FASTREC_NMF_CASE

// ---- Large ranks: the Frobenius dense products through BLAS ---------------------------------
// Above the register-resident ranks the dense products dominate an iteration: the Gram matrix
// (n k^2 / 2 multiply-adds) and the denominators W G (n k^2) against the sparse numerator's
// nnz k. The loops above run them at a few GFLOP/s there (rank 610 on a 610 x 9,724 matrix:
// 3.3 s an iteration); BLAS's blocked kernels run them near peak. So for k above the largest
// register rank (the callers decide: fastrec/backends/_cpu_layout.py, NMF_BLAS_MIN_RANK) the
// Gram matrix is a syrk per fixed chunk of rows and the denominators a GEMM per chunk of rows to
// update, all on the caller's threads with BLAS single-threaded (blas_cpu.h), so the results do
// not depend on the thread count. The numerator and the step stay the generic path's.

// Upper triangle of the Gram matrix of rows [begin, end) of other [n, k] into out[k * k] (the
// strictly lower triangle is not written).
template <typename T>
static inline void nmf_gram_blas(const Blas &blas, const T *other, int64_t begin, int64_t end,
                                 int64_t k, T *out) {
  syrk_upper_rm<T>(blas, (int)k, (int)(end - begin), T(1), other + begin * k, (int)k, T(0), out,
                   (int)k);
}

// Frobenius update of rows [begin, end) whose denominators are given: dens [end - begin, k].
#define FASTREC_NMF_DENS_ROWS(T, I)                                                              \
  FASTREC_SIMD_VERSIONS(                                                                         \
      , void, nmf_frobenius_rows_given_dens_clone,                                               \
      (const I *indptr, const I *indices, const T *data, T *factors, const T *other,             \
       const T *dens, int64_t begin, int64_t end, int64_t k, T l1, T l2, T *num),                \
      for (int64_t r = begin; r < end; ++r) {                                                    \
        T *w = factors + r * k;                                                                  \
        const T *den = dens + (r - begin) * k;                                                   \
        for (int64_t f = 0; f < k; ++f) num[f] = T(0);                                           \
        nmf_frobenius_numerator<simd_has_fma<VB>(), T, I>(indptr, indices, data, other, r, k,    \
                                                           num);                                 \
        for (int64_t f = 0; f < k; ++f)                                                          \
          w[f] = nmf_mu_step<T>(w[f], num[f],                                                    \
                                nmf_regularised_denominator<T>(den[f], w[f], l1, l2));           \
      })

FASTREC_NMF_DENS_ROWS(float, int32_t)
FASTREC_NMF_DENS_ROWS(float, int64_t)
FASTREC_NMF_DENS_ROWS(double, int32_t)
FASTREC_NMF_DENS_ROWS(double, int64_t)
#undef FASTREC_NMF_DENS_ROWS

// Scratch (elements of T) that nmf_frobenius_rows_blas needs per calling thread for `rows` rows.
constexpr int64_t nmf_blas_scratch(int64_t rows, int64_t k) { return (rows + 1) * k; }

// Frobenius full-mode update of rows [begin, end) at a large rank: their denominators
// factors[begin:end] G by one GEMM (gram: the full symmetric G [k, k]), then each row's numerator
// and step. scratch: T[nmf_blas_scratch(end - begin, k)] owned by the calling thread.
template <typename T, typename I>
static inline void nmf_frobenius_rows_blas(const Blas &blas, const I *indptr, const I *indices,
                                           const T *data, T *factors, const T *other,
                                           const T *gram, int64_t begin, int64_t end, int64_t k,
                                           T l1, T l2, T *scratch) {
  const int64_t rows = end - begin;
  gemm_rm<T>(blas, false, false, (int)rows, (int)k, (int)k, T(1), factors + begin * k, (int)k,
             gram, (int)k, T(0), scratch, (int)k);
  nmf_frobenius_rows_given_dens_clone(indptr, indices, data, factors, other, scratch, begin, end,
                                      k, l1, l2, scratch + rows * k);
}

// Template entry points (what Cython calls): each forwards to the ISA-dispatched overload.
template <typename T>
static inline void nmf_gram(const T *other, int64_t begin, int64_t end, int64_t k, T *out) {
  nmf_gram_clone(other, begin, end, k, out);
}

template <typename T>
static inline void nmf_colsum(const T *other, int64_t begin, int64_t end, int64_t k, T *out) {
  nmf_colsum_clone(other, begin, end, k, out);
}

template <typename T, typename I>
static inline void nmf_full_rows(const I *indptr, const I *indices, const T *data, T *factors,
                                 const T *other, const T *stats, int64_t begin, int64_t end,
                                 int64_t k, int beta, T l1, T l2, T *scratch) {
  nmf_full_rows_clone(indptr, indices, data, factors, other, stats, begin, end, k, beta, l1, l2,
                      scratch);
}

template <typename T, typename I>
static inline void nmf_observed_rows(const I *indptr, const I *indices, const T *data,
                                     T *factors, const T *other, T *bias, const T *other_bias,
                                     T global_mean, int64_t begin, int64_t end, int64_t k,
                                     int beta, T l1, T l2, T reg_bias, int biased, T *scratch) {
  nmf_observed_rows_clone(indptr, indices, data, factors, other, bias, other_bias, global_mean,
                          begin, end, k, beta, l1, l2, reg_bias, biased, scratch);
}

template <typename T, typename I>
static inline double nmf_loss_rows(const I *indptr, const I *indices, const T *data,
                                   const T *factors, const T *other, const T *bias,
                                   const T *other_bias, double global_mean, int64_t begin,
                                   int64_t end, int64_t k, int beta, int observed, int biased) {
  return nmf_loss_rows_clone(indptr, indices, data, factors, other, bias, other_bias,
                             global_mean, begin, end, k, beta, observed, biased);
}

}  // namespace fastrec
