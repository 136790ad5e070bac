// Top-n per row on the GPU, over scores the launcher computed with cuBLAS (scores = query
// @ items^T + bias, a chunk of rows at a time).
//
// Thread mapping: a warp per row (grid-stride over rows). Lane l offers items l, l + 32, ... to
// its own bounded heap (fastrec/topn.h, in a global scratch of 32 * n entries per row), then
// lane 0 merges the 32 heaps into the row's output heap and sorts it, best first, padded with
// id -1 and `pad` (-inf). The union of the lanes' top-n holds the row's top-n, and the order is
// total (higher score first, then lower id), so the answer is the CPU kernel's exactly, whatever
// the launch shape or scheduling. Excluded items are first marked NaN in the scores (never
// ranked) by topn_mark_excluded. No atomics.
#include "fastrec/topn.h"

namespace fastrec {
namespace cuda {

constexpr int TOPN_WARP = 32;
constexpr unsigned TOPN_FULL_MASK = 0xffffffffu;

// Row r (of n_rows) sets scores[r, j] = nan for its excluded items j: indices[indptr[u] ..
// indptr[u + 1]) with u = rows[r]; indices outside [0, n_items) are ignored. A thread per row.
template <typename T, typename I>
__global__ void topn_mark_excluded(T *scores, long long n_rows, long long n_items,
                                   const I *indptr, const I *indices, const long long *rows,
                                   T nan) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long r = (long long)blockIdx.x * blockDim.x + threadIdx.x; r < n_rows; r += stride) {
    const long long u = rows[r];
    for (long long p = indptr[u]; p < indptr[u + 1]; ++p) {
      const long long j = indices[p];
      if (j >= 0 && j < n_items) scores[r * n_items + j] = nan;
    }
  }
}

// The n best of each row of scores T[n_rows, n_items] into out_scores T[n_rows, n] and
// out_ids int64[n_rows, n]; lane_scores/lane_ids hold n_rows * 32 * n entries of scratch.
template <typename T>
__global__ void topn_rows(const T *scores, long long n_rows, long long n_items, long long n,
                          T *lane_scores, int64_t *lane_ids, T *out_scores,
                          int64_t *out_ids, T pad) {
  const int lane = threadIdx.x % TOPN_WARP;
  const long long n_warps = (long long)gridDim.x * blockDim.x / TOPN_WARP;
  for (long long r = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / TOPN_WARP; r < n_rows;
       r += n_warps) {
    T *heap_scores = lane_scores + (r * TOPN_WARP + lane) * n;
    int64_t *heap_ids = lane_ids + (r * TOPN_WARP + lane) * n;
    int64_t size = 0;
    const T *row = scores + r * n_items;
    for (long long j = lane; j < n_items; j += TOPN_WARP)
      topn_offer(heap_scores, heap_ids, &size, n, row[j], j);
    __syncwarp();  // lane heaps written before lane 0 reads them
    T *row_scores = out_scores + r * n;
    int64_t *row_ids = out_ids + r * n;
    int64_t out_size = 0;
    for (int l = 0; l < TOPN_WARP; ++l) {
      const int64_t size_l = __shfl_sync(TOPN_FULL_MASK, size, l);
      if (lane == 0) {
        const long long base = (r * TOPN_WARP + l) * n;
        for (long long e = 0; e < size_l; ++e)
          topn_offer(row_scores, row_ids, &out_size, n, lane_scores[base + e],
                     lane_ids[base + e]);
      }
    }
    if (lane == 0) topn_finish(row_scores, row_ids, out_size, n, pad);
    __syncwarp();
  }
}

}  // namespace cuda
}  // namespace fastrec
