// CPU loops around the optimiser steps of optim.h: dense steps over a flat parameter vector and
// lazy (sparse) steps over the embedding rows a batch touched.
//
// Sparse steps sum the gradients of duplicate rows first (in batch order, so the result does not
// depend on threads) and update each distinct row once, as torch.optim.SparseAdam does:
//   n = link_rows(rows, n, stamp, tail, next, leaders, batch_id)   // serial, O(n)
//   for j in [0, n) in parallel: sparse_apply_row(leaders[j], ...)  // rows are distinct
// dense_step and sparse_step wrap both phases with OpenMP threads (serial without OpenMP).
#pragma once

#include "fastrec/optim.h"

namespace fastrec {

// Groups duplicate rows of a batch: returns the number of distinct rows; leaders[0:count] are
// their first positions and next[] chains later positions of the same row (-1 ends a chain).
// stamp[r] must differ from batch_id for every row not yet seen in this batch (e.g. -1 at the
// start and a fresh batch_id per batch); tail is scratch of n_rows entries.
template <typename I>
static inline int64_t link_rows(const I *rows, int64_t n, int64_t *stamp, int64_t *tail,
                                int64_t *next, int64_t *leaders, int64_t batch_id) {
  int64_t count = 0;
  for (int64_t b = 0; b < n; ++b) {
    const int64_t r = (int64_t)rows[b];
    next[b] = -1;
    if (stamp[r] != batch_id) {
      stamp[r] = batch_id;
      leaders[count++] = b;
    } else {
      next[tail[r]] = b;
    }
    tail[r] = b;
  }
  return count;
}

// Updates the row of batch position `leader` once with the sum of the gradients along its
// chain. The sum is accumulated into row_grads[leader] (scratch afterwards).
template <typename T, typename I>
static inline void sparse_apply_row(const OptimStep<T> &s, int64_t leader, const I *rows,
                                    T *row_grads, const int64_t *next, int64_t d, T *table,
                                    T *state1, T *state2) {
  T *g = row_grads + leader * d;
  for (int64_t b = next[leader]; b >= 0; b = next[b]) {
    const T *gb = row_grads + b * d;
    for (int64_t f = 0; f < d; ++f) g[f] += gb[f];
  }
  const int64_t off = (int64_t)rows[leader] * d;
  optim_update_range<T>(s, table + off, state1 + off, state2 + off, g, d);
}

// One optimiser step over a flat parameter vector (state arrays as in optim_update).
template <typename T>
static inline void dense_step(int kind, double lr, double beta1, double beta2, double eps,
                              int64_t step, T *params, const T *grads, T *state1, T *state2,
                              int64_t n, int n_threads) {
  const OptimStep<T> s = make_optim_step<T>(kind, lr, beta1, beta2, eps, 0.0, step);
#pragma omp parallel for num_threads(n_threads) schedule(static) if (n > 4096)
  for (int64_t j = 0; j < n; ++j) optim_update<T>(s, params[j], state1[j], state2[j], grads[j]);
}

// One lazy optimiser step of the rows of `table` (T[n_rows, d]) listed in rows[0:n] with the
// per-position gradients row_grads (T[n, d], used as scratch). stamp/tail: int64[n_rows] with
// stamp != batch_id everywhere; next/leaders: int64[n] scratch.
template <typename T, typename I>
static inline void sparse_step(int kind, double lr, double beta1, double beta2, double eps,
                               int64_t step, T *table, int64_t d, const I *rows, int64_t n,
                               T *row_grads, T *state1, T *state2, int64_t *stamp, int64_t *tail,
                               int64_t *next, int64_t *leaders, int64_t batch_id,
                               int n_threads) {
  const OptimStep<T> s = make_optim_step<T>(kind, lr, beta1, beta2, eps, 0.0, step);
  const int64_t count = link_rows<I>(rows, n, stamp, tail, next, leaders, batch_id);
#pragma omp parallel for num_threads(n_threads) schedule(static) if (count * d > 4096)
  for (int64_t j = 0; j < count; ++j)
    sparse_apply_row<T, I>(s, leaders[j], rows, row_grads, next, d, table, state1, state2);
}

}  // namespace fastrec
