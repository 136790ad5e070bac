// Optimiser steps on the GPU: a dense step over a flat parameter vector and lazy (sparse) steps
// over the embedding rows a batch touched. The per-parameter math is fastrec/optim.h's (the CPU
// kernels' adam_update / adagrad_update / sgd_update); the step scalars come from its
// adam_step_size / adam_inv_sqrt_bc2 in double, then cast to T, as the CPU's make_step_scalars.
//
// Thread mapping:
//   optim_dense_step   a thread per parameter (grid-stride loop); parameters are independent.
//   optim_sort_keys    a thread per batch position: key = row * n + position, so sorting the
//                      keys (any sort: they are distinct) lists each row's positions together and
//                      in position order.
//   optim_sparse_step  a warp per position of the sorted order; only the warp at the first
//                      position of a row's run works: its lanes own columns lane, lane + 32, ...,
//                      sum the run's gradients in position order and update the row once.
//
// Determinism: every row is owned by one warp and every column by one lane, the duplicate
// gradients are summed in position order (the reference's np.add.at order and the CPU's chain
// order), and no float atomics are used, so the result is independent of the launch
// configuration and of timing, repeats bit for bit, and equals the CPU kernels' bit for bit
// (both avoid FMA contraction).
#include "fastrec/optim.h"

namespace fastrec {
namespace cuda {

// The codes of OptimizerKind in fastrec/optim_cpu.h (NCF_LAYOUT_DOC's optimizer codes).
constexpr int OPTIM_ADAM = 0;
constexpr int OPTIM_ADAGRAD = 1;
constexpr int OPTIM_WARP = 32;

template <typename T>
struct OptimStep {
  int kind;
  T step_size, inv_sqrt_bc2, beta1, beta2, eps;
};

template <typename T>
__device__ __forceinline__ OptimStep<T> optim_step_scalars(int kind, double lr, double beta1,
                                                           double beta2, double eps,
                                                           long long step) {
  OptimStep<T> s;
  s.kind = kind;
  s.step_size = (T)(kind == OPTIM_ADAM ? adam_step_size(lr, beta1, step) : lr);
  s.inv_sqrt_bc2 = (T)(kind == OPTIM_ADAM ? adam_inv_sqrt_bc2(beta2, step) : 1.0);
  s.beta1 = (T)beta1;
  s.beta2 = (T)beta2;
  s.eps = (T)eps;
  return s;
}

// One parameter: Adam (state1 = m, state2 = v), Adagrad (state1 = accumulator) or SGD.
template <typename T>
__device__ __forceinline__ void optim_apply(const OptimStep<T> &s, T *w, T *state1, T *state2,
                                            T g) {
  T weight = *w;
  if (s.kind == OPTIM_ADAM) {
    T m = *state1, v = *state2;
    adam_update<T>(weight, m, v, g, s.step_size, s.inv_sqrt_bc2, s.beta1, s.beta2, s.eps);
    *state1 = m;
    *state2 = v;
  } else if (s.kind == OPTIM_ADAGRAD) {
    T acc = *state1;
    adagrad_update<T>(weight, acc, g, s.step_size, s.eps);
    *state1 = acc;
  } else {
    sgd_update<T>(weight, g, s.step_size);
  }
  *w = weight;
}

// One step of every parameter: params[j] with gradient grads[j] and state state1[j], state2[j]
// (state2 may alias state1 for Adagrad, and both are unused by SGD).
template <typename T>
__global__ void optim_dense_step(int kind, T *params, const T *__restrict__ grads, T *state1,
                                 T *state2, long long n, double lr, double beta1, double beta2,
                                 double eps, long long step) {
  const OptimStep<T> s = optim_step_scalars<T>(kind, lr, beta1, beta2, eps, step);
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < n; j += stride)
    optim_apply<T>(s, params + j, state1 + j, state2 + j, grads[j]);
}

// keys[p] = rows[p] * n + p: distinct, ordered by row then position.
template <typename I>
__global__ void optim_sort_keys(const I *__restrict__ rows, long long n,
                                long long *__restrict__ keys) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x; p < n; p += stride)
    keys[p] = (long long)rows[p] * n + p;
}

// The lazy step of table (T[n_rows, d]) for the rows of rows[0:n] with per-position gradients
// row_grads (T[n, d], read only). sorted: the positions ordered by (row, position), e.g. the
// argsort of optim_sort_keys. blockDim.x: a multiple of 32.
template <typename T, typename I>
__global__ void optim_sparse_step(int kind, T *table, long long d, const I *__restrict__ rows,
                                  const long long *__restrict__ sorted, long long n,
                                  const T *__restrict__ row_grads, T *state1, T *state2,
                                  double lr, double beta1, double beta2, double eps,
                                  long long step) {
  const OptimStep<T> s = optim_step_scalars<T>(kind, lr, beta1, beta2, eps, step);
  const int lane = threadIdx.x % OPTIM_WARP;
  const long long n_warps = (long long)gridDim.x * blockDim.x / OPTIM_WARP;
  for (long long first = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / OPTIM_WARP;
       first < n; first += n_warps) {
    const long long row = (long long)rows[sorted[first]];
    if (first > 0 && (long long)rows[sorted[first - 1]] == row) continue;  // not the run's start
    long long end = first + 1;
    while (end < n && (long long)rows[sorted[end]] == row) ++end;
    T *w = table + row * d;
    T *s1 = state1 + row * d;
    T *s2 = state2 + row * d;
    for (long long f = lane; f < d; f += OPTIM_WARP) {
      T g = row_grads[sorted[first] * d + f];
      for (long long q = first + 1; q < end; ++q) g += row_grads[sorted[q] * d + f];
      optim_apply<T>(s, w + f, s1 + f, s2 + f, g);
    }
  }
}

}  // namespace cuda
}  // namespace fastrec
