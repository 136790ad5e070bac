// CPU loop of one SGD block: the ratings of one (user block, item block) cell of the stratified
// grid, processed in stored order. Called by the Cython kernel, one OpenMP thread per block.
#pragma once

#include "fastrec/sgd.h"

namespace fastrec {

#ifndef SGD_PREFETCH_DISTANCE
#define SGD_PREFETCH_DISTANCE 8
#endif

template <typename T, typename I>
static inline double sgd_block_impl(const I *__restrict users, const I *__restrict items,
                                    const T *__restrict ratings, int64_t begin, int64_t end,
                                    T *__restrict user_factors, T *__restrict item_factors,
                                    T *__restrict user_bias, T *__restrict item_bias, int64_t k,
                                    T global_mean, T lr, T lr_bias, T reg, T reg_bias,
                                    int biased) {
  double sse = 0.0;
  const int64_t row_bytes = k * (int64_t)sizeof(T);
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
    for (int64_t f = 0; f < k; ++f) sgd_factor_step<T>(p[f], q[f], err, lr, reg);
  }
  return sse;
}

#define FASTREC_SGD_BLOCK(T, I)                                                                \
  FASTREC_CPU_CLONES double sgd_block(const I *users, const I *items, const T *ratings,        \
                                      int64_t begin, int64_t end, T *user_factors,             \
                                      T *item_factors, T *user_bias, T *item_bias, int64_t k,  \
                                      T global_mean, T lr, T lr_bias, T reg, T reg_bias,       \
                                      int biased) {                                            \
    return sgd_block_impl<T, I>(users, items, ratings, begin, end, user_factors, item_factors, \
                                user_bias, item_bias, k, global_mean, lr, lr_bias, reg,        \
                                reg_bias, biased);                                             \
  }

FASTREC_SGD_BLOCK(float, int32_t)
FASTREC_SGD_BLOCK(float, int64_t)
FASTREC_SGD_BLOCK(double, int32_t)
FASTREC_SGD_BLOCK(double, int64_t)
#undef FASTREC_SGD_BLOCK

}  // namespace fastrec
