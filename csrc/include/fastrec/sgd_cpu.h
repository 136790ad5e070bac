// CPU loop of one SGD block: the ratings of one (user block, item block) cell of the stratified
// grid, processed in stored order. Called by the Cython kernel, one OpenMP thread per block.
#pragma once

#include <atomic>
#include <vector>

#include <sched.h>

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

template <typename T, typename I>
FASTREC_HD double sgd_block_impl(const I *__restrict users, const I *__restrict items,
                                    const T *__restrict ratings, int64_t begin, int64_t end,
                                    T *__restrict user_factors, T *__restrict item_factors,
                                    T *__restrict user_bias, T *__restrict item_bias, int64_t k,
                                    T global_mean, T lr, T lr_bias, T reg, T reg_bias,
                                    int biased) {
  double sse = 0.0;
  const int64_t row_bytes = k * (int64_t)sizeof(T);
  const T shrink = sgd_shrink<T>(lr, reg);
  for (int64_t n = begin; n < end; ++n) {
    // Rows of a block come from L2/L3 in random order: ask for them a few ratings ahead so the
    // loads of independent updates overlap instead of stalling one by one.
    if (n + SGD_PREFETCH_DISTANCE < end) {
      const char *pn = (const char *)(user_factors + (int64_t)users[n + SGD_PREFETCH_DISTANCE] * k);
      const char *qn = (const char *)(item_factors + (int64_t)items[n + SGD_PREFETCH_DISTANCE] * k);
      for (int64_t b = 0; b < row_bytes; b += 64) {
        __builtin_prefetch(pn + b, 1, 3);
        __builtin_prefetch(qn + b, 1, 3);
      }
    }
    const I u = users[n], i = items[n];
    T *__restrict p = user_factors + (int64_t)u * k;
    T *__restrict q = item_factors + (int64_t)i * k;
    const T dot = sgd_lane_dot<T>(p, q, k);
    const T err = sgd_error<T>(ratings[n], global_mean, user_bias[u], item_bias[i], dot);
    sse += (double)err * (double)err;
    if (biased) {
      user_bias[u] = sgd_bias_step<T>(user_bias[u], err, lr_bias, reg_bias);
      item_bias[i] = sgd_bias_step<T>(item_bias[i], err, lr_bias, reg_bias);
    }
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
    if (n + SGD_PREFETCH_DISTANCE < end) {
      const char *pn = (const char *)(user_factors + (int64_t)users[n + SGD_PREFETCH_DISTANCE] * K);
      const char *qn = (const char *)(item_factors + (int64_t)items[n + SGD_PREFETCH_DISTANCE] * K);
      for (int b = 0; b < K * (int)sizeof(T); b += 64) {
        __builtin_prefetch(pn + b, 1, 3);
        __builtin_prefetch(qn + b, 1, 3);
      }
    }
    const I u = users[n], i = items[n];
    T *__restrict p_row = user_factors + (int64_t)u * K;
    T *__restrict q_row = item_factors + (int64_t)i * K;
    Row p, q;
    p.load(p_row);
    q.load(q_row);
    const T dot = p.dot(q);
    const T err = sgd_error<T>(ratings[n], global_mean, user_bias[u], item_bias[i], dot);
    sse += (double)err * (double)err;
    if (biased) {
      user_bias[u] = sgd_bias_step<T>(user_bias[u], err, lr_bias, reg_bias);
      item_bias[i] = sgd_bias_step<T>(item_bias[i], err, lr_bias, reg_bias);
    }
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

// One epoch over the schedule without barriers between strata (dataflow order).
//
// Blocks are handed out in schedule order (a ticket counter); a block waits only for the
// previous scheduled block on its own user block and on its own item block. Every user/item
// block therefore sees its blocks in schedule order, blocks on disjoint rows and columns commute,
// and the result equals the sequential schedule bit for bit at any thread count. Unlike a
// barrier per stratum, a thread that the OS descheduled only delays the blocks that depend on
// it, which keeps two threads useful on a busy machine. Block b covers user block b / G and item
// block b % G, where G * G is the number of blocks.
template <typename T, typename I>
static inline void sgd_epoch_dataflow(const I *users, const I *items, const T *ratings,
                                      const int64_t *block_ptr, int64_t grid,
                                      const int64_t *schedule, int64_t n_tickets,
                                      T *user_factors, T *item_factors, T *user_bias,
                                      T *item_bias, int64_t k, T global_mean, T lr, T lr_bias,
                                      T reg, T reg_bias, int biased, int n_threads,
                                      double *ticket_sse) {
  std::vector<int64_t> after_row(n_tickets, -1), after_col(n_tickets, -1);
  {
    std::vector<int64_t> last_row(grid, -1), last_col(grid, -1);
    for (int64_t t = 0; t < n_tickets; ++t) {
      const int64_t b = schedule[t];
      if (b < 0) continue;
      after_row[t] = last_row[b / grid];
      after_col[t] = last_col[b % grid];
      last_row[b / grid] = last_col[b % grid] = t;
    }
  }
  std::vector<std::atomic<int>> done(n_tickets);
  for (auto &d : done) d.store(0, std::memory_order_relaxed);
  std::atomic<int64_t> next_ticket(0);

#pragma omp parallel num_threads(n_threads)
  {
    for (;;) {
      const int64_t t = next_ticket.fetch_add(1, std::memory_order_relaxed);
      if (t >= n_tickets) break;
      const int64_t b = schedule[t];
      if (b >= 0) {
        for (int spins = 0; (after_row[t] >= 0 && !done[after_row[t]].load(std::memory_order_acquire)) ||
                            (after_col[t] >= 0 && !done[after_col[t]].load(std::memory_order_acquire));
             ++spins) {
          if (spins > 64) sched_yield();  // let a descheduled producer run
        }
        if (block_ptr[b + 1] > block_ptr[b])
          ticket_sse[t] = sgd_block(users, items, ratings, block_ptr[b], block_ptr[b + 1],
                                   user_factors, item_factors, user_bias, item_bias, k,
                                   global_mean, lr, lr_bias, reg, reg_bias, biased);
      }
      done[t].store(1, std::memory_order_release);
    }
  }
}

}  // namespace fastrec
