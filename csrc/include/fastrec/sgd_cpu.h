// CPU loop of one SGD block: the ratings of one (user block, item block) cell of the stratified
// grid, processed in stored order. Called by the Cython kernel, one OpenMP thread per block.
#pragma once

#include "fastrec/dataflow_cpu.h"
#include "fastrec/sgd.h"
#include "fastrec/simd_cpu.h"

namespace fastrec {

// ---- Register-resident update for a compile-time K ------------------------------------------
// The rows are loaded once into vector registers (SimdRow, fastrec/simd_cpu.h), the dot product
// is summed in exactly sgd_lane_dot's order, and the factor step updates the same registers
// before one store. GCC left alone reloads the rows and reduces the lanes with dozens of scalar
// adds; this path has about half the instructions and the same bits.

#ifndef SGD_PREFETCH_DISTANCE
#define SGD_PREFETCH_DISTANCE 8
#endif

// Rows of a block come from L2/L3 in random order: ask for those of rating n +
// SGD_PREFETCH_DISTANCE (rows of k values) so that the loads of independent updates overlap
// instead of stalling one by one.
template <typename T, typename I>
static inline __attribute__((always_inline)) void sgd_prefetch_ahead(
    const I *__restrict users, const I *__restrict items, int64_t n, int64_t end,
    const T *user_factors, const T *item_factors, int64_t k) {
  if (n + SGD_PREFETCH_DISTANCE >= end) return;
  const char *pn = (const char *)(user_factors + (int64_t)users[n + SGD_PREFETCH_DISTANCE] * k);
  const char *qn = (const char *)(item_factors + (int64_t)items[n + SGD_PREFETCH_DISTANCE] * k);
  for (int64_t b = 0; b < k * (int64_t)sizeof(T); b += 64) {
    __builtin_prefetch(pn + b, 1, 3);
    __builtin_prefetch(qn + b, 1, 3);
  }
}

template <typename T, typename I>
FASTREC_HD double sgd_block_impl(const I *__restrict users, const I *__restrict items,
                                    const T *__restrict ratings, int64_t begin, int64_t end,
                                    T *__restrict user_factors, T *__restrict item_factors,
                                    T *__restrict user_bias, T *__restrict item_bias, int64_t k,
                                    T global_mean, T lr, T lr_bias, T reg, T reg_bias,
                                    int biased) {
  double sse = 0.0;
  const T shrink = sgd_shrink<T>(lr, reg);
  for (int64_t n = begin; n < end; ++n) {
    sgd_prefetch_ahead<T, I>(users, items, n, end, user_factors, item_factors, k);
    const I u = users[n], i = items[n];
    T *__restrict p = user_factors + (int64_t)u * k;
    T *__restrict q = item_factors + (int64_t)i * k;
    const T dot = sgd_lane_dot<T>(p, q, k);
    const T err = sgd_error_and_biases<T>(ratings[n], global_mean, dot, user_bias[u],
                                          item_bias[i], lr_bias, reg_bias, biased, sse);
    const T step = sgd_step<T>(err, lr);
    for (int64_t f = 0; f < k; ++f) sgd_factor_step<T>(p[f], q[f], step, shrink);
  }
  return sse;
}

// sgd_block_impl for a compile-time K with the rows in registers (SimdRow); same bits.
template <typename T, typename I, int K, int VB>
static inline __attribute__((always_inline)) double sgd_block_fixed(
    const I *__restrict users, const I *__restrict items, const T *__restrict ratings,
    int64_t begin, int64_t end, T *__restrict user_factors, T *__restrict item_factors,
    T *__restrict user_bias, T *__restrict item_bias, T global_mean, T lr, T lr_bias, T reg,
    T reg_bias, int biased) {
  typedef SimdRow<T, K, VB> Row;
  typedef typename Row::V V;
  double sse = 0.0;
  const T shrink = sgd_shrink<T>(lr, reg);
  for (int64_t n = begin; n < end; ++n) {
    sgd_prefetch_ahead<T, I>(users, items, n, end, user_factors, item_factors, K);
    const I u = users[n], i = items[n];
    T *__restrict p_row = user_factors + (int64_t)u * K;
    T *__restrict q_row = item_factors + (int64_t)i * K;
    Row p, q;
    p.load(p_row);
    q.load(q_row);
    const T dot = p.dot(q);
    const T err = sgd_error_and_biases<T>(ratings[n], global_mean, dot, user_bias[u],
                                          item_bias[i], lr_bias, reg_bias, biased, sse);
    // sgd_factor_step element by element: p = shrink p + step q, q = shrink q + step p_old.
    // (Scalar operands: see SimdRow::axpy.)
    const T step = sgd_step<T>(err, lr);
    for (int j = 0; j < Row::NV; ++j) {
      const V p_old = p.v[j];
      p.v[j] = p_old * shrink + q.v[j] * step;
      q.v[j] = q.v[j] * shrink + p_old * step;
    }
    p.store(p_row);
    q.store(q_row);
  }
  return sse;
}

#define FASTREC_SGD_CASE(T, I, K)                                                              \
  case K:                                                                                      \
    if constexpr (simd_rows_fit<T, K, VB>())                                                    \
      return sgd_block_fixed<T, I, K, VB>(users, items, ratings, begin, end, user_factors,     \
                                          item_factors, user_bias, item_bias, global_mean, lr, \
                                          lr_bias, reg, reg_bias, biased);                     \
    break;

#define FASTREC_SGD_BLOCK(T, I)                                                                \
  FASTREC_SIMD_VERSIONS(                                                                       \
      , double, sgd_block,                                                                     \
      (const I *users, const I *items, const T *ratings, int64_t begin, int64_t end,           \
       T *user_factors, T *item_factors, T *user_bias, T *item_bias, int64_t k, T global_mean, \
       T lr, T lr_bias, T reg, T reg_bias, int biased),                                        \
      /* Common ranks get code specialised for a constant k (unrolled, registers only). */    \
      switch (k) {                                                                             \
        FASTREC_SGD_CASE(T, I, 16)                                                             \
        FASTREC_SGD_CASE(T, I, 32)                                                             \
        FASTREC_SGD_CASE(T, I, 64)                                                             \
        FASTREC_SGD_CASE(T, I, 96)                                                             \
        FASTREC_SGD_CASE(T, I, 112) /* k = 100 after MF's padding (padded_width) */            \
        FASTREC_SGD_CASE(T, I, 128)                                                            \
        default:                                                                               \
          break;                                                                               \
      }                                                                                        \
      return sgd_block_impl<T, I>(users, items, ratings, begin, end, user_factors,             \
                                  item_factors, user_bias, item_bias, k, global_mean, lr,      \
                                  lr_bias, reg, reg_bias, biased);)

FASTREC_SGD_BLOCK(float, int32_t)
FASTREC_SGD_BLOCK(float, int64_t)
FASTREC_SGD_BLOCK(double, int32_t)
FASTREC_SGD_BLOCK(double, int64_t)
#undef FASTREC_SGD_BLOCK
#undef FASTREC_SGD_CASE

// One epoch over the schedule without barriers between strata (BlockDataflow's order); the SSE
// of ticket t goes to ticket_sse[t].
template <typename T, typename I>
static inline void sgd_epoch_dataflow(const I *users, const I *items, const T *ratings,
                                      const int64_t *block_ptr, int64_t grid,
                                      const int64_t *schedule, int64_t n_tickets,
                                      T *user_factors, T *item_factors, T *user_bias,
                                      T *item_bias, int64_t k, T global_mean, T lr, T lr_bias,
                                      T reg, T reg_bias, int biased, int n_threads,
                                      double *ticket_sse) {
  BlockDataflow flow(schedule, n_tickets, grid);
#pragma omp parallel num_threads(n_threads)
  flow.run([&](int64_t t, int64_t b) {
    if (block_ptr[b + 1] > block_ptr[b])
      ticket_sse[t] = sgd_block(users, items, ratings, block_ptr[b], block_ptr[b + 1],
                                user_factors, item_factors, user_bias, item_bias, k, global_mean,
                                lr, lr_bias, reg, reg_bias, biased);
  });
}

}  // namespace fastrec
