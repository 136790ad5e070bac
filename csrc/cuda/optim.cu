// Optimiser steps on the GPU: a dense step over a flat parameter vector and lazy (sparse) steps
// over the embedding rows a batch touched, for every model family (NCF, GRU4Rec). The optimiser
// is fastrec/optim.h's, the CPU kernels' own: make_optim_step computes the step scalars (in
// double, then cast to T) and optim_update steps one parameter.
//
// Thread mapping:
//   optim_dense_step     a thread per parameter (grid-stride loop); parameters are independent.
//   optim_sort_keys      a thread per batch position: key = row * n + position, so sorting the
//                        keys (any sort: they are distinct) lists each row's positions together
//                        and in position order. The launcher then finds each sorted position's
//                        run of equal rows, [run_start, run_end).
//   optim_sparse_pieces  pass 1, a warp per piece: a row's run is cut into pieces of
//                        OPTIM_PIECE positions from its start; the warp of a piece sums its
//                        gradients in position order (lanes own columns lane, lane + 32, ...).
//   optim_sparse_step    pass 2, a warp per run: sums the run's piece sums in order and updates
//                        the row once.
// A hot row repeated r times costs its pass-2 warp r / OPTIM_PIECE additions instead of r, and
// pass 1 spreads the rest over r / OPTIM_PIECE warps.
//
// Determinism: the pieces and the order of every sum depend only on the batch, never on the
// launch configuration or timing, and no float atomics are used: results repeat bit for bit.
// A run of at most OPTIM_PIECE positions is one piece summed in position order, the CPU kernels'
// order (both sides without FMA contraction), so such rows equal the CPU's bit for bit; longer
// runs add their piece sums, which rounds differently from the CPU's single running sum.
#include "fastrec/optim.h"

namespace fastrec {
namespace cuda {

constexpr int OPTIM_WARP = 32;
constexpr long long OPTIM_PIECE = 32;

__device__ __forceinline__ long long optim_first_warp() {
  return ((long long)blockIdx.x * blockDim.x + threadIdx.x) / OPTIM_WARP;
}

__device__ __forceinline__ long long optim_n_warps() {
  return (long long)gridDim.x * blockDim.x / OPTIM_WARP;
}

// One step of every parameter: params[j] with gradient grads[j] and state state1[j], state2[j]
// (state2 may alias state1 for Adagrad without momentum, and both are unused by SGD).
template <typename T>
__global__ void optim_dense_step(int kind, T *params, const T *__restrict__ grads, T *state1,
                                 T *state2, long long n, double lr, double beta1, double beta2,
                                 double eps, double momentum, long long step) {
  const OptimStep<T> s = make_optim_step<T>(kind, lr, beta1, beta2, eps, momentum, step);
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < n; j += stride)
    optim_update<T>(s, params[j], state1[j], state2[j], grads[j]);
}

// keys[p] = rows[p] * n + p: distinct, ordered by row then position.
template <typename I>
__global__ void optim_sort_keys(const I *__restrict__ rows, long long n,
                                long long *__restrict__ keys) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x; p < n; p += stride)
    keys[p] = (long long)rows[p] * n + p;
}

// Pass 1. sorted: the batch positions ordered by (row, position); run_start/run_end: the run
// of equal rows holding each sorted position. Every sorted position p with (p - run_start[p]) a
// multiple of OPTIM_PIECE starts a piece: partials[p] (T[n, d]; other rows are not written) =
// the sum of row_grads (T[n, d]) over the piece's positions, in order. blockDim.x: a multiple
// of 32.
template <typename T>
__global__ void optim_sparse_pieces(const long long *__restrict__ sorted,
                                    const long long *__restrict__ run_start,
                                    const long long *__restrict__ run_end, long long n,
                                    const T *__restrict__ row_grads, long long d,
                                    T *__restrict__ partials) {
  const int lane = threadIdx.x % OPTIM_WARP;
  for (long long p = optim_first_warp(); p < n; p += optim_n_warps()) {
    if ((p - run_start[p]) % OPTIM_PIECE != 0) continue;
    const long long end = p + OPTIM_PIECE < run_end[p] ? p + OPTIM_PIECE : run_end[p];
    for (long long f = lane; f < d; f += OPTIM_WARP) {
      T g = row_grads[sorted[p] * d + f];
      for (long long q = p + 1; q < end; ++q) g += row_grads[sorted[q] * d + f];
      partials[p * d + f] = g;
    }
  }
}

// Pass 2: the lazy step of table (T[n_rows, d]) for the rows of rows[0:n]; the warp at the
// start of each run adds the run's piece sums (pass 1's partials) in order and updates the row
// once. State arrays shaped like table, as in optim_dense_step. blockDim.x: a multiple of 32.
template <typename T, typename I>
__global__ void optim_sparse_step(int kind, T *table, long long d, const I *__restrict__ rows,
                                  const long long *__restrict__ sorted,
                                  const long long *__restrict__ run_start,
                                  const long long *__restrict__ run_end, long long n,
                                  const T *__restrict__ partials, T *state1, T *state2,
                                  double lr, double beta1, double beta2, double eps,
                                  double momentum, long long step) {
  const OptimStep<T> s = make_optim_step<T>(kind, lr, beta1, beta2, eps, momentum, step);
  const int lane = threadIdx.x % OPTIM_WARP;
  for (long long p = optim_first_warp(); p < n; p += optim_n_warps()) {
    if (run_start[p] != p) continue;
    const long long row = (long long)rows[sorted[p]], end = run_end[p];
    for (long long f = lane; f < d; f += OPTIM_WARP) {
      T g = partials[p * d + f];
      for (long long q = p + OPTIM_PIECE; q < end; q += OPTIM_PIECE) g += partials[q * d + f];
      optim_update<T>(s, table[row * d + f], state1[row * d + f], state2[row * d + f], g);
    }
  }
}

}  // namespace cuda
}  // namespace fastrec
