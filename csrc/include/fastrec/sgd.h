// Per-rating math of biased matrix factorisation trained by SGD (Funk / Koren style).
//
// Model: r_hat(u, i) = mu + b_u + b_i + p_u . q_i
// Step for one rating r with e = r - r_hat:
//   b_u += lr_b (e - reg_b b_u)            b_i += lr_b (e - reg_b b_i)
//   p_uf += lr (e q_if - reg p_uf)         q_if += lr (e p_uf_old - reg q_if)
// computed as p_uf = (1 - lr reg) p_uf + (lr e) q_if, the same step with fewer operations.
// The same functions are used by the Cython kernel (one thread per block of ratings) and by the
// CUDA kernel (one warp per rating, each lane owning a slice of the k factors).
#pragma once

#include "fastrec/common.h"

namespace fastrec {

// Lanes of the CPU dot product: a fixed number of independent partial sums, so the compiler can
// vectorise the reduction without -ffast-math and every ISA clone sums in the same order.
constexpr int SGD_DOT_LANES = 16;  // the reduction below is written for exactly 16

template <typename T>
FASTREC_HD T sgd_error(T rating, T global_mean, T user_bias, T item_bias, T dot) {
  return rating - (global_mean + user_bias + item_bias + dot);
}

template <typename T>
FASTREC_HD T sgd_bias_step(T bias, T err, T lr_bias, T reg_bias) {
  return bias + lr_bias * (err - reg_bias * bias);
}
// One rating's error from the model's dot product, then the step of its two biases (when the
// model is biased), in place; adds err^2 to sse. sgd_error and sgd_bias_step as every loop
// over ratings takes them (the CPU blocks of MF and SVD++).
template <typename T>
FASTREC_HD T sgd_error_and_biases(T rating, T global_mean, T dot, T &user_bias, T &item_bias,
                                  T lr_bias, T reg_bias, int biased, double &sse) {
  const T err = sgd_error<T>(rating, global_mean, user_bias, item_bias, dot);
  sse += (double)err * (double)err;
  if (biased) {
    user_bias = sgd_bias_step<T>(user_bias, err, lr_bias, reg_bias);
    item_bias = sgd_bias_step<T>(item_bias, err, lr_bias, reg_bias);
  }
  return err;
}

// Per-rating coefficients of the factor step: p += lr (e q - reg p) is p = shrink p + step q.
template <typename T>
FASTREC_HD T sgd_step(T err, T lr) { return lr * err; }

template <typename T>
FASTREC_HD T sgd_shrink(T lr, T reg) { return T(1) - lr * reg; }

// Updates one factor pair in place; q's step uses p's value from before this rating.
template <typename T>
FASTREC_HD void sgd_factor_step(T &p, T &q, T step, T shrink) {
  const T p_old = p;
  p = shrink * p + step * q;
  q = shrink * q + step * p_old;
}

// Dot product of two k-vectors with SGD_DOT_LANES interleaved partial sums, reduced pairwise.
template <typename T>
FASTREC_HD T sgd_lane_dot(const T *__restrict p, const T *__restrict q, int64_t k) {
  T acc[SGD_DOT_LANES];
  for (int l = 0; l < SGD_DOT_LANES; ++l) acc[l] = T(0);
  int64_t j = 0;
  for (; j + SGD_DOT_LANES <= k; j += SGD_DOT_LANES)
    for (int l = 0; l < SGD_DOT_LANES; ++l) acc[l] += p[j + l] * q[j + l];
  for (int l = 0; j < k; ++j, ++l) acc[l] += p[j] * q[j];
  // Halving steps with constant trip counts, so the compiler keeps them in vector registers.
  for (int l = 0; l < 8; ++l) acc[l] += acc[l + 8];
  for (int l = 0; l < 4; ++l) acc[l] += acc[l + 4];
  for (int l = 0; l < 2; ++l) acc[l] += acc[l + 2];
  return acc[0] + acc[1];
}

}  // namespace fastrec
