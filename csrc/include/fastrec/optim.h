// Per-parameter optimiser steps shared by every kernel that trains dense weights or embedding
// rows (NCF, GRU4Rec, ...). Each function updates one scalar parameter and its state in place;
// the loops over parameters, rows and threads live in the kernels.
//
// Conventions (the same as torch.optim, so results can be compared with PyTorch):
//   g already includes any L2 term (g += weight_decay * w is the caller's choice).
//   Adam at step t >= 1 (1-based):  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//     w -= step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps)
//   with step_size = lr / (1 - b1^t) and inv_sqrt_bc2 = 1 / sqrt(1 - b2^t); compute both once
//   per step with adam_step_size / adam_inv_sqrt_bc2 (double precision, then cast).
//   Lazy (sparse) Adam applies the same update only to rows present in the batch, with the
//   global step t (as torch.optim.SparseAdam).
//   Adagrad: acc += g^2;  w -= lr * g / (sqrt(acc) + eps).
//   SGD: w -= lr * g.
// Mirrors with the same names: fastrec/backends/numba/optim.py (Numba).
#pragma once

#if !defined(__CUDACC_RTC__)  // NVRTC has the math functions built in and no C headers
#include <math.h>
#endif

#include "fastrec/common.h"

namespace fastrec {

FASTREC_HD double adam_step_size(double lr, double beta1, int64_t step) {
  return lr / (1.0 - pow(beta1, (double)step));
}

FASTREC_HD double adam_inv_sqrt_bc2(double beta2, int64_t step) {
  return 1.0 / sqrt(1.0 - pow(beta2, (double)step));
}

template <typename T>
FASTREC_HD void adam_update(T &w, T &m, T &v, T g, T step_size, T inv_sqrt_bc2, T beta1, T beta2,
                            T eps) {
  m = beta1 * m + (T(1) - beta1) * g;
  v = beta2 * v + (T(1) - beta2) * g * g;
  w = w - step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps);
}

template <typename T>
FASTREC_HD void adagrad_update(T &w, T &acc, T g, T lr, T eps) {
  acc = acc + g * g;
  w = w - lr * g / (sqrt(acc) + eps);
}

template <typename T>
FASTREC_HD void sgd_update(T &w, T g, T lr) {
  w = w - lr * g;
}

}  // namespace fastrec
