// The host top-n's per-row step (fastrec/backends/cython/_topn.pyx): add the item bias to a
// row's block of scores and offer the block to the row's heap (topn.h). Compiled per ISA
// (FASTREC_CPU_CLONES): the bias add and the chunk scan against the heap's worst entry are the
// loops every score goes through, and the portable x86-64 build runs them 4 floats at a time.
#pragma once

#include "fastrec/topn.h"

namespace fastrec {

template <typename T>
static inline void topn_offer_row_impl(T *heap_scores, int64_t *heap_ids, int64_t *size,
                                       int64_t capacity, T *scores, const T *bias,
                                       int64_t width, int64_t first_id) {
  if (bias != nullptr)
    for (int64_t j = 0; j < width; ++j) scores[j] += bias[j];
  topn_offer_block(heap_scores, heap_ids, size, capacity, scores, width, first_id);
}

// scores T[width] (modified: the bias is added in place; excluded entries NaN), bias T[width]
// or null; the row's heap holds *size of at most capacity entries.
#define FASTREC_TOPN_ROW(T)                                                                    \
  FASTREC_CPU_CLONES void topn_offer_row(T *heap_scores, int64_t *heap_ids, int64_t *size,    \
                                         int64_t capacity, T *scores, const T *bias,           \
                                         int64_t width, int64_t first_id) {                    \
    topn_offer_row_impl<T>(heap_scores, heap_ids, size, capacity, scores, bias, width,         \
                           first_id);                                                          \
  }

FASTREC_TOPN_ROW(float)
FASTREC_TOPN_ROW(double)
#undef FASTREC_TOPN_ROW

}  // namespace fastrec
