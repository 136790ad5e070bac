// Top-n selection shared by the Cython (topn_cpu via _topn.pyx) and CUDA (cuda/topn.cu) kernels:
// one bounded min-heap per row, fed each candidate score once, so a row's memory is O(n)
// whatever the number of items.
//
// Order: a higher score ranks first; equal scores rank the lower item index first (what a
// stable descending sort gives, so the numpy reference can be matched exactly). NaN scores are
// never ranked: the kernels mark excluded items (seen, the query item) NaN before offering them.
#pragma once

#include "fastrec/common.h"

namespace fastrec {

template <typename T>
FASTREC_HD bool topn_better(T score_a, int64_t id_a, T score_b, int64_t id_b) {
  return score_a > score_b || (score_a == score_b && id_a < id_b);
}

// Restores the heap property (worst entry at the root) below `pos`.
template <typename T>
FASTREC_HD void topn_sift_down(T *scores, int64_t *ids, int64_t size, int64_t pos) {
  const T score = scores[pos];
  const int64_t id = ids[pos];
  for (;;) {
    int64_t child = 2 * pos + 1;
    if (child >= size) break;
    if (child + 1 < size && topn_better(scores[child], ids[child], scores[child + 1], ids[child + 1]))
      ++child;  // the worse child moves up
    if (!topn_better(score, id, scores[child], ids[child])) break;
    scores[pos] = scores[child];
    ids[pos] = ids[child];
    pos = child;
  }
  scores[pos] = score;
  ids[pos] = id;
}

// Offers one candidate to a heap holding `*size` of at most `capacity` entries.
template <typename T>
FASTREC_HD void topn_offer(T *scores, int64_t *ids, int64_t *size, int64_t capacity, T score,
                           int64_t id) {
  if (score != score) return;  // NaN: excluded or not a number, never ranked
  int64_t pos = *size;
  if (pos < capacity) {
    *size = pos + 1;
    while (pos > 0) {  // sift up: the new entry rises while it is worse than its parent
      const int64_t parent = (pos - 1) / 2;
      if (!topn_better(scores[parent], ids[parent], score, id)) break;
      scores[pos] = scores[parent];
      ids[pos] = ids[parent];
      pos = parent;
    }
    scores[pos] = score;
    ids[pos] = id;
  } else if (capacity > 0 && topn_better(score, id, scores[0], ids[0])) {
    scores[0] = score;
    ids[0] = id;
    topn_sift_down(scores, ids, capacity, 0);
  }
}

// Offers a block of consecutive candidates `scores[0..width)` with ids `first_id + j`. Once
// the heap is full, a whole chunk of 16 is scanned for any score above the heap's worst in a
// loop the compiler vectorises (an int OR-reduction over a fixed count: a bool one, or a
// variable count, stays scalar), and only chunks holding one go through the heap: on a large
// item set almost every chunk is skipped. (Strictly above: a tie with the worst never wins, its
// id is lower since ids arrive in increasing order; NaN compares false, so it is skipped too.)
template <typename T>
FASTREC_HD void topn_offer_block(T *heap_scores, int64_t *heap_ids, int64_t *size,
                                 int64_t capacity, const T *scores, int64_t width,
                                 int64_t first_id) {
  const int64_t chunk = 16;
  for (int64_t j0 = 0; j0 < width; j0 += chunk) {
    const T *s = scores + j0;
    const int64_t n = width - j0 < chunk ? width - j0 : chunk;
    if (*size == capacity && n == chunk) {
      const T worst = heap_scores[0];
      int any = 0;
      for (int64_t j = 0; j < chunk; ++j) any |= s[j] > worst;
      if (!any) continue;
    }
    for (int64_t j = 0; j < n; ++j)
      topn_offer(heap_scores, heap_ids, size, capacity, s[j], first_id + j0 + j);
  }
}

// Turns the heap into the row's answer, best first, and pads the unused tail with id -1 and
// `pad_score` (the caller passes -inf).
template <typename T>
FASTREC_HD void topn_finish(T *scores, int64_t *ids, int64_t size, int64_t capacity, T pad_score) {
  for (int64_t end = size - 1; end > 0; --end) {  // heap sort: the worst goes to the back
    const T score = scores[0];
    const int64_t id = ids[0];
    scores[0] = scores[end];
    ids[0] = ids[end];
    scores[end] = score;
    ids[end] = id;
    topn_sift_down(scores, ids, end, 0);
  }
  for (int64_t j = size; j < capacity; ++j) {
    scores[j] = pad_score;
    ids[j] = -1;
  }
}

}  // namespace fastrec
