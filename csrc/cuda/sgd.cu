// SGD matrix factorisation on the GPU: one launch per stratum of the epoch schedule.
//
// Thread mapping: a warp owns one block of the stratum and runs its ratings in stored order; for
// each rating the 32 lanes share the k factors (lane l owns factors l, l + 32, ...), reduce the
// dot product with a butterfly of __shfl_xor_sync, and apply the update of fastrec/sgd.h to their
// own factors. The blocks of a stratum touch disjoint users and items, so the warps of a launch
// never write the same row: no atomics, no locks, and exactly the update sequence of sequential
// SGD. Concurrency comes from the G blocks of a stratum (one warp each), so the GPU wants a grid
// side G of several hundred on large data.
//
// Determinism: a lane always reads and writes the same factor slots, lane 0 alone reads and
// writes the biases, and the butterfly gives every lane the same bitwise sum, so results do not
// depend on the launch configuration or on timing and repeat bit for bit on one device.
#include "fastrec/sgd.h"

namespace fastrec {
namespace cuda {

constexpr int SGD_WARP = 32;
constexpr unsigned SGD_FULL_MASK = 0xffffffffu;

// Sum over the 32 lanes; the butterfly adds the same two values (swapped) on both partners of
// every step, so all lanes end with the bitwise same result.
template <typename T>
__device__ __forceinline__ T sgd_warp_sum(T value) {
  for (int offset = SGD_WARP / 2; offset > 0; offset /= 2)
    value += __shfl_xor_sync(SGD_FULL_MASK, value, offset);
  return value;
}

// One stratum: warp w of the grid runs blocks stratum[w], stratum[w + n_warps], ...
// (block id -1 means no block). block_sse[block] receives the block's sum of squared errors.
// Launch with blockDim.x a multiple of 32.
template <typename T, typename I>
__global__ void sgd_stratum(const I *__restrict__ users, const I *__restrict__ items,
                            const T *__restrict__ ratings, const long long *__restrict__ block_ptr,
                            const long long *__restrict__ stratum, long long width,
                            T *__restrict__ user_factors, T *__restrict__ item_factors,
                            T *__restrict__ user_bias, T *__restrict__ item_bias, long long k,
                            T global_mean, T lr, T lr_bias, T reg, T reg_bias, int biased,
                            double *__restrict__ block_sse) {
  const int lane = threadIdx.x % SGD_WARP;
  const long long first_warp = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / SGD_WARP;
  const long long n_warps = (long long)gridDim.x * blockDim.x / SGD_WARP;
  for (long long b = first_warp; b < width; b += n_warps) {
    const long long block = stratum[b];
    if (block < 0) continue;
    const long long end = block_ptr[block + 1];
    double sse = 0.0;
    for (long long n = block_ptr[block]; n < end; ++n) {
      const long long u = users[n], i = items[n];
      T *p = user_factors + u * k;
      T *q = item_factors + i * k;
      T partial = T(0);
      for (long long f = lane; f < k; f += SGD_WARP) partial += p[f] * q[f];
      const T dot = sgd_warp_sum(partial);
      // Lane 0 alone touches the biases, so its own program order orders their reads and writes.
      T ub = T(0), ib = T(0);
      if (lane == 0) {
        ub = user_bias[u];
        ib = item_bias[i];
      }
      ub = __shfl_sync(SGD_FULL_MASK, ub, 0);
      ib = __shfl_sync(SGD_FULL_MASK, ib, 0);
      const T err = sgd_error<T>(ratings[n], global_mean, ub, ib, dot);
      if (lane == 0) {
        sse += (double)err * (double)err;
        if (biased) {
          user_bias[u] = sgd_bias_step<T>(ub, err, lr_bias, reg_bias);
          item_bias[i] = sgd_bias_step<T>(ib, err, lr_bias, reg_bias);
        }
      }
      for (long long f = lane; f < k; f += SGD_WARP) sgd_factor_step<T>(p[f], q[f], err, lr, reg);
    }
    if (lane == 0) block_sse[block] = sse;
  }
}

}  // namespace cuda
}  // namespace fastrec
