// Per-element math of SVD++ (Koren 2008) trained by SGD, shared by the CPU and CUDA kernels.
//
// Model: r_hat(u, i) = mu + b_u + b_i + q_i . (p_u + z_u),
//        z_u = |N(u)|^-1/2 sum_{j in N(u)} y_j      (N(u): the items u rated in training)
//
// One epoch, in three phases (the rule every backend and the numpy reference follow):
//   1. For every user: norm_u = |N(u)|^-1/2, the cached implicit sum z_u = norm_u sum_j y_j from
//      y as it is at the start of the epoch, and the gradient accumulator g_u = 0.
//   2. SGD over the ratings in schedule order (MF's stratified blocks). For a rating (u, i, r):
//        e = r - (mu + b_u + b_i + q_i . (p_u + z_u));  b_u, b_i as in MF (sgd.h);
//        g_u += e q_i;  p_u = (1 - lr reg) p_u + lr e q_i;  z_u += lr e q_i (0 if N(u) is empty);
//        q_i = (1 - lr reg) q_i + lr e (p_u + z_u)
//      with the values before this rating on every right-hand side. z_u's step is exactly the
//      change Koren's per-rating update of the y_j, j in N(u), makes to u's own implicit sum
//      (|N(u)| norm_u^2 = 1), so within the epoch each user sees its own implicit feedback move
//      as in sequential SVD++; what other users do to shared y_j arrives at the next epoch.
//   3. Every y_j takes the epoch's accumulated gradient in one proximal step:
//        y_j = (y_j + lr sum_{u: j in N(u)} norm_u g_u) / (1 + lr reg_implicit n_j)
//      with n_j the number of users with j in N(u): the L2 penalty counted once per (u, j) pair,
//      applied in closed form, so it stays stable however popular j is.
// The implicit sum is computed once per user per epoch, never per rating (the per-user cache of
// the literature), and y_j gets the gradient of every rating of each of its users (not only the
// ratings of one block). Phase 2 writes p, q, the biases, z_u and g_u (rows of the block's own
// users and items) and never reads y, so the blocks of a stratum stay conflict-free and the
// result does not depend on the thread count.
#pragma once

#if !defined(__CUDACC_RTC__)  // NVRTC has no C library headers (sqrt is built in)
#include <math.h>
#endif

#include "fastrec/common.h"
#include "fastrec/sgd.h"

namespace fastrec {

// |N(u)|^-1/2, or 0 for a user without implicit items (then z_u = 0).
template <typename T>
FASTREC_HD T svdpp_norm(int64_t count) {
  return count > 0 ? T(1) / sqrt(T(count)) : T(0);
}

// Phase 2's step of z: lr e, or 0 for a user without implicit items (norm 0).
template <typename T>
FASTREC_HD T svdpp_implicit_sum_step(T step, T norm) {
  return norm != T(0) ? step : T(0);
}

// Phase 2, one factor f of a rating: g += e q; p, q as sgd_factor_step with p + z in q's step;
// z moves by z_step q.
template <typename T>
FASTREC_HD void svdpp_factor_step(T &p, T &q, T &g, T &z, T err, T step, T z_step, T shrink) {
  const T pz = p + z;
  g += err * q;
  p = shrink * p + step * q;
  z = z + z_step * q;
  q = shrink * q + step * pz;
}

// Phase 3's denominator for an item with n raters.
template <typename T>
FASTREC_HD T svdpp_implicit_denominator(T lr, T reg_implicit, int64_t n) {
  return T(1) + lr * reg_implicit * T(n);
}

// Phase 3, one factor of y_j given grad = sum_u norm_u g_u (summed in CSC order).
template <typename T>
FASTREC_HD T svdpp_implicit_step(T y, T grad, T lr, T denominator) {
  return (y + lr * grad) / denominator;
}

// (p + z) . q with sgd_lane_dot's 16 interleaved partial sums and pairwise reduction (the sums
// p + z rounded first), so the CUDA warp dot reproduces it bit for bit.
template <typename T>
FASTREC_HD T svdpp_lane_dot(const T *__restrict p, const T *__restrict z, const T *__restrict q,
                            int64_t k) {
  T acc[SGD_DOT_LANES];
  for (int l = 0; l < SGD_DOT_LANES; ++l) acc[l] = T(0);
  int64_t j = 0;
  for (; j + SGD_DOT_LANES <= k; j += SGD_DOT_LANES)
    for (int l = 0; l < SGD_DOT_LANES; ++l) acc[l] += (p[j + l] + z[j + l]) * q[j + l];
  for (int l = 0; j < k; ++j, ++l) acc[l] += (p[j] + z[j]) * q[j];
  for (int l = 0; l < 8; ++l) acc[l] += acc[l + 8];
  for (int l = 0; l < 4; ++l) acc[l] += acc[l + 4];
  for (int l = 0; l < 2; ++l) acc[l] += acc[l + 2];
  return acc[0] + acc[1];
}

}  // namespace fastrec
