// Warp-level pieces of the stratified SGD epochs on the GPU, shared by MF (csrc/cuda/sgd.cu) and
// SVD++ (csrc/cuda/svdpp.cu): a warp runs one block's ratings in stored order, its lanes owning
// factors lane, lane + 32, ...
#pragma once

#include "fastrec/sgd.h"

namespace fastrec {
namespace cuda {

constexpr int SGD_WARP = 32;
constexpr unsigned SGD_FULL_MASK = 0xffffffffu;

// One rating's error from the warp's dot product, then the bias step: lane 0 alone reads and
// writes the two biases (its own program order orders them) and broadcasts them, so every lane
// returns the same error; lane 0 adds its square to sse.
template <typename T>
__device__ __forceinline__ T sgd_warp_error(int lane, T rating, T global_mean, T dot,
                                            T *user_bias, T *item_bias, T lr_bias, T reg_bias,
                                            int biased, double &sse) {
  T ub = T(0), ib = T(0);
  if (lane == 0) {
    ub = *user_bias;
    ib = *item_bias;
  }
  ub = __shfl_sync(SGD_FULL_MASK, ub, 0);
  ib = __shfl_sync(SGD_FULL_MASK, ib, 0);
  const T err = sgd_error<T>(rating, global_mean, ub, ib, dot);
  if (lane == 0) {
    sse += (double)err * (double)err;
    if (biased) {
      *user_bias = sgd_bias_step<T>(ub, err, lr_bias, reg_bias);
      *item_bias = sgd_bias_step<T>(ib, err, lr_bias, reg_bias);
    }
  }
  return err;
}

}  // namespace cuda
}  // namespace fastrec
