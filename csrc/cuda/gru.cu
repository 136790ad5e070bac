// GRU4Rec on the GPU: the fused element-wise and reduction kernels around cuBLAS GEMMs.
//
// The launchers (fastrec/backends/cuda/gru.py) run every matrix product through the array
// module's matmul (cuBLAS under CuPy); these kernels own the rest. Per-element math comes from
// fastrec/gru.h, shared with the Cython kernels; this file only maps threads to elements and
// rows.
//
// Kernels and thread mapping (grid-stride loops, so any launch configuration is correct):
//   gru_gates_rz / gru_gates_n        a thread per (slot, unit) of one time step of one layer.
//       GRU4Rec applies the reset gate before the candidate's recurrent product, so a step is
//       hz = h Wh_rz (GEMM), gru_gates_rz (r, z, saved previous state, q = r * h),
//       nq = q Wh_n (GEMM), gru_gates_n (n and the new state): two gate launches per step.
//       A slot that starts a new sequence uses a zero previous state (its product is 0).
//   gru_grad_gates_zn / gru_grad_gates_r   the backward of one step, a thread per (slot, unit),
//       around the two transposed GEMMs (dq = dn Wh_n^T, dh_prev += drz Wh_rz^T).
//   gru_saved_states                  previous states and q of every step, rebuilt from a
//       forward pass's outputs (for the standalone gru_backward).
//   gru4rec_embed_rows<T, I>          a thread per element of the block's input rows: gathers
//       the embedding rows, applies embedding dropout (counter-based RNG of rng.h, the same
//       counters as every backend) and writes layer 0's input projection initialised with the
//       bias (or, without an embedding, the gathered row plus the bias).
//   gru_dropout                       a thread per element: x * mask, mask from rng.h.
//   gru4rec_draw_samples<I>           a thread per sample slot of a block: targets, then the
//       alias-table negatives of rng.h (stream negatives, counter step * n_sample + k).
//   gru4rec_loss_rows<T>              a thread block per score row (grid-stride over rows):
//       max, then the softmax sums (double) by per-thread strided partials and a fixed-shape
//       shared-memory tree, then every column's gradient written in place of its score. The
//       summation order depends only on blockDim.x, which the launcher fixes.
// The optimizer steps are optim.cu's kernels (fastrec/backends/cuda/optim.py's launchers).
//
// Determinism: no kernel here uses atomics or timing-dependent orders; every reduction has a
// fixed shape. Results repeat bit for bit for a given launch configuration (and cuBLAS
// configuration); they agree with the CPU backends to rounding (GEMM summation orders differ).
#include "fastrec/gru.h"
#include "fastrec/rng.h"

namespace fastrec {
namespace cuda {

// Threads per block of gru4rec_loss_rows: fixed in the launcher; the shared tree below assumes a
// power of two no larger than this.
constexpr int GRU_LOSS_MAX_THREADS = 256;
// The start of a max over scores (NVRTC has no INFINITY; scores are finite).
constexpr double GRU_LOWEST = -1.7976931348623157e308;

__device__ __forceinline__ long long gru_first_index() {
  return (long long)blockIdx.x * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ long long gru_stride() { return (long long)gridDim.x * blockDim.x; }

// ---- GRU forward, one step of one layer -------------------------------------------------------
// a [B][3H] input projections (bias included), hz [B][2H] = h Wh_rz, h [B][H] the state before
// the step (not yet reset), reset [B]. Writes gates r, z of [B][3H], prev [B][H] (the state the
// step reads: 0 after a reset) and q = r * prev [B][H].
template <typename T>
__global__ void gru_gates_rz(const T *__restrict__ a, const T *__restrict__ hz,
                             const T *__restrict__ h, const unsigned char *__restrict__ reset,
                             long long B, long long H, T *__restrict__ gates,
                             T *__restrict__ prev, T *__restrict__ q) {
  for (long long k = gru_first_index(); k < B * H; k += gru_stride()) {
    const long long b = k / H, j = k % H;
    const bool fresh = reset[b] != 0;
    const T p = fresh ? T(0) : h[k];
    const T *ab = a + b * 3 * H, *hzb = hz + b * 2 * H;
    const T r = gru_gate<T>(ab[j], fresh ? T(0) : hzb[j]);
    const T z = gru_gate<T>(ab[H + j], fresh ? T(0) : hzb[H + j]);
    gates[b * 3 * H + j] = r;
    gates[b * 3 * H + H + j] = z;
    prev[k] = p;
    q[k] = r * p;
  }
}

// nq [B][H] = q Wh_n. Writes gate n and the new state h_out [B][H].
template <typename T>
__global__ void gru_gates_n(const T *__restrict__ a, const T *__restrict__ nq,
                            const T *__restrict__ prev, long long B, long long H,
                            T *__restrict__ gates, T *__restrict__ h_out) {
  for (long long k = gru_first_index(); k < B * H; k += gru_stride()) {
    const long long b = k / H, j = k % H;
    T *g = gates + b * 3 * H;
    const T n = gru_candidate<T>(a[b * 3 * H + 2 * H + j], nq[k]);
    g[2 * H + j] = n;
    h_out[k] = gru_state<T>(prev[k], g[H + j], n);
  }
}

// ---- GRU backward, one step of one layer ------------------------------------------------------
// d_out [B][H]: gradient on this step's output from above; when has_next, the gradient on the
// next step's previous state is dh_part + dh_prod (its element-wise part and its GEMM part),
// zero where the next step reset the slot (reset_next [B]). Writes d = the total gradient on the
// step's output [B][H], the pre-activation gradients of z and n into dA [B][3H], dz into drz
// [B][2H] (columns H..2H) and dn into dn [B][H] (contiguous copies for the GEMMs).
template <typename T>
__global__ void gru_grad_gates_zn(const T *__restrict__ d_out, const T *__restrict__ dh_part,
                                  const T *__restrict__ dh_prod,
                                  const unsigned char *__restrict__ reset_next, int has_next,
                                  const T *__restrict__ gates, const T *__restrict__ prev,
                                  long long B, long long H, T *__restrict__ d,
                                  T *__restrict__ dA, T *__restrict__ drz, T *__restrict__ dn) {
  for (long long k = gru_first_index(); k < B * H; k += gru_stride()) {
    const long long b = k / H, j = k % H;
    const T carried = (has_next && reset_next[b] == 0) ? dh_part[k] + dh_prod[k] : T(0);
    const T dk = d_out[k] + carried;
    const T *g = gates + b * 3 * H;
    const T z = g[H + j], n = g[2 * H + j];
    const T gn = gru_grad_candidate<T>(dk, z, n);
    const T gz = gru_grad_update<T>(dk, z, n, prev[k]);
    d[k] = dk;
    dA[b * 3 * H + H + j] = gz;
    dA[b * 3 * H + 2 * H + j] = gn;
    drz[b * 2 * H + H + j] = gz;
    dn[k] = gn;
  }
}

// dq [B][H] = dn Wh_n^T. Writes the reset gate's pre-activation gradient into dA and drz
// (columns 0..H) and the element-wise part of the gradient on the previous state, dh_part.
template <typename T>
__global__ void gru_grad_gates_r(const T *__restrict__ dq, const T *__restrict__ d,
                                 const T *__restrict__ gates, const T *__restrict__ prev,
                                 long long B, long long H, T *__restrict__ dA,
                                 T *__restrict__ drz, T *__restrict__ dh_part) {
  for (long long k = gru_first_index(); k < B * H; k += gru_stride()) {
    const long long b = k / H, j = k % H;
    const T *g = gates + b * 3 * H;
    const T r = g[j], z = g[H + j];
    const T gr = gru_grad_reset<T>(dq[k], prev[k], r);
    dA[b * 3 * H + j] = gr;
    drz[b * 2 * H + j] = gr;
    dh_part[k] = gru_grad_state<T>(d[k], z, dq[k], r);
  }
}

// prev and q [L][steps][B][H] of a forward pass from h0 [L][B][H], hs [L][steps][B][H], gates
// [L][steps][B][3H] and reset [steps][B]: a thread per element.
template <typename T>
__global__ void gru_saved_states(const T *__restrict__ h0, const T *__restrict__ hs,
                                 const T *__restrict__ gates,
                                 const unsigned char *__restrict__ reset, long long L,
                                 long long steps, long long B, long long H, T *__restrict__ prev,
                                 T *__restrict__ q) {
  const long long per_layer = steps * B * H;
  for (long long k = gru_first_index(); k < L * per_layer; k += gru_stride()) {
    const long long l = k / per_layer, rest = k % per_layer;
    const long long t = rest / (B * H), b = rest / H % B, j = rest % H;
    const T src = t == 0 ? h0[(l * B + b) * H + j] : hs[k - B * H];
    const T p = reset[t * B + b] != 0 ? T(0) : src;
    prev[k] = p;
    q[k] = gates[(k / H) * 3 * H + j] * p;
  }
}

// ---- GRU4Rec epoch helpers --------------------------------------------------------------------
// Rows of one block: items [n_rows] index table [n_items][D]. X [n_rows][D] receives the rows
// times the embedding-dropout mask (element k of the block: counter first_counter + k; no
// dropout when p == 0); A0 [n_rows][3H] receives bias (embedded) or the row plus the bias.
template <typename T, typename I>
__global__ void gru4rec_embed_rows(const I *__restrict__ items, const T *__restrict__ table,
                                   long long n_rows, long long D, const T *__restrict__ bias,
                                   long long H3, int embedded, unsigned long long key,
                                   unsigned long long first_counter, double p, T keep,
                                   T *__restrict__ X, T *__restrict__ A0) {
  const long long width = D > H3 ? D : H3;
  for (long long k = gru_first_index(); k < n_rows * width; k += gru_stride()) {
    const long long row = k / width, f = k % width;
    const long long item = (long long)items[row];
    if (f < D) {
      T x = table[item * D + f];
      if (p > 0.0) {
        const double u = rng_uniform(rng_at(key, first_counter + (unsigned long long)(row * D + f)));
        x = x * (u >= p ? keep : T(0));
      }
      X[row * D + f] = x;
    }
    if (f < H3) A0[row * H3 + f] = embedded ? bias[f] : table[item * D + f] + bias[f];
  }
}

// out[k] = x[k] * mask_k (may alias x), mask_k = keep if rng_uniform(counter first + k) >= p
// else 0: inverted dropout with the counters of every backend.
template <typename T>
__global__ void gru_dropout(const T *x, long long n, unsigned long long key,
                            unsigned long long first_counter, double p, T keep, T *out) {
  for (long long k = gru_first_index(); k < n; k += gru_stride()) {
    const double u = rng_uniform(rng_at(key, first_counter + (unsigned long long)k));
    out[k] = x[k] * (u >= p ? keep : T(0));
  }
}

// samples [steps][B + K] of the block starting at step s0: the step's targets (targets
// [steps][B], already offset to the block), then K alias-table negatives.
template <typename I>
__global__ void gru4rec_draw_samples(const I *__restrict__ targets, long long steps, long long B,
                                     long long K, long long s0, unsigned long long key,
                                     const double *__restrict__ prob,
                                     const I *__restrict__ alias, long long n_items,
                                     I *__restrict__ samples) {
  const long long S = B + K;
  for (long long k = gru_first_index(); k < steps * S; k += gru_stride()) {
    const long long t = k / S, j = k % S;
    samples[k] = j < B ? targets[t * B + j]
                       : rng_alias_draw<I>(rng_at(key, (unsigned long long)((s0 + t) * K + j - B)),
                                           prob, alias, (unsigned long long)n_items);
  }
}

// Tree sum of blockDim.x doubles per quantity in shared memory (blockDim.x a power of two): the
// same pairing for every launch with that block size. Every thread of the block must call it.
template <int Q>
__device__ __forceinline__ void gru_block_sum(double (*part)[GRU_LOSS_MAX_THREADS]) {
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    __syncthreads();
    if ((int)threadIdx.x < half)
      for (int q = 0; q < Q; ++q) part[q][threadIdx.x] += part[q][threadIdx.x + half];
  }
  __syncthreads();
}

// Sampled-output loss of n_rows score rows of S columns; row i's target is column i % N (the
// rows of a step come in groups of N, their targets first among the samples). scores [n_rows][S]
// are replaced by grad_scale * dloss/dscore; row_loss [n_rows] receives each row's loss.
// loss: 0 cross-entropy (softmax over all S), 1 BPR-max, 2 TOP1-max (softmax over the row's
// negatives, GRU4Rec v2 score regularisation bpreg for BPR-max). The formulas are the CPU
// kernels' (gru_cpu.h output_loss): exponentials in T, sums in double.
template <typename T>
__global__ void gru4rec_loss_rows(T *scores, long long n_rows, long long N, long long S, int loss,
                                  T bpreg, T grad_scale, double *__restrict__ row_loss) {
  __shared__ double part[4][GRU_LOSS_MAX_THREADS];
  __shared__ double row_max;
  const bool neg_only = loss != 0;
  const int tid = threadIdx.x;
  for (long long row = blockIdx.x; row < n_rows; row += gridDim.x) {
    T *r = scores + row * S;
    const long long target = row % N;
    const T t = r[target];
    double mx = GRU_LOWEST;
    for (long long j = tid; j < S; j += blockDim.x) {
      const double v = (neg_only && j == target) ? GRU_LOWEST : (double)r[j];
      mx = v > mx ? v : mx;
    }
    part[0][tid] = mx;
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
      __syncthreads();
      if (tid < half && part[0][tid + half] > part[0][tid]) part[0][tid] = part[0][tid + half];
    }
    __syncthreads();
    if (tid == 0) row_max = part[0][0];
    __syncthreads();
    const T m = (T)row_max;
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    for (long long j = tid; j < S; j += blockDim.x) {
      const T keep = (neg_only && j == target) ? T(0) : T(1);
      const T e = keep * gru_exp<T>(r[j] - m);
      s0 += (double)e;
      if (loss == 1) {
        const T a = gru_sigmoid<T>(t - r[j]);
        s1 += (double)(e * a);
        s2 += (double)(e * a * (T(1) - a));
        s3 += (double)(e * r[j] * r[j]);
      } else if (loss == 2) {
        const T a = gru_sigmoid<T>(r[j] - t);
        const T v = gru_sigmoid<T>(r[j] * r[j]);
        s1 += (double)(e * (a + v));
        s2 += (double)(e * a * (T(1) - a));
      }
    }
    // part[0] is read above by thread 0 only before the barrier that published row_max.
    part[0][tid] = s0;
    part[1][tid] = s1;
    part[2][tid] = s2;
    part[3][tid] = s3;
    gru_block_sum<4>(part);
    const double Z = part[0][0];
    double P = 0.0, R = 0.0, dt = 0.0, row_total;
    if (loss == 0) {
      row_total = log(Z) + (double)m - (double)t;
    } else if (loss == 1) {
      P = part[1][0] / Z;
      R = part[3][0] / Z;
      row_total = -log(P + 1e-24) + (double)bpreg * R;
      dt = -(part[2][0] / Z) / (P + 1e-24);
    } else {
      P = part[1][0] / Z;
      row_total = P;
      dt = -(part[2][0] / Z);
    }
    // Every thread has read the sums: the next row may overwrite part.
    __syncthreads();
    if (tid == 0) row_loss[row] = row_total;
    for (long long j = tid; j < S; j += blockDim.x) {
      const T rj = r[j];
      const T keep = (neg_only && j == target) ? T(0) : T(1);
      const T s = keep * gru_exp<T>(rj - m) / (T)Z;
      T g;
      if (loss == 0)
        g = s - (j == target ? T(1) : T(0));
      else if (loss == 1)
        g = bpr_max_grad_negative<T>(s, gru_sigmoid<T>(t - rj), rj, (T)P, (T)R, bpreg);
      else
        g = top1_max_grad_negative<T>(s, gru_sigmoid<T>(rj - t), gru_sigmoid<T>(rj * rj), rj,
                                      (T)P);
      if (neg_only && j == target) g = (T)dt;
      r[j] = g * grad_scale;
    }
    // Thread 0 of the next row reads its target score only after every write of this row.
    __syncthreads();
  }
}

}  // namespace cuda
}  // namespace fastrec
