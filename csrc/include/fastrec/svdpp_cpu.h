// CPU epoch of SVD++ (math and the three-phase rule: fastrec/svdpp.h). Called by the Cython
// kernel with the GIL released; OpenMP over users (phase 1), over the blocks of each stratum
// (phase 2, a barrier between strata) and over items (phase 3). Every output row is written by
// one thread and every sum runs in a fixed order, so the result is the same at any thread count.
#pragma once

#include <vector>

#include "fastrec/svdpp.h"

namespace fastrec {

// Phase 1 for users [begin, end): norms[u], sums[u] = norm_u * sum_j y_j (summed in CSR order,
// then scaled), grads[u] = 0.
template <typename T, typename I>
static inline void svdpp_implicit_sums(const int64_t *user_ptr, const I *user_items,
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
static inline double svdpp_block(const I *__restrict users, const I *__restrict items,
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
    const T err = sgd_error<T>(ratings[n], global_mean, user_bias[u], item_bias[i], dot);
    sse += (double)err * (double)err;
    if (biased) {
      user_bias[u] = sgd_bias_step<T>(user_bias[u], err, lr_bias, reg_bias);
      item_bias[i] = sgd_bias_step<T>(item_bias[i], err, lr_bias, reg_bias);
    }
    const T step = sgd_step<T>(err, lr);
    const T z_step = svdpp_implicit_sum_step<T>(step, norms[u]);
    for (int64_t f = 0; f < k; ++f)
      svdpp_factor_step<T>(p[f], q[f], g[f], z[f], err, step, z_step, shrink);
  }
  return sse;
}

// Phase 3 for items [begin, end): y_j from the norm-weighted gradients of its raters (summed in
// CSC order, factor by factor, so each sum's order is fixed).
template <typename T, typename I>
static inline void svdpp_implicit_update(const int64_t *item_ptr, const I *item_users,
                                         const T *norms, const T *grads, T *implicit,
                                         int64_t begin, int64_t end, int64_t k, T lr,
                                         T reg_implicit) {
  for (int64_t j = begin; j < end; ++j) {
    T *__restrict y = implicit + j * k;
    const T denominator = svdpp_implicit_denominator<T>(lr, reg_implicit,
                                                        item_ptr[j + 1] - item_ptr[j]);
    for (int64_t f = 0; f < k; ++f) {
      T grad = T(0);
      for (int64_t n = item_ptr[j]; n < item_ptr[j + 1]; ++n) {
        const int64_t u = item_users[n];
        grad += norms[u] * grads[u * k + f];
      }
      y[f] = svdpp_implicit_step<T>(y[f], grad, lr, denominator);
    }
  }
}

constexpr int64_t SVDPP_ROW_CHUNK = 64;  // rows per task in phases 1 and 3 (load balance)

// One epoch. schedule is [n_strata, width] of block ids (-1: skipped); slot_sse[s * width + b]
// receives the SSE of slot b of stratum s.
template <typename T, typename I>
static inline void svdpp_epoch_cpu(const I *users, const I *items, const T *ratings,
                                   const int64_t *block_ptr, const int64_t *schedule,
                                   int64_t n_strata, int64_t width, const int64_t *user_ptr,
                                   const I *user_items, const int64_t *item_ptr,
                                   const I *item_users, int64_t n_users, int64_t n_items,
                                   T *user_factors, T *item_factors, T *implicit, T *user_bias,
                                   T *item_bias, int64_t k, T global_mean, T lr, T lr_bias, T reg,
                                   T reg_bias, T reg_implicit, int biased, int n_threads,
                                   double *slot_sse) {
  std::vector<T> norms(n_users), sums(n_users * k), grads(n_users * k);
  T *norms_p = norms.data(), *sums_p = sums.data(), *grads_p = grads.data();
  const int64_t user_chunks = (n_users + SVDPP_ROW_CHUNK - 1) / SVDPP_ROW_CHUNK;
  const int64_t item_chunks = (n_items + SVDPP_ROW_CHUNK - 1) / SVDPP_ROW_CHUNK;
#pragma omp parallel num_threads(n_threads)
  {
#pragma omp for schedule(dynamic, 1)
    for (int64_t c = 0; c < user_chunks; ++c) {
      const int64_t begin = c * SVDPP_ROW_CHUNK;
      const int64_t end = begin + SVDPP_ROW_CHUNK < n_users ? begin + SVDPP_ROW_CHUNK : n_users;
      svdpp_implicit_sums<T, I>(user_ptr, user_items, implicit, begin, end, k, norms_p, sums_p,
                                grads_p);
    }
    for (int64_t s = 0; s < n_strata; ++s) {
#pragma omp for schedule(dynamic, 1)
      for (int64_t b = 0; b < width; ++b) {
        const int64_t block = schedule[s * width + b];
        if (block >= 0 && block_ptr[block + 1] > block_ptr[block])
          slot_sse[s * width + b] = svdpp_block<T, I>(
              users, items, ratings, block_ptr[block], block_ptr[block + 1], user_factors,
              item_factors, user_bias, item_bias, norms_p, sums_p, grads_p, k, global_mean, lr, lr_bias,
              reg, reg_bias, biased);
      }
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t c = 0; c < item_chunks; ++c) {
      const int64_t begin = c * SVDPP_ROW_CHUNK;
      const int64_t end = begin + SVDPP_ROW_CHUNK < n_items ? begin + SVDPP_ROW_CHUNK : n_items;
      svdpp_implicit_update<T, I>(item_ptr, item_users, norms_p, grads_p, implicit, begin, end, k,
                                  lr, reg_implicit);
    }
  }
}

}  // namespace fastrec
