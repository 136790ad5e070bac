// SGD matrix factorisation on the GPU: a warp per block of the G x G grid, a warp per rating.
//
// Thread mapping: a warp runs one block's ratings in stored order; for each rating its lanes
// compute the dot product in the CPU kernel's summation order (16 partial sums reduced with
// __shfl_down_sync), then the 32 lanes apply the update of fastrec/sgd.h to the k factors (lane
// l owns factors l, l + 32, ...). Without FMA contraction the arithmetic is the CPU's operation
// for operation, so results match a CPU kernel compiled without contraction bit for bit (float32
// denormals aside: CuPy compiles with -ftz=true).
//
// Order: a block runs only after the previous scheduled block on its user block and on its item
// block, so every factor row sees its updates in schedule order and blocks on disjoint rows and
// columns commute: the result is that of sequential SGD in schedule order (no Hogwild, no
// atomics on factors). Two drivers give that order:
//   sgd_dataflow  one launch per epoch: warps take the schedule's blocks as tickets in order and
//                 wait (spinning with __nanosleep) only for those two predecessors;
//   sgd_stratum   one launch per stratum (the kernel boundary is the barrier).
// Concurrency is at most G blocks at a time, so the GPU wants G of several hundred.
//
// Determinism: the summation order is fixed, lane 0 alone touches the biases, and every lane gets
// the same dot product by broadcast, so results depend neither on the launch configuration nor on
// timing, and repeat bit for bit.
#include "fastrec/sgd_warp.h"

namespace fastrec {
namespace cuda {

// The dot product in the CPU kernel's order (fastrec::sgd_lane_dot): lane l < SGD_DOT_LANES sums
// factors l, l + SGD_DOT_LANES, ... in turn, then the partial sums are halved pairwise. Compiled
// without FMA contraction (see the loader's options) it is bitwise the CPU's, on every lane.
template <typename T>
__device__ __forceinline__ T sgd_warp_dot(const T *p, const T *q, long long k, int lane) {
  static_assert(SGD_DOT_LANES <= SGD_WARP && (SGD_DOT_LANES & (SGD_DOT_LANES - 1)) == 0,
                "the CPU dot's lanes must be a power of two that fits in a warp");
  T acc = T(0);
  if (lane < SGD_DOT_LANES)
    for (long long f = lane; f < k; f += SGD_DOT_LANES) acc += p[f] * q[f];
  for (int offset = SGD_DOT_LANES / 2; offset > 0; offset /= 2)
    acc += __shfl_down_sync(SGD_FULL_MASK, acc, offset);
  return __shfl_sync(SGD_FULL_MASK, acc, 0);
}

// The ratings begin..end in stored order, by the whole warp; returns the SSE (valid in lane 0).
template <typename T, typename I>
__device__ __forceinline__ double sgd_warp_block(int lane, const I *__restrict__ users,
                                                 const I *__restrict__ items,
                                                 const T *__restrict__ ratings, long long begin,
                                                 long long end, T *user_factors, T *item_factors,
                                                 T *user_bias, T *item_bias, long long k,
                                                 T global_mean, T lr, T lr_bias, T reg,
                                                 T reg_bias, int biased) {
  double sse = 0.0;
  const T shrink = sgd_shrink<T>(lr, reg);
  // The next rating's coordinates load while this one computes: a warp's ratings form one
  // dependent chain, so its latency is the block's run time.
  long long u_next = begin < end ? (long long)users[begin] : 0;
  long long i_next = begin < end ? (long long)items[begin] : 0;
  T r_next = begin < end ? ratings[begin] : T(0);
  for (long long n = begin; n < end; ++n) {
    const long long u = u_next, i = i_next;
    const T rating = r_next;
    if (n + 1 < end) {
      u_next = users[n + 1];
      i_next = items[n + 1];
      r_next = ratings[n + 1];
    }
    T *p = user_factors + u * k;
    T *q = item_factors + i * k;
    const T dot = sgd_warp_dot<T>(p, q, k, lane);
    const T err = sgd_warp_error<T>(lane, rating, global_mean, dot, user_bias + u, item_bias + i,
                                    lr_bias, reg_bias, biased, sse);
    const T step = sgd_step<T>(err, lr);
    for (long long f = lane; f < k; f += SGD_WARP) sgd_factor_step<T>(p[f], q[f], step, shrink);
    // The dot reads factors that other lanes of the warp update: order those writes first.
    __syncwarp();
  }
  return sse;
}

// One stratum: warp w of the grid runs blocks stratum[w], stratum[w + n_warps], ... (block id -1
// means no block). stratum_sse[b] receives the SSE of slot b. blockDim.x: a multiple of 32.
template <typename T, typename I>
__global__ void sgd_stratum(const I *__restrict__ users, const I *__restrict__ items,
                            const T *__restrict__ ratings, const long long *__restrict__ block_ptr,
                            const long long *__restrict__ stratum, long long width,
                            T *user_factors, T *item_factors, T *user_bias, T *item_bias,
                            long long k, T global_mean, T lr, T lr_bias, T reg, T reg_bias,
                            int biased, double *__restrict__ stratum_sse) {
  const int lane = threadIdx.x % SGD_WARP;
  const long long first_warp = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / SGD_WARP;
  const long long n_warps = (long long)gridDim.x * blockDim.x / SGD_WARP;
  for (long long b = first_warp; b < width; b += n_warps) {
    const long long block = stratum[b];
    if (block < 0) continue;
    const double sse = sgd_warp_block<T, I>(lane, users, items, ratings, block_ptr[block],
                                            block_ptr[block + 1], user_factors, item_factors,
                                            user_bias, item_bias, k, global_mean, lr, lr_bias,
                                            reg, reg_bias, biased);
    if (lane == 0) stratum_sse[b] = sse;
  }
}

// Where each row block and column block appears in the schedule: row_ticket[s * grid + r] is the
// ticket (flat schedule index) of stratum s on user block r; both tables come in filled with -1.
// A stratum holds each row and column block at most once (the contract's conflict-freedom).
__global__ void sgd_dataflow_positions(const long long *__restrict__ schedule, long long n_tickets,
                                       long long width, long long grid,
                                       long long *__restrict__ row_ticket,
                                       long long *__restrict__ col_ticket) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < n_tickets;
       t += stride) {
    const long long block = schedule[t];
    if (block < 0) continue;
    const long long stratum = t / width;
    row_ticket[stratum * grid + block / grid] = t;
    col_ticket[stratum * grid + block % grid] = t;
  }
}

// The latest ticket on `line` in a stratum before `stratum`, or -1: the warp looks at 32 strata
// at a time (lane l at stratum - 1 - l) and takes the lowest lane that found one.
__device__ __forceinline__ long long sgd_previous_ticket(const long long *__restrict__ table,
                                                         long long stratum, long long grid,
                                                         long long line, int lane) {
  for (long long first = stratum - 1; first >= 0; first -= SGD_WARP) {
    const long long s = first - lane;
    const long long ticket = s >= 0 ? table[s * grid + line] : -1;
    const unsigned found = __ballot_sync(SGD_FULL_MASK, ticket >= 0);
    if (found) return __shfl_sync(SGD_FULL_MASK, ticket, __ffs((int)found) - 1);
  }
  return -1;
}

// Every lane spins until `ticket` is done, then fences (acquire) before reading its rows.
__device__ __forceinline__ void sgd_wait_for(const int *done, long long ticket) {
  if (ticket < 0) return;
  while (*(const volatile int *)(done + ticket) == 0) __nanosleep(100);
  __threadfence();
}

// One epoch in dataflow order. Warps take tickets 0, 1, ... from *next_ticket in schedule order;
// ticket t (block schedule[t] of stratum t / width) waits for the previous tickets on its user
// block and on its item block, runs the block, and sets done[t]. A ticket waits only on smaller
// tickets, which running warps hold, so any grid size makes progress. done and *next_ticket come
// in zeroed; row_ticket and col_ticket from sgd_dataflow_positions; ticket_sse[t] receives the
// SSE of ticket t (a block may appear in several strata). blockDim.x: a multiple of 32.
template <typename T, typename I>
__global__ void sgd_dataflow(const I *__restrict__ users, const I *__restrict__ items,
                             const T *__restrict__ ratings,
                             const long long *__restrict__ block_ptr,
                             const long long *__restrict__ schedule, long long n_tickets,
                             long long width, long long grid,
                             const long long *__restrict__ row_ticket,
                             const long long *__restrict__ col_ticket, int *done,
                             unsigned long long *next_ticket, T *user_factors, T *item_factors,
                             T *user_bias, T *item_bias, long long k, T global_mean, T lr,
                             T lr_bias, T reg, T reg_bias, int biased,
                             double *__restrict__ ticket_sse) {
  const int lane = threadIdx.x % SGD_WARP;
  for (;;) {
    unsigned long long taken = 0;
    if (lane == 0) taken = atomicAdd(next_ticket, 1ull);
    const long long ticket = (long long)__shfl_sync(SGD_FULL_MASK, taken, 0);
    if (ticket >= n_tickets) break;
    const long long block = schedule[ticket];
    if (block < 0) continue;  // no later ticket waits for an empty slot
    const long long stratum = ticket / width;
    const long long after_row = sgd_previous_ticket(row_ticket, stratum, grid, block / grid, lane);
    const long long after_col = sgd_previous_ticket(col_ticket, stratum, grid, block % grid, lane);
    // Empty blocks wait too: successors rely on them to order the rows transitively.
    sgd_wait_for(done, after_row);
    sgd_wait_for(done, after_col);
    const double sse = sgd_warp_block<T, I>(lane, users, items, ratings, block_ptr[block],
                                            block_ptr[block + 1], user_factors, item_factors,
                                            user_bias, item_bias, k, global_mean, lr, lr_bias,
                                            reg, reg_bias, biased);
    // Release: every lane's writes, then the flag (the threadFenceReduction pattern).
    __threadfence();
    __syncwarp();
    if (lane == 0) {
      ticket_sse[ticket] = sse;
      atomicExch(done + ticket, 1);
    }
  }
}

}  // namespace cuda
}  // namespace fastrec
