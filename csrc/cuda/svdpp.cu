// SVD++ on the GPU: the three phases of fastrec/svdpp.h, a warp per row or per block.
//
// Thread mapping: phase 1 (svdpp_implicit_sums) and phase 3 (svdpp_implicit_update) give each
// user or item row to a warp whose lanes own factors lane, lane + 32, ...; every lane sums its
// factor over the row's list in list order, as the CPU does. Phase 2 (svdpp_stratum, one launch
// per stratum: the kernel boundary is the barrier) runs a block's ratings in stored order by one
// warp, as csrc/cuda/sgd.cu does for MF: the dot product (p + z) . q is summed in the CPU's
// 16-lane order, lane 0 alone touches the biases, and nothing is FMA-contracted, so the results
// equal a CPU kernel built with -ffp-contract=off bit for bit (float32 denormals aside: CuPy
// compiles with -ftz=true) and depend neither on the launch configuration nor on timing.
#include "fastrec/sgd_warp.h"
#include "fastrec/svdpp.h"

namespace fastrec {
namespace cuda {

__device__ __forceinline__ long long svdpp_first_warp() {
  return ((long long)blockIdx.x * blockDim.x + threadIdx.x) / SGD_WARP;
}

__device__ __forceinline__ long long svdpp_n_warps() {
  return (long long)gridDim.x * blockDim.x / SGD_WARP;
}

// Phase 1: norms[u], sums[u] = norm_u * sum_{j in N(u)} y_j, grads[u] = 0 for every user.
template <typename T, typename I>
__global__ void svdpp_implicit_sums(const long long *__restrict__ user_ptr,
                                    const I *__restrict__ user_items,
                                    const T *__restrict__ implicit, long long n_users,
                                    long long k, T *__restrict__ norms, T *__restrict__ sums,
                                    T *__restrict__ grads) {
  const int lane = threadIdx.x % SGD_WARP;
  for (long long u = svdpp_first_warp(); u < n_users; u += svdpp_n_warps()) {
    const T norm = svdpp_norm<T>(user_ptr[u + 1] - user_ptr[u]);
    if (lane == 0) norms[u] = norm;
    for (long long f = lane; f < k; f += SGD_WARP) {
      T s = T(0);
      for (long long n = user_ptr[u]; n < user_ptr[u + 1]; ++n)
        s += implicit[(long long)user_items[n] * k + f];
      sums[u * k + f] = s * norm;
      grads[u * k + f] = T(0);
    }
  }
}

// (p + z) . q in svdpp_lane_dot's order: lane l < SGD_DOT_LANES sums factors l, l + 16, ... in
// turn, then the partial sums are halved pairwise; every lane gets the result.
template <typename T>
__device__ __forceinline__ T svdpp_warp_dot(const T *p, const T *z, const T *q, long long k,
                                            int lane) {
  T acc = T(0);
  if (lane < SGD_DOT_LANES)
    for (long long f = lane; f < k; f += SGD_DOT_LANES) acc += (p[f] + z[f]) * q[f];
  for (int offset = SGD_DOT_LANES / 2; offset > 0; offset /= 2)
    acc += __shfl_down_sync(SGD_FULL_MASK, acc, offset);
  return __shfl_sync(SGD_FULL_MASK, acc, 0);
}

// Phase 2, one stratum: warp w runs the blocks in slots w, w + n_warps, ... (-1: no block);
// stratum_sse[b] receives the SSE of slot b. blockDim.x: a multiple of 32.
template <typename T, typename I>
__global__ void svdpp_stratum(const I *__restrict__ users, const I *__restrict__ items,
                              const T *__restrict__ ratings,
                              const long long *__restrict__ block_ptr,
                              const long long *__restrict__ stratum, long long width,
                              T *user_factors, T *item_factors, T *user_bias, T *item_bias,
                              const T *__restrict__ norms, T *sums, T *grads, long long k,
                              T global_mean,
                              T lr, T lr_bias, T reg, T reg_bias, int biased,
                              double *__restrict__ stratum_sse) {
  const int lane = threadIdx.x % SGD_WARP;
  const T shrink = sgd_shrink<T>(lr, reg);
  for (long long b = svdpp_first_warp(); b < width; b += svdpp_n_warps()) {
    const long long block = stratum[b];
    if (block < 0) continue;
    double sse = 0.0;
    for (long long n = block_ptr[block]; n < block_ptr[block + 1]; ++n) {
      const long long u = users[n], i = items[n];
      T *p = user_factors + u * k;
      T *q = item_factors + i * k;
      T *g = grads + u * k;
      T *z = sums + u * k;
      const T dot = svdpp_warp_dot<T>(p, z, q, k, lane);
      const T err = sgd_warp_error<T>(lane, ratings[n], global_mean, dot, user_bias + u,
                                      item_bias + i, lr_bias, reg_bias, biased, sse);
      const T step = sgd_step<T>(err, lr);
      const T z_step = svdpp_implicit_sum_step<T>(step, norms[u]);
      for (long long f = lane; f < k; f += SGD_WARP)
        svdpp_factor_step<T>(p[f], q[f], g[f], z[f], err, step, z_step, shrink);
      // The next dot reads factors that other lanes of the warp wrote: order those writes.
      __syncwarp();
    }
    if (lane == 0) stratum_sse[b] = sse;
  }
}

// Phase 3: y_j = (y_j + lr sum_{u in raters(j)} norm_u g_u) / (1 + lr reg_implicit n_j).
template <typename T, typename I>
__global__ void svdpp_implicit_update(const long long *__restrict__ item_ptr,
                                      const I *__restrict__ item_users,
                                      const T *__restrict__ norms, const T *__restrict__ grads,
                                      T *__restrict__ implicit, long long n_items, long long k,
                                      T lr, T reg_implicit) {
  const int lane = threadIdx.x % SGD_WARP;
  for (long long j = svdpp_first_warp(); j < n_items; j += svdpp_n_warps()) {
    const T denominator = svdpp_implicit_denominator<T>(lr, reg_implicit,
                                                        item_ptr[j + 1] - item_ptr[j]);
    for (long long f = lane; f < k; f += SGD_WARP) {
      T grad = T(0);
      for (long long n = item_ptr[j]; n < item_ptr[j + 1]; ++n) {
        const long long u = item_users[n];
        grad += norms[u] * grads[u * k + f];
      }
      implicit[j * k + f] = svdpp_implicit_step<T>(implicit[j * k + f], grad, lr, denominator);
    }
  }
}

}  // namespace cuda
}  // namespace fastrec
