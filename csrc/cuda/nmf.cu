// NMF multiplicative updates on the GPU: a warp per row of the factor being updated.
//
// Thread mapping: warp w of the grid takes rows w, w + n_warps, ... (grid-stride). For one row
// the warp works in two phases:
//   1. the sampled dense-dense product: two stored entries of the row at a time, in stored order,
//      each half-warp computes the dot product of the row's factors with one entry's column
//      factors (16 lanes, the CPU's fastrec::sgd_lane_dot order, reduced with __shfl_down_sync),
//      and lane 0 keeps what the update needs, entry by entry: the KL ratio x / max(wh, eps) or,
//      in observed mode, the dot (into a scratch array T[nnz]) and the bias residual sum;
//   2. the fused multiplicative update: lane l owns factors l, l + 32, ...; for each it sums the
//      numerator (and, in observed mode, the denominator) over the row's entries in stored order
//      and applies fastrec/nmf.h's step in place.
// Phase 2 of a factor reads only that factor and phase 1's results (the __syncwarp between the
// phases orders lane 0's scratch writes before the other lanes' reads), so rows update in place.
// The Frobenius full-mode denominator W (H H^T) couples every factor of a row; the launcher
// computes it with cuBLAS before the launch and passes it in (``den`` with a row stride of k);
// the KL denominator is H's column sums (row stride 0).
//
// Determinism: every sum runs in a fixed order (stored order over entries, the 16-lane tree
// within a dot), one warp owns each output row and lane 0 alone writes scratch, biases and loss
// partials; there are no atomics. Results therefore do not depend on the launch configuration
// or on scheduling, and repeat bit for bit. Compiled without FMA contraction (the loader's
// --fmad=false), the per-row arithmetic is the Cython generic path's operation for operation.
#include "fastrec/nmf.h"
#include "fastrec/sgd.h"

namespace fastrec {
namespace cuda {

constexpr int NMF_WARP = 32;
constexpr unsigned NMF_FULL_MASK = 0xffffffffu;

// The dot products of a row's factors p with the column factors of two stored entries, q0 and
// q1 (null when the row has no second entry left): half-warp h computes p . q_h in the CPU's order
// (fastrec::sgd_lane_dot: lane l of the half sums factors l, l + 16, ... in turn, then the 16
// partial sums are halved pairwise by __shfl_down_sync). Two entries per step keep every lane
// busy and two rows of `other` in flight. Every lane gets both results.
template <typename T>
__device__ __forceinline__ void nmf_pair_dots(const T *p, const T *q0, const T *q1, long long k,
                                              int lane, T &dot0, T &dot1) {
  static_assert(2 * SGD_DOT_LANES == NMF_WARP,
                "two of the CPU dot's lane groups must make a warp");
  const T *q = lane < SGD_DOT_LANES ? q0 : q1;
  T acc = T(0);
  if (q != nullptr)
    for (long long f = lane % SGD_DOT_LANES; f < k; f += SGD_DOT_LANES) acc += p[f] * q[f];
  // The halving tree of each half; the first lane of each half ends with its dot (other lanes
  // may add across the halves: their values are unused).
  for (int offset = SGD_DOT_LANES / 2; offset > 0; offset /= 2)
    acc += __shfl_down_sync(NMF_FULL_MASK, acc, offset);
  dot0 = __shfl_sync(NMF_FULL_MASK, acc, 0);
  dot1 = __shfl_sync(NMF_FULL_MASK, acc, SGD_DOT_LANES);
}

__device__ __forceinline__ long long nmf_first_warp() {
  return ((long long)blockIdx.x * blockDim.x + threadIdx.x) / NMF_WARP;
}

__device__ __forceinline__ long long nmf_n_warps() {
  return (long long)gridDim.x * blockDim.x / NMF_WARP;
}

// Full-matrix update (every entry of X counts) of the n_rows rows of factors [n_rows, k].
// beta 2: factor (r, f) steps with numerator sum_n data[n] other[indices[n], f] and denominator
// den[r * den_stride + f] (W (H H^T), den_stride = k). beta 1: phase 1 writes the KL ratio of
// every entry to ratios[nnz] and the numerator sums ratio * other; den is H's column sums
// (den_stride = 0). blockDim.x: a multiple of 32.
// `data` is not __restrict__: phase 2 reads through `weights`, which is `data` or `ratios`, and a
// restrict-qualified candidate lets the compiler read it through the non-coherent read-only path
// (ld.global.nc) while lane 0 writes `ratios`, so a warp could read a ratio line that a
// neighbouring row's warp left stale in L1 (tests/cuda/test_ptx_readonly.py keeps this fixed).
template <typename T, typename I>
__global__ void nmf_full_rows(const I *__restrict__ indptr, const I *__restrict__ indices,
                              const T *data, T *factors,
                              const T *__restrict__ other, const T *__restrict__ den,
                              long long den_stride, T *ratios, long long n_rows, long long k,
                              int beta, T l1, T l2) {
  const int lane = threadIdx.x % NMF_WARP;
  const T *weights = beta == 2 ? data : ratios;
  for (long long r = nmf_first_warp(); r < n_rows; r += nmf_n_warps()) {
    T *w = factors + r * k;
    const long long start = indptr[r], stop = indptr[r + 1];
    if (beta != 2) {
      for (long long n = start; n < stop; n += 2) {
        const bool pair = n + 1 < stop;
        T dot[2];
        nmf_pair_dots<T>(w, other + (long long)indices[n] * k,
                         pair ? other + (long long)indices[n + 1] * k : nullptr, k, lane, dot[0],
                         dot[1]);
        if (lane == 0) {
#pragma unroll
          for (int j = 0; j < 2; ++j)  // constant indices keep dot[] in registers
            if (j == 0 || pair) ratios[n + j] = nmf_kl_ratio<T>(data[n + j], dot[j]);
        }
      }
      __syncwarp();
    }
    for (long long f = lane; f < k; f += NMF_WARP) {
      T num = T(0);
      for (long long n = start; n < stop; ++n)
        num += weights[n] * other[(long long)indices[n] * k + f];
      const T value = w[f];
      w[f] = nmf_mu_step<T>(value, num,
                            nmf_regularised_denominator<T>(den[r * den_stride + f], value, l1,
                                                           l2));
    }
  }
}

// Observed-entries update of the n_rows rows of factors (and of bias when `biased`): phase 1
// writes dots[n] (beta 2) or the KL ratio (beta 1) for every stored entry and, when biased, sets
// bias[r] to its exact minimiser; phase 2 sums numerator and denominator over the row's entries
// and steps with penalties scaled by the row's count. Empty rows get zero factors (and bias).
// dots: T[nnz] scratch. blockDim.x: a multiple of 32.
template <typename T, typename I>
__global__ void nmf_observed_rows(const I *__restrict__ indptr, const I *__restrict__ indices,
                                  const T *__restrict__ data, T *factors,
                                  const T *__restrict__ other, T *bias,
                                  const T *__restrict__ other_bias, T *dots, long long n_rows,
                                  long long k, T global_mean, int beta, T l1, T l2, T reg_bias,
                                  int biased) {
  const int lane = threadIdx.x % NMF_WARP;
  for (long long r = nmf_first_warp(); r < n_rows; r += nmf_n_warps()) {
    T *w = factors + r * k;
    const long long start = indptr[r], stop = indptr[r + 1];
    const T count = T(stop - start);
    T residual_sum = T(0);
    for (long long n = start; n < stop; n += 2) {
      const bool pair = n + 1 < stop;
      T dot[2];
      nmf_pair_dots<T>(w, other + (long long)indices[n] * k,
                       pair ? other + (long long)indices[n + 1] * k : nullptr, k, lane, dot[0],
                       dot[1]);
      if (lane != 0) continue;
#pragma unroll
      for (int j = 0; j < 2; ++j) {  // entries n, n + 1 in stored order
        if (j == 1 && !pair) break;
        const long long e = n + j;
        dots[e] = beta == 2 ? dot[j] : nmf_kl_ratio<T>(data[e], dot[j]);
        if (biased) residual_sum += data[e] - global_mean - other_bias[indices[e]] - dot[j];
      }
    }
    T offset = T(0);
    if (biased) {
      T row_bias = T(0);
      if (lane == 0) {
        row_bias = nmf_bias_solve<T>(residual_sum, count, reg_bias);
        bias[r] = row_bias;
      }
      offset = global_mean + __shfl_sync(NMF_FULL_MASK, row_bias, 0);
    }
    __syncwarp();
    const T row_l1 = count * l1, row_l2 = count * l2;
    for (long long f = lane; f < k; f += NMF_WARP) {
      T num = T(0), den = T(0);
      for (long long n = start; n < stop; ++n) {
        const long long column = indices[n];
        const T h = other[column * k + f];
        if (beta == 2) {
          const T target = biased ? data[n] - offset - other_bias[column] : data[n];
          num += nmf_positive_part<T>(target) * h;
          den += (dots[n] + nmf_negative_part<T>(target)) * h;
        } else {
          num += dots[n] * h;
          den += h;
        }
      }
      const T value = w[f];
      w[f] = nmf_mu_step<T>(value, num,
                            nmf_regularised_denominator<T>(den, value, row_l1, row_l2));
    }
  }
}

// Per-row data term of the loss, in double, into row_loss[n_rows] (written by lane 0; the caller
// sums it). Full mode (observed == 0): Frobenius sum x^2 - 2 x wh, KL sum x log(x / wh) - x over
// the stored entries (the caller adds the dense terms from Gram matrices or column sums).
// Observed mode: Frobenius 1/2 sum (x - prediction)^2 (biases when `biased`), KL
// sum x log(x / wh) - x + wh. bias and other_bias are read only when `biased`.
template <typename T, typename I>
__global__ void nmf_loss_rows(const I *__restrict__ indptr, const I *__restrict__ indices,
                              const T *__restrict__ data, const T *__restrict__ factors,
                              const T *__restrict__ other, const T *__restrict__ bias,
                              const T *__restrict__ other_bias, double global_mean,
                              long long n_rows, long long k, int beta, int observed, int biased,
                              double *__restrict__ row_loss) {
  const int lane = threadIdx.x % NMF_WARP;
  for (long long r = nmf_first_warp(); r < n_rows; r += nmf_n_warps()) {
    const T *w = factors + r * k;
    const long long start = indptr[r], stop = indptr[r + 1];
    double total = 0.0;
    for (long long n = start; n < stop; n += 2) {
      const bool pair = n + 1 < stop;
      T dot_t[2];
      nmf_pair_dots<T>(w, other + (long long)indices[n] * k,
                       pair ? other + (long long)indices[n + 1] * k : nullptr, k, lane,
                       dot_t[0], dot_t[1]);
      if (lane != 0) continue;
#pragma unroll
      for (int j = 0; j < 2; ++j) {  // entries n, n + 1 in stored order
        if (j == 1 && !pair) break;
        const long long e = n + j;
        const double x = data[e];
        const double dot = dot_t[j];
        if (beta == 2) {
          if (observed) {
            const double pred =
                biased ? global_mean + bias[r] + other_bias[indices[e]] + dot : dot;
            total += 0.5 * (x - pred) * (x - pred);
          } else {
            total += x * x - 2.0 * x * dot;
          }
        } else {
          total += nmf_kl_entry(x, dot) + (observed ? dot : 0.0);
        }
      }
    }
    if (lane == 0) row_loss[r] = total;
  }
}

}  // namespace cuda
}  // namespace fastrec
