// CPU epoch of SVD++ (math and the three-phase rule: fastrec/svdpp.h). Called by the Cython
// kernel with the GIL released; OpenMP over users (phase 1), over the conflict-free blocks in
// dataflow order (phase 2) and over items (phase 3). Every output row is written by one thread
// and every sum runs in a fixed order, so the result is the same at any thread count.
#pragma once

#include <vector>

#include "fastrec/dataflow_cpu.h"
#include "fastrec/simd_cpu.h"
#include "fastrec/svdpp.h"

namespace fastrec {

// Phase 1 for users [begin, end): norms[u], sums[u] = norm_u * sum_j y_j (summed in CSR order,
// then scaled), grads[u] = 0.
template <typename T, typename I>
static inline __attribute__((always_inline)) void svdpp_implicit_sums_impl(const int64_t *user_ptr, const I *user_items,
                                       const T *implicit, int64_t begin, int64_t end, int64_t k,
                                       T *norms, T *sums, T *grads) {
  for (int64_t u = begin; u < end; ++u) {
    T *__restrict s = sums + u * k;
    T *__restrict g = grads + u * k;
    for (int64_t f = 0; f < k; ++f) s[f] = g[f] = T(0);
    for (int64_t n = user_ptr[u]; n < user_ptr[u + 1]; ++n) {
      const T *__restrict y = implicit + (int64_t)user_items[n] * k;
      for (int64_t f = 0; f < k; ++f) s[f] += y[f];
    }
    const T norm = svdpp_norm<T>(user_ptr[u + 1] - user_ptr[u]);
    norms[u] = norm;
    for (int64_t f = 0; f < k; ++f) s[f] *= norm;
  }
}

// Phase 2 for the ratings [begin, end) of one block, in stored order; returns their SSE.
template <typename T, typename I>
static inline __attribute__((always_inline)) double svdpp_block_impl(const I *__restrict users, const I *__restrict items,
                                 const T *__restrict ratings, int64_t begin, int64_t end,
                                 T *__restrict user_factors, T *__restrict item_factors,
                                 T *__restrict user_bias, T *__restrict item_bias,
                                 const T *__restrict norms, T *__restrict sums,
                                 T *__restrict grads, int64_t k,
                                 T global_mean, T lr, T lr_bias, T reg, T reg_bias, int biased) {
  double sse = 0.0;
  const T shrink = sgd_shrink<T>(lr, reg);
  for (int64_t n = begin; n < end; ++n) {
    const int64_t u = users[n], i = items[n];
    T *__restrict p = user_factors + u * k;
    T *__restrict q = item_factors + i * k;
    T *__restrict g = grads + u * k;
    T *__restrict z = sums + u * k;
    const T dot = svdpp_lane_dot<T>(p, z, q, k);
    const T err = sgd_error_and_biases<T>(ratings[n], global_mean, dot, user_bias[u],
                                          item_bias[i], lr_bias, reg_bias, biased, sse);
    const T step = sgd_step<T>(err, lr);
    const T z_step = svdpp_implicit_sum_step<T>(step, norms[u]);
    for (int64_t f = 0; f < k; ++f)
      svdpp_factor_step<T>(p[f], q[f], g[f], z[f], err, step, z_step, shrink);
  }
  return sse;
}

// Phase 3 for items [begin, end): y_j from the norm-weighted gradients of its raters, each
// factor summed in CSC order (rows accumulated whole into `grad`, T[k] scratch).
template <typename T, typename I>
static inline __attribute__((always_inline)) void svdpp_implicit_update_impl(const int64_t *item_ptr, const I *item_users,
                                         const T *norms, const T *grads, T *implicit,
                                         int64_t begin, int64_t end, int64_t k, T lr,
                                         T reg_implicit, T *__restrict grad) {
  for (int64_t j = begin; j < end; ++j) {
    T *__restrict y = implicit + j * k;
    for (int64_t f = 0; f < k; ++f) grad[f] = T(0);
    for (int64_t n = item_ptr[j]; n < item_ptr[j + 1]; ++n) {
      const int64_t u = item_users[n];
      const T norm = norms[u];
      const T *__restrict g = grads + u * k;
      for (int64_t f = 0; f < k; ++f) grad[f] += norm * g[f];
    }
    const T denominator = svdpp_implicit_denominator<T>(lr, reg_implicit,
                                                        item_ptr[j + 1] - item_ptr[j]);
    for (int64_t f = 0; f < k; ++f)
      y[f] = svdpp_implicit_step<T>(y[f], grad[f], lr, denominator);
  }
}

// One version of each phase's loop per ISA level (FASTREC_SIMD_VERSIONS, simd_cpu.h): the loops
// over k vectorise to the widest vectors the CPU has. Only element-wise operations change
// width; every sum keeps its order and nothing is contracted, so all versions agree bit for bit.
#define FASTREC_SVDPP_VERSIONS(T, I)                                                             \
  FASTREC_SIMD_VERSIONS(                                                                       \
      static, void, svdpp_implicit_sums,                                                       \
      (const int64_t *user_ptr, const I *user_items, const T *implicit, int64_t begin,         \
       int64_t end, int64_t k, T *norms, T *sums, T *grads),                                   \
      (void)VB;                                                                                \
      svdpp_implicit_sums_impl<T, I>(user_ptr, user_items, implicit, begin, end, k, norms,     \
                                     sums, grads);)                                            \
  FASTREC_SIMD_VERSIONS(                                                                       \
      static, double, svdpp_block,                                                             \
      (const I *users, const I *items, const T *ratings, int64_t begin, int64_t end,           \
       T *user_factors, T *item_factors, T *user_bias, T *item_bias, const T *norms, T *sums,  \
       T *grads, int64_t k, T global_mean, T lr, T lr_bias, T reg, T reg_bias, int biased),    \
      (void)VB;                                                                                \
      return svdpp_block_impl<T, I>(users, items, ratings, begin, end, user_factors,           \
                                    item_factors, user_bias, item_bias, norms, sums, grads, k, \
                                    global_mean, lr, lr_bias, reg, reg_bias, biased);)         \
  FASTREC_SIMD_VERSIONS(                                                                       \
      static, void, svdpp_implicit_update,                                                     \
      (const int64_t *item_ptr, const I *item_users, const T *norms, const T *grads,           \
       T *implicit, int64_t begin, int64_t end, int64_t k, T lr, T reg_implicit, T *grad),     \
      (void)VB;                                                                                \
      svdpp_implicit_update_impl<T, I>(item_ptr, item_users, norms, grads, implicit, begin,    \
                                       end, k, lr, reg_implicit, grad);)

FASTREC_SVDPP_VERSIONS(float, int32_t)
FASTREC_SVDPP_VERSIONS(float, int64_t)
FASTREC_SVDPP_VERSIONS(double, int32_t)
FASTREC_SVDPP_VERSIONS(double, int64_t)
#undef FASTREC_SVDPP_VERSIONS

constexpr int64_t SVDPP_ROW_CHUNK = 64;  // rows per task in phases 1 and 3 (load balance)

// One epoch on a grid x grid block layout. schedule is [n_tickets] block ids in schedule order
// (strata one after the other; -1: skipped); ticket_sse[t] receives the SSE of ticket t.
//
// Phase 2 runs in dataflow order (BlockDataflow, dataflow_cpu.h), as MF's epoch does: tickets are
// handed out in schedule order and a block waits only for the previous scheduled block on its
// user block and on its item block. That is the sequential schedule's result at any thread
// count, without a barrier per stratum (on a busy machine each barrier waits for the slowest,
// possibly descheduled, thread: with one per stratum, 2 threads ran 3x slower than 1). Phases 1
// and 3 are parallel loops over row chunks, one barrier each.
template <typename T, typename I>
static inline void svdpp_epoch_cpu(const I *users, const I *items, const T *ratings,
                                   const int64_t *block_ptr, int64_t grid,
                                   const int64_t *schedule, int64_t n_tickets,
                                   const int64_t *user_ptr, const I *user_items,
                                   const int64_t *item_ptr, const I *item_users, int64_t n_users,
                                   int64_t n_items, T *user_factors, T *item_factors, T *implicit,
                                   T *user_bias, T *item_bias, int64_t k, T global_mean, T lr,
                                   T lr_bias, T reg, T reg_bias, T reg_implicit, int biased,
                                   int n_threads, double *ticket_sse) {
  std::vector<T> norms(n_users), sums(n_users * k), grads(n_users * k);
  T *norms_p = norms.data(), *sums_p = sums.data(), *grads_p = grads.data();
  BlockDataflow flow(schedule, n_tickets, grid);
  const int64_t user_chunks = (n_users + SVDPP_ROW_CHUNK - 1) / SVDPP_ROW_CHUNK;
  const int64_t item_chunks = (n_items + SVDPP_ROW_CHUNK - 1) / SVDPP_ROW_CHUNK;
#pragma omp parallel num_threads(n_threads)
  {
#pragma omp for schedule(dynamic, 1)
    for (int64_t c = 0; c < user_chunks; ++c) {
      const int64_t begin = c * SVDPP_ROW_CHUNK;
      const int64_t end = begin + SVDPP_ROW_CHUNK < n_users ? begin + SVDPP_ROW_CHUNK : n_users;
      svdpp_implicit_sums(user_ptr, user_items, implicit, begin, end, k, norms_p, sums_p,
                                grads_p);
    }
    flow.run([&](int64_t t, int64_t b) {
      if (block_ptr[b + 1] > block_ptr[b])
        ticket_sse[t] = svdpp_block(users, items, ratings, block_ptr[b], block_ptr[b + 1],
                                    user_factors, item_factors, user_bias, item_bias, norms_p,
                                    sums_p, grads_p, k, global_mean, lr, lr_bias, reg, reg_bias,
                                    biased);
    });
#pragma omp barrier
    std::vector<T> grad(k);
#pragma omp for schedule(dynamic, 1)
    for (int64_t c = 0; c < item_chunks; ++c) {
      const int64_t begin = c * SVDPP_ROW_CHUNK;
      const int64_t end = begin + SVDPP_ROW_CHUNK < n_items ? begin + SVDPP_ROW_CHUNK : n_items;
      svdpp_implicit_update(item_ptr, item_users, norms_p, grads_p, implicit, begin, end, k,
                                  lr, reg_implicit, grad.data());
    }
  }
}

}  // namespace fastrec
