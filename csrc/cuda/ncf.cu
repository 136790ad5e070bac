// NCF (GMF, MLP, NeuMF) passes on the GPU: the fused kernels around the dense layers' GEMMs
// (which the launcher runs with cuBLAS through xp.matmul). Layouts: NCF_LAYOUT_DOC in
// fastrec/backends/_contract.py; math (activations, losses, the negative draw): fastrec/ncf.h.
//
// Thread mapping:
//   ncf_gather_pairs / ncf_sample_gather  a warp per batch row: the row's sample (for the epoch:
//       its user, its positive or its negative, drawn by 32 lanes testing 32 candidates at once
//       and taking the lowest unseen one, so the draw is the sequential rule's), then the lanes
//       gather the embedding columns into the cache (GMF products, MLP input).
//   ncf_bias_relu    a thread per activation: y = relu(y + b) after the GEMM y = x W.
//   ncf_score        a warp per row: the output logit (lanes' partial sums, shuffle tree), the
//       loss and d loss / d logit on lane 0, then the lanes write the GMF embedding gradients
//       and the top MLP layer's delta.
//   ncf_output_grads, ncf_relu_bias_grad, then ncf_column_sums  column reductions over the
//       batch in two passes, so the batch's rows spread over many blocks: pass 1 cuts the rows
//       into chunks of NCF_CHUNK_ROWS and gives each (32-column tile, chunk) a 32 x 8 block:
//       thread (x, y) sums the chunk's rows y, y + 8, ... of column x in order, thread (x, 0)
//       adds the eight partial sums in order into partial[chunk, column]; pass 2, a thread per
//       column, adds the chunks' sums in chunk order (no atomics). A batch of at most
//       NCF_CHUNK_ROWS rows sums exactly as the former one-pass kernels did.
//   ncf_split_mlp_grads  a thread per element: the MLP input's gradient into the embedding
//       gradients' MLP columns.
//   ncf_project_nonnegative  a thread per (batch row, rating-term GMF column): max(0, .) of the
//       rows a step updated (rows repeated in a batch write the same value).
//
// Embedding rows are `stride` wide: the GMF and MLP columns (d = n_gmf + n_mlp), then, for the
// joint model, the rating bias in column d (stride = d + 1).
//
// Determinism: every output element is written by one thread in a fixed order that depends only
// on blockDim and the chunk size (fixed by the launcher and NCF_CHUNK_ROWS), never on the grid
// or on timing, and there are no atomics: a pass repeats bit for bit (the GEMMs are cuBLAS's, deterministic for given shapes on a given GPU).
#include "fastrec/ncf.h"

namespace fastrec {
namespace cuda {

constexpr int NCF_WARP = 32;
constexpr unsigned NCF_FULL_MASK = 0xffffffffu;
// Column-reduction tile: NCF_TILE_COLS columns by NCF_TILE_ROWS row groups (blockDim).
constexpr int NCF_TILE_COLS = 32;
constexpr int NCF_TILE_ROWS = 8;
// Rows per chunk of the column reductions' first pass (a multiple of NCF_TILE_ROWS; the
// launcher's CHUNK_ROWS): each thread sums 4 rows per chunk, and a batch of 1024 rows gives 32
// chunks, so even a layer of 32 columns fills 32 blocks instead of one.
constexpr long long NCF_CHUNK_ROWS = 32;
static_assert(NCF_CHUNK_ROWS % NCF_TILE_ROWS == 0, "a chunk must be whole tile rows");

// Gathers row r's embeddings: gmf[r] = p_u * q_i (GMF columns), x0[r] = [p_u ; q_i] (MLP
// columns). gmf is the cache's GMF block [batch, n_gmf], x0 its MLP input block [batch, 2 n_mlp].
template <typename T>
__device__ __forceinline__ void ncf_warp_gather(int lane, long long r, long long u, long long i,
                                                const T *__restrict__ user_emb,
                                                const T *__restrict__ item_emb, long long n_gmf,
                                                long long n_mlp, long long stride,
                                                T *__restrict__ gmf, T *__restrict__ x0) {
  const T *pu = user_emb + u * stride;
  const T *qi = item_emb + i * stride;
  for (long long f = lane; f < n_gmf; f += NCF_WARP) gmf[r * n_gmf + f] = pu[f] * qi[f];
  for (long long f = lane; f < n_mlp; f += NCF_WARP) {
    x0[r * 2 * n_mlp + f] = pu[n_gmf + f];
    x0[r * 2 * n_mlp + n_mlp + f] = qi[n_gmf + f];
  }
}

// The cache's first blocks for given pairs (ncf_forward). blockDim.x: a multiple of 32.
template <typename T, typename I>
__global__ void ncf_gather_pairs(const I *__restrict__ users, const I *__restrict__ items,
                                 long long batch, const T *__restrict__ user_emb,
                                 const T *__restrict__ item_emb, long long n_gmf,
                                 long long n_mlp, long long stride, T *__restrict__ gmf,
                                 T *__restrict__ x0) {
  const int lane = threadIdx.x % NCF_WARP;
  const long long n_warps = (long long)gridDim.x * blockDim.x / NCF_WARP;
  for (long long r = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / NCF_WARP; r < batch;
       r += n_warps)
    ncf_warp_gather<T>(lane, r, (long long)users[r], (long long)items[r], user_emb, item_emb,
                       n_gmf, n_mlp, stride, gmf, x0);
}

// Is `item` in the sorted list seen[0:n]?
template <typename I>
__device__ __forceinline__ bool ncf_seen(const I *__restrict__ seen, long long n, long long item) {
  long long lo = 0, hi = n;
  while (lo < hi) {
    const long long mid = lo + (hi - lo) / 2;
    if ((long long)seen[mid] < item)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < n && (long long)seen[lo] == item;
}

// Negative `negative` of the epoch for user u (NCF_TRAIN_EPOCH_DOC): the first of the
// NCF_NEGATIVE_TRIES candidates the user has not seen, else the last. Lane l tests candidates
// l, l + 32, ...; the warp takes the lowest unseen candidate of the first round that has one.
template <typename I>
__device__ __forceinline__ long long ncf_warp_negative(int lane, uint64_t key, long long negative,
                                                       long long u,
                                                       const long long *__restrict__ seen_indptr,
                                                       const I *__restrict__ seen_indices,
                                                       long long n_items) {
  const I *seen = seen_indices + seen_indptr[u];
  const long long n_seen = seen_indptr[u + 1] - seen_indptr[u];
  long long item = 0;
  for (long long base = 0; base < NCF_NEGATIVE_TRIES; base += NCF_WARP) {
    const long long t = base + lane;
    const bool valid = t < NCF_NEGATIVE_TRIES;
    const long long candidate = valid ? ncf_negative_candidate(key, negative, t, n_items) : 0;
    const unsigned unseen =
        __ballot_sync(NCF_FULL_MASK, valid && !ncf_seen<I>(seen, n_seen, candidate));
    const long long last = base + NCF_WARP <= NCF_NEGATIVE_TRIES
                               ? NCF_WARP - 1
                               : NCF_NEGATIVE_TRIES - 1 - base;  // the last valid lane
    const int source = unseen ? __ffs((int)unseen) - 1 : (int)last;
    item = __shfl_sync(NCF_FULL_MASK, candidate, source);
    if (unseen) break;
  }
  return item;
}

// One training batch's samples (slots order[0:batch], NCF_TRAIN_EPOCH_DOC) and the cache's first
// blocks. Writes b_users, b_items, b_targets [batch]; with_rating: also b_ratings and b_weights
// [batch] of the rating term (pos_ratings[p] and rating_weight for a positive, zeros for a
// negative). blockDim.x: a multiple of 32.
template <typename T, typename I>
__global__ void ncf_sample_gather(const I *__restrict__ pos_users, const I *__restrict__ pos_items,
                                  const T *__restrict__ pos_targets,
                                  const long long *__restrict__ seen_indptr,
                                  const I *__restrict__ seen_indices,
                                  const long long *__restrict__ order, long long batch,
                                  long long n_negatives, unsigned long long seed, long long epoch,
                                  const T *__restrict__ user_emb, const T *__restrict__ item_emb,
                                  long long n_items, long long n_gmf, long long n_mlp,
                                  long long stride, int with_rating,
                                  const T *__restrict__ pos_ratings, T rating_weight,
                                  I *__restrict__ b_users, I *__restrict__ b_items,
                                  T *__restrict__ b_targets, T *__restrict__ b_ratings,
                                  T *__restrict__ b_weights, T *__restrict__ gmf,
                                  T *__restrict__ x0) {
  const int lane = threadIdx.x % NCF_WARP;
  const long long n_warps = (long long)gridDim.x * blockDim.x / NCF_WARP;
  const uint64_t key = rng_key((uint64_t)seed, (uint64_t)epoch);
  const long long group = n_negatives + 1;
  for (long long r = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / NCF_WARP; r < batch;
       r += n_warps) {
    const long long slot = order[r], p = slot / group, j = slot % group;
    const long long u = (long long)pos_users[p];
    long long i;
    T target;
    if (j == 0) {
      i = (long long)pos_items[p];
      target = pos_targets[p];
    } else {
      i = ncf_warp_negative<I>(lane, key, p * n_negatives + j - 1, u, seen_indptr, seen_indices,
                               n_items);
      target = T(0);
    }
    if (lane == 0) {
      b_users[r] = (I)u;
      b_items[r] = (I)i;
      b_targets[r] = target;
      if (with_rating) {
        b_ratings[r] = j == 0 ? pos_ratings[p] : T(0);
        b_weights[r] = j == 0 ? rating_weight : T(0);
      }
    }
    ncf_warp_gather<T>(lane, r, u, i, user_emb, item_emb, n_gmf, n_mlp, stride, gmf, x0);
  }
}

// y[r, j] = relu(y[r, j] + b[j]) over y [rows, cols] (the GEMM x W already in y).
template <typename T>
__global__ void ncf_bias_relu(T *__restrict__ y, const T *__restrict__ b, long long rows,
                              long long cols) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  const long long n = rows * cols;
  for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += stride)
    y[k] = ncf_relu<T>(y[k] + b[k % cols]);
}

// Sum over the warp, in a fixed tree; every lane gets the total.
template <typename T>
__device__ __forceinline__ T ncf_warp_sum(T value) {
  for (int offset = NCF_WARP / 2; offset > 0; offset /= 2)
    value += __shfl_down_sync(NCF_FULL_MASK, value, offset);
  return __shfl_sync(NCF_FULL_MASK, value, 0);
}

// The output layer of each row, a warp per row. h: the output weights [n_gmf + last] followed by
// the output bias. gmf: the cache's GMF block; act: the top MLP block [batch, last] (null when
// last = 0). Arrays a call does not use may be any valid pointer.
//   with_logit: logits[r] = h . [gmf[r] ; act[r]] + b_out.
//   with_loss: with the logit of logits[r], row_loss[r] = loss (double), dz[r] = scale *
//     d loss / d z, the GMF columns of user_grads / item_grads [batch, stride] and
//     d_last[r] = dz[r] h[n_gmf:] (the top MLP layer's gradient, [batch, last]); with_rating
//     adds the rating term of rows with rating_weights[r] != 0 (NCF_BACKWARD_DOC; over the first
//     n_rating GMF columns) to the loss and those columns' gradients; with a bias column
//     (stride > n_gmf + n_mlp) its gradient too.
// blockDim.x: a multiple of 32.
template <typename T, typename I>
__global__ void ncf_score(const I *__restrict__ users, const I *__restrict__ items,
                          const T *__restrict__ targets, long long batch,
                          const T *__restrict__ user_emb, const T *__restrict__ item_emb,
                          const T *__restrict__ h, long long n_gmf, long long n_mlp,
                          long long stride, long long last, const T *__restrict__ gmf,
                          const T *__restrict__ act, int with_logit, int with_loss, int loss_kind,
                          int with_rating, const T *__restrict__ ratings,
                          const T *__restrict__ rating_weights, T rating_mean, T rating_reg,
                          long long n_rating, T scale,
                          T *__restrict__ logits,
                          double *__restrict__ row_loss, T *__restrict__ dz,
                          T *__restrict__ d_last, T *__restrict__ user_grads,
                          T *__restrict__ item_grads) {
  const int lane = threadIdx.x % NCF_WARP;
  const long long n_warps = (long long)gridDim.x * blockDim.x / NCF_WARP;
  const long long d = n_gmf + n_mlp;
  for (long long r = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / NCF_WARP; r < batch;
       r += n_warps) {
    T z;
    if (with_logit) {
      T partial = T(0);
      for (long long f = lane; f < n_gmf; f += NCF_WARP) partial += h[f] * gmf[r * n_gmf + f];
      for (long long j = lane; j < last; j += NCF_WARP) partial += h[n_gmf + j] * act[r * last + j];
      z = ncf_warp_sum<T>(partial) + h[n_gmf + last];
      if (lane == 0) logits[r] = z;
    } else {
      z = logits[r];
    }
    if (!with_loss) continue;
    const T y = targets[r];
    const T g = ncf_loss_grad<T>(loss_kind, z, y) * scale;
    if (lane == 0) {
      row_loss[r] = (double)ncf_loss<T>(loss_kind, z, y);
      dz[r] = g;
    }
    const T *pu = user_emb + (long long)users[r] * stride;
    const T *qi = item_emb + (long long)items[r] * stride;
    for (long long f = lane; f < n_gmf; f += NCF_WARP) {
      const T t = g * h[f];
      user_grads[r * stride + f] = t * qi[f];
      item_grads[r * stride + f] = t * pu[f];
    }
    T user_bias_grad = T(0), item_bias_grad = T(0);
    if (with_rating && rating_weights[r] != T(0)) {  // warp-uniform: one row per warp
      const T w = rating_weights[r], y_r = ratings[r];
      T partial = T(0), squares = T(0);
      for (long long f = lane; f < n_rating; f += NCF_WARP) {
        partial += gmf[r * n_gmf + f];
        squares += pu[f] * pu[f] + qi[f] * qi[f];
      }
      const T pred = rating_mean + pu[d] + qi[d] + ncf_warp_sum<T>(partial);
      squares = ncf_warp_sum<T>(squares) + pu[d] * pu[d] + qi[d] * qi[d];
      if (lane == 0)
        row_loss[r] += (double)(ncf_rating_loss<T>(w, pred, y_r) + w * rating_reg * squares);
      const T dpred = ncf_rating_grad<T>(w, pred, y_r) * scale;
      const T dreg = T(2) * w * rating_reg * scale;
      for (long long f = lane; f < n_rating; f += NCF_WARP) {
        user_grads[r * stride + f] += dpred * qi[f] + dreg * pu[f];
        item_grads[r * stride + f] += dpred * pu[f] + dreg * qi[f];
      }
      user_bias_grad = dpred + dreg * pu[d];
      item_bias_grad = dpred + dreg * qi[d];
    }
    if (stride > d && lane == 0) {
      user_grads[r * stride + d] = user_bias_grad;
      item_grads[r * stride + d] = item_bias_grad;
    }
    for (long long j = lane; j < last; j += NCF_WARP) d_last[r * last + j] = g * h[n_gmf + j];
  }
}

// Column sums of value(r, c) over rows [begin, end) for the columns of this block's tile, in a
// fixed order: thread (x, y) sums rows begin + y, begin + y + NCF_TILE_ROWS, ...; thread (x, 0)
// then adds the partial sums of y = 0, 1, ... Returns the total on threads with threadIdx.y == 0
// (every thread of the block must call it: it holds barriers).
template <typename T, typename Value>
__device__ __forceinline__ T ncf_tile_column_sum(long long begin, long long end, long long column,
                                                 bool valid, Value value) {
  __shared__ T partial[NCF_TILE_ROWS][NCF_TILE_COLS];
  T sum = T(0);
  if (valid)
    for (long long r = begin + threadIdx.y; r < end; r += NCF_TILE_ROWS) sum += value(r, column);
  partial[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  T total = T(0);
  if (threadIdx.y == 0)
    for (int y = 0; y < NCF_TILE_ROWS; ++y) total += partial[y][threadIdx.x];
  // The next chunk's sums overwrite `partial`: every thread (x, 0) must have read it first.
  __syncthreads();
  return total;
}

// Pass 1 of a column reduction over rows [0, rows): for each chunk c of NCF_CHUNK_ROWS rows
// (blockIdx.y, grid-stride), partial[c * n_columns + column] = the chunk's column sum.
// blockDim = (NCF_TILE_COLS, NCF_TILE_ROWS), gridDim.x = the column tiles.
template <typename T, typename Value>
__device__ __forceinline__ void ncf_chunk_column_sums(long long rows, long long n_columns,
                                                      T *__restrict__ partial, Value value) {
  const long long column = (long long)blockIdx.x * NCF_TILE_COLS + threadIdx.x;
  const long long n_chunks = (rows + NCF_CHUNK_ROWS - 1) / NCF_CHUNK_ROWS;
  for (long long chunk = blockIdx.y; chunk < n_chunks; chunk += gridDim.y) {
    const long long begin = chunk * NCF_CHUNK_ROWS;
    const long long end = begin + NCF_CHUNK_ROWS < rows ? begin + NCF_CHUNK_ROWS : rows;
    const T total = ncf_tile_column_sum<T>(begin, end, column, column < n_columns, value);
    if (threadIdx.y == 0 && column < n_columns) partial[chunk * n_columns + column] = total;
  }
}

// Pass 1 of the output layer's gradient: the chunk sums of dz[r] gmf[r, f] (f < n_gmf),
// dz[r] act[r, j] (column n_gmf + j, j < last) and dz[r] (column n_gmf + last) into
// partial [n_chunks, n_gmf + last + 1]; ncf_column_sums finishes grad_h.
template <typename T>
__global__ void ncf_output_grads(const T *__restrict__ dz, const T *__restrict__ gmf,
                                 const T *__restrict__ act, long long batch, long long n_gmf,
                                 long long last, T *__restrict__ partial) {
  ncf_chunk_column_sums<T>(batch, n_gmf + last + 1, partial, [=](long long r, long long c) {
    if (c < n_gmf) return dz[r] * gmf[r * n_gmf + c];
    if (c < n_gmf + last) return dz[r] * act[r * last + c - n_gmf];
    return dz[r];
  });
}

// Pass 1 of the backward through ReLU and the bias of one dense layer: dy[r, c] = 0 where
// y[r, c] <= 0 (in place; each element by the one thread that sums it) and the chunk sums of
// dy into partial [n_chunks, cols]; ncf_column_sums finishes grad_b.
template <typename T>
__global__ void ncf_relu_bias_grad(T *__restrict__ dy, const T *__restrict__ y, long long rows,
                                   long long cols, T *__restrict__ partial) {
  ncf_chunk_column_sums<T>(rows, cols, partial, [=](long long r, long long c) {
    const long long k = r * cols + c;
    if (!(y[k] > T(0))) dy[k] = T(0);
    return dy[k];
  });
}

// Pass 2: out[c] = partial[0, c] + partial[1, c] + ... in chunk order (partial [n_chunks, cols],
// n_chunks >= 1), a thread per column (grid-stride).
template <typename T>
__global__ void ncf_column_sums(const T *__restrict__ partial, long long n_chunks, long long cols,
                                T *__restrict__ out) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long c = (long long)blockIdx.x * blockDim.x + threadIdx.x; c < cols; c += stride) {
    T total = partial[c];
    for (long long chunk = 1; chunk < n_chunks; ++chunk) total += partial[chunk * cols + c];
    out[c] = total;
  }
}

// The MLP input's gradient dx0 [batch, 2 n_mlp] into the MLP columns of user_grads and
// item_grads [batch, d] (d: the embedding row width).
template <typename T>
__global__ void ncf_split_mlp_grads(const T *__restrict__ dx0, long long batch, long long n_gmf,
                                    long long n_mlp, long long d, T *__restrict__ user_grads,
                                    T *__restrict__ item_grads) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  const long long width = 2 * n_mlp;
  for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < batch * width;
       k += stride) {
    const long long r = k / width, c = k % width;
    if (c < n_mlp)
      user_grads[r * d + n_gmf + c] = dx0[k];
    else
      item_grads[r * d + n_gmf + c - n_mlp] = dx0[k];
  }
}

// table[rows[r], f] = max(table[rows[r], f], 0) for r < n, f < n_cols (table [n_rows, d];
// n_cols: the rating term's GMF columns).
template <typename T, typename I>
__global__ void ncf_project_nonnegative(T *__restrict__ table, const I *__restrict__ rows,
                                        long long n, long long n_cols, long long d) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < n * n_cols;
       k += stride) {
    T *w = table + (long long)rows[k / n_cols] * d + k % n_cols;
    *w = *w > T(0) ? *w : T(0);
  }
}

}  // namespace cuda
}  // namespace fastrec
