// The optimiser of every kernel that trains dense weights or embedding rows (NCF and GRU4Rec, on
// the CPU and on the GPU): the step scalars, computed once per step, and the update of one
// parameter and its state. The loops over parameters, rows and threads live in the kernels
// (optim_cpu.h for the CPU, csrc/cuda/optim.cu for the GPU).
//
// Conventions (the same as torch.optim, so results can be compared with PyTorch):
//   g already includes any L2 term (g += weight_decay * w is the caller's choice).
//   Adam at step t >= 1 (1-based):  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//     w -= step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps)
//   with step_size = lr / (1 - b1^t) and inv_sqrt_bc2 = 1 / sqrt(1 - b2^t), both computed in
//   double by make_optim_step, then cast.
//   Lazy (sparse) Adam applies the same update only to rows present in the batch, with the
//   global step t (as torch.optim.SparseAdam).
//   Adagrad: acc += g^2;  w -= lr * g / (sqrt(acc) + eps); GRU4Rec's variant with momentum > 0
//   feeds that step into a heavy-ball velocity: vel = momentum vel - lr g / (sqrt(acc) + eps);
//   w += vel.
//   SGD: w -= lr * g.
// Mirrors with the same names: fastrec/backends/numba/optim.py (Numba).
#pragma once

#if !defined(__CUDACC_RTC__)  // NVRTC has no C library headers (math is built in)
#include <math.h>
#endif

#include "fastrec/common.h"

namespace fastrec {

// The optimiser codes, as OPTIMIZERS in fastrec/backends/_contract.py (a test checks that they
// agree).
enum OptimizerKind { OPT_ADAM = 0, OPT_ADAGRAD = 1, OPT_SGD = 2 };

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
FASTREC_HD void adagrad_momentum_update(T &w, T &acc, T &vel, T g, T lr, T momentum, T eps) {
  acc = acc + g * g;
  vel = momentum * vel - lr * g / (sqrt(acc) + eps);
  w = w + vel;
}

template <typename T>
FASTREC_HD void sgd_update(T &w, T g, T lr) {
  w = w - lr * g;
}

// Scalars of one optimiser step in the parameters' type. step_size is Adam's bias-corrected
// rate and the learning rate of Adagrad and SGD; inv_sqrt_bc2 is 1 for them; momentum is
// Adagrad's (0: plain Adagrad).
template <typename T>
struct OptimStep {
  int kind;
  T step_size, inv_sqrt_bc2, beta1, beta2, eps, momentum;
};

template <typename T>
FASTREC_HD OptimStep<T> make_optim_step(int kind, double lr, double beta1, double beta2,
                                        double eps, double momentum, int64_t step) {
  OptimStep<T> s;
  s.kind = kind;
  s.step_size = (T)(kind == OPT_ADAM ? adam_step_size(lr, beta1, step) : lr);
  s.inv_sqrt_bc2 = (T)(kind == OPT_ADAM ? adam_inv_sqrt_bc2(beta2, step) : 1.0);
  s.beta1 = (T)beta1;
  s.beta2 = (T)beta2;
  s.eps = (T)eps;
  s.momentum = (T)momentum;
  return s;
}

// One step of parameter w with gradient g; s1/s2 are its state (Adam: m, v; Adagrad: the
// accumulator, and the velocity with momentum; SGD: unused).
template <typename T>
FASTREC_HD void optim_update(const OptimStep<T> &s, T &w, T &s1, T &s2, T g) {
  if (s.kind == OPT_ADAM)
    adam_update<T>(w, s1, s2, g, s.step_size, s.inv_sqrt_bc2, s.beta1, s.beta2, s.eps);
  else if (s.kind == OPT_ADAGRAD && s.momentum > T(0))
    adagrad_momentum_update<T>(w, s1, s2, g, s.step_size, s.momentum, s.eps);
  else if (s.kind == OPT_ADAGRAD)
    adagrad_update<T>(w, s1, g, s.step_size, s.eps);
  else
    sgd_update<T>(w, g, s.step_size);
}

// optim_update over n contiguous parameters; the kind is tested once so that each loop is a
// straight elementwise loop the compiler vectorises.
template <typename T>
FASTREC_HD void optim_update_range(const OptimStep<T> &s, T *__restrict__ w, T *__restrict__ s1,
                                   T *__restrict__ s2, const T *__restrict__ g, int64_t n) {
  if (s.kind == OPT_ADAM) {
    for (int64_t f = 0; f < n; ++f)
      adam_update<T>(w[f], s1[f], s2[f], g[f], s.step_size, s.inv_sqrt_bc2, s.beta1, s.beta2,
                     s.eps);
  } else if (s.kind == OPT_ADAGRAD && s.momentum > T(0)) {
    for (int64_t f = 0; f < n; ++f)
      adagrad_momentum_update<T>(w[f], s1[f], s2[f], g[f], s.step_size, s.momentum, s.eps);
  } else if (s.kind == OPT_ADAGRAD) {
    for (int64_t f = 0; f < n; ++f) adagrad_update<T>(w[f], s1[f], g[f], s.step_size, s.eps);
  } else {
    for (int64_t f = 0; f < n; ++f) sgd_update<T>(w[f], g[f], s.step_size);
  }
}

}  // namespace fastrec
