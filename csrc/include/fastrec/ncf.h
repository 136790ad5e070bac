// Per-element math of neural collaborative filtering (He et al., WWW 2017): activations, the
// losses on the output logit and their derivatives, and the negative-sampling draw. Shared by
// the CPU kernels (ncf_cpu.h) and, later, CUDA; mirrored in fastrec/backends/numba/ncf.py.
#pragma once

#if !defined(__CUDACC_RTC__)  // NVRTC has the math functions built in and no C headers
#include <math.h>
#endif

#include "fastrec/common.h"
#include "fastrec/rng.h"

namespace fastrec {

enum NcfLoss { NCF_LOSS_BCE = 0, NCF_LOSS_SQUARED = 1 };

// Rejection attempts per negative before the last draw is kept (a user who has seen almost
// every item would otherwise loop for long).
constexpr int64_t NCF_NEGATIVE_TRIES = 64;

template <typename T>
FASTREC_HD T ncf_relu(T x) {
  return x > T(0) ? x : T(0);
}

template <typename T>
FASTREC_HD T ncf_sigmoid(T z) {
  // Two branches so exp never overflows.
  if (z >= T(0)) return T(1) / (T(1) + exp(-z));
  const T e = exp(z);
  return e / (T(1) + e);
}

// Binary cross-entropy of target y in [0, 1] given the logit z, in the stable form
// max(z, 0) - z y + log(1 + exp(-|z|)); or the squared error (z - y)^2.
template <typename T>
FASTREC_HD T ncf_loss(int kind, T z, T y) {
  if (kind == NCF_LOSS_BCE) return (z > T(0) ? z : T(0)) - z * y + log1p(exp(-fabs(z)));
  const T d = z - y;
  return d * d;
}

// d loss / d z.
template <typename T>
FASTREC_HD T ncf_loss_grad(int kind, T z, T y) {
  if (kind == NCF_LOSS_BCE) return ncf_sigmoid<T>(z) - y;
  return T(2) * (z - y);
}

// The joint model's rating term on one observed pair: weight * (pred - rating)^2, with
// pred = mu + b_u + b_i + p_u . q_i over the GMF columns, and its derivative in pred.
template <typename T>
FASTREC_HD T ncf_rating_loss(T weight, T pred, T rating) {
  const T d = pred - rating;
  return weight * d * d;
}

template <typename T>
FASTREC_HD T ncf_rating_grad(T weight, T pred, T rating) {
  return T(2) * weight * (pred - rating);
}

// Candidate item of attempt `attempt` for negative `negative` (0-based over all negatives of the
// epoch: positive p's j-th negative is p * n_negatives + j), uniform over [0, n_items).
FASTREC_HD int64_t ncf_negative_candidate(uint64_t key, int64_t negative, int64_t attempt,
                                          int64_t n_items) {
  return (int64_t)rng_below(
      rng_at(key, (uint64_t)negative * (uint64_t)NCF_NEGATIVE_TRIES + (uint64_t)attempt),
      (uint64_t)n_items);
}

}  // namespace fastrec
