// CPU passes of the NCF family (GMF, MLP, NeuMF): forward and backward over a mini-batch, and a
// whole training epoch (negative sampling, batching, forward, backward, optimiser steps) in one
// call. Layouts are documented in fastrec/backends/_contract.py (NCF_LAYOUT_DOC):
//   embeddings  T[n_rows, stride], GMF columns [0, n_gmf), MLP columns [n_gmf, d),
//               d = n_gmf + n_mlp; stride = d + 1 adds the joint model's rating bias column
//   layers      int64[n_widths]: MLP widths, layers[0] = 2 n_mlp; n_widths = 0 means no MLP
//   dense       T[n_dense]: for each dense layer W (row-major [in, out]) then b [out]; then the
//               output weights h [n_gmf + last] and its bias
//   cache       T[B * (n_gmf + sum(layers))], block-major: gmf [B, n_gmf], mlp_0 [B, layers[0]],
//               ..., mlp_L [B, layers[L]]; each block C-contiguous, so a run of rows is a
//               contiguous matrix that BLAS can use directly.
// The batch is cut into chunks of NCF_CHUNK rows that threads take independently; each chunk
// writes its own slice of the dense gradient, and the slices are summed in chunk order, so the
// result does not depend on the thread count. GEMMs go through the BLAS function pointers the
// caller passes (scipy's cython_blas); the caller keeps BLAS single-threaded.
#pragma once

#include <string.h>

#include <algorithm>
#include <vector>

#include "fastrec/blas_cpu.h"
#include "fastrec/ncf.h"
#include "fastrec/optim_cpu.h"

namespace fastrec {

constexpr int64_t NCF_CHUNK = 64;
constexpr int64_t NCF_MAX_WIDTHS = 32;
constexpr int64_t NCF_DENSE_BLOCK = 1024;

// Entry points get the runtime ISA dispatch of the other CPU kernels; flatten inlines the row
// passes and optimiser loops into each clone so they are compiled for that ISA too.
#define FASTREC_NCF_ENTRY FASTREC_CPU_CLONES __attribute__((flatten))

// Shape of a network and the offsets derived from it.
struct NcfShape {
  int64_t n_gmf, n_mlp, d, n_widths, last, n_dense, cache_width, grad_width, out_offset;
  int64_t stride;  // embedding row width: d, or d + 1 with the rating bias column
  int64_t bias;    // column of the rating bias (d), or -1 without one
  int64_t width[NCF_MAX_WIDTHS];
  int64_t w_off[NCF_MAX_WIDTHS];    // dense offset of layer l's W (l >= 1)
  int64_t act_sum[NCF_MAX_WIDTHS];  // sum of widths before block l (cache/grad block offsets)

  NcfShape(const int64_t *layers, int64_t n_widths_, int64_t n_gmf_, int64_t stride_) {
    n_gmf = n_gmf_;
    n_widths = n_widths_;
    n_mlp = n_widths ? layers[0] / 2 : 0;
    d = n_gmf + n_mlp;
    stride = stride_;
    bias = stride > d ? d : -1;
    int64_t off = 0, acc = 0;
    for (int64_t l = 0; l < n_widths; ++l) {
      width[l] = layers[l];
      act_sum[l] = acc;
      acc += layers[l];
      if (l >= 1) {
        w_off[l] = off;
        off += layers[l - 1] * layers[l] + layers[l];
      }
    }
    last = n_widths ? layers[n_widths - 1] : 0;
    out_offset = off;
    n_dense = off + n_gmf + last + 1;
    grad_width = acc;
    cache_width = n_gmf + acc;
  }
  // Start of MLP block l (rows of a batch of `batch`) in the cache / in the gradient workspace.
  int64_t cache_block(int64_t l, int64_t batch) const { return batch * (n_gmf + act_sum[l]); }
  int64_t grad_block(int64_t l, int64_t batch) const { return batch * act_sum[l]; }
};

// The joint model's rating term of a batch (NCF_BACKWARD_DOC): row r carries
// weights[r] * ((mean + b_u + b_i + p_u . q_i - ratings[r])^2
//               + reg * (|p_u|^2 + |q_i|^2 + b_u^2 + b_i^2)), p and q the first n GMF
// columns; ratings == nullptr: no term.
template <typename T>
struct NcfRating {
  const T *ratings;
  const T *weights;
  T mean, reg;
  int64_t n;
};

// Forward pass of rows [r0, r0 + n) of a batch of `batch` rows.
template <typename T, typename I>
static inline void ncf_forward_rows(const Blas &blas, const NcfShape &s, const I *users,
                                    const I *items, int64_t batch, int64_t r0, int64_t n,
                                    const T *user_emb, const T *item_emb, const T *dense,
                                    T *cache, T *logits) {
  if (n <= 0) return;
  const int64_t g = s.n_gmf, e = s.n_mlp, d = s.stride;
  T *gmf = cache + r0 * g;
  T *x0 = s.n_widths ? cache + s.cache_block(0, batch) + r0 * 2 * e : nullptr;
  for (int64_t r = 0; r < n; ++r) {
    const T *pu = user_emb + (int64_t)users[r0 + r] * d;
    const T *qi = item_emb + (int64_t)items[r0 + r] * d;
    for (int64_t f = 0; f < g; ++f) gmf[r * g + f] = pu[f] * qi[f];
    if (x0) {
      memcpy(x0 + r * 2 * e, pu + g, e * sizeof(T));
      memcpy(x0 + r * 2 * e + e, qi + g, e * sizeof(T));
    }
  }
  const T *x = x0;
  for (int64_t l = 1; l < s.n_widths; ++l) {
    const int64_t in = s.width[l - 1], out = s.width[l];
    T *y = cache + s.cache_block(l, batch) + r0 * out;
    const T *W = dense + s.w_off[l];
    const T *b = W + in * out;
    gemm_rm<T>(blas, false, false, (int)n, (int)out, (int)in, T(1), x, (int)in, W, (int)out,
               T(0), y, (int)out);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t j = 0; j < out; ++j) y[r * out + j] = ncf_relu<T>(y[r * out + j] + b[j]);
    x = y;
  }
  const T *h = dense + s.out_offset;
  const T b_out = h[g + s.last];
  for (int64_t r = 0; r < n; ++r) {
    T z = b_out;
    for (int64_t f = 0; f < g; ++f) z += h[f] * gmf[r * g + f];
    for (int64_t j = 0; j < s.last; ++j) z += h[g + j] * x[r * s.last + j];
    logits[r0 + r] = z;
  }
}

// Backward pass of rows [r0, r0 + n): writes this chunk's whole dense gradient into chunk_grad
// (T[n_dense]), the rows' embedding gradients into user_grads/item_grads (T[batch, d]) and uses
// grad_work (T[batch * grad_width], block-major like the cache's MLP blocks) as scratch.
// Gradients are of (sum of losses) * scale, the rating term's included. Returns the rows' summed
// loss.
template <typename T, typename I>
static inline double ncf_backward_rows(const Blas &blas, const NcfShape &s, const I *users,
                                       const I *items, const T *targets, int64_t batch,
                                       int64_t r0, int64_t n, const T *user_emb,
                                       const T *item_emb, const T *dense, const T *cache,
                                       const T *logits, int loss_kind, const NcfRating<T> &rating,
                                       T scale, T *grad_work, T *chunk_grad, T *user_grads,
                                       T *item_grads) {
  memset(chunk_grad, 0, s.n_dense * sizeof(T));
  if (n <= 0) return 0.0;
  const int64_t g = s.n_gmf, e = s.n_mlp, d = s.stride, last = s.last, L = s.n_widths - 1;
  const T *gmf = cache + r0 * g;
  const T *h = dense + s.out_offset;
  T *gh = chunk_grad + s.out_offset;
  const T *act_last = s.n_widths ? cache + s.cache_block(L, batch) + r0 * last : nullptr;
  T *d_last = s.n_widths ? grad_work + s.grad_block(L, batch) + r0 * last : nullptr;
  double loss = 0.0;
  for (int64_t r = 0; r < n; ++r) {
    const T z = logits[r0 + r], y = targets[r0 + r];
    loss += (double)ncf_loss<T>(loss_kind, z, y);
    const T dz = ncf_loss_grad<T>(loss_kind, z, y) * scale;
    gh[g + last] += dz;
    const T *pu = user_emb + (int64_t)users[r0 + r] * d;
    const T *qi = item_emb + (int64_t)items[r0 + r] * d;
    T *ug = user_grads + (r0 + r) * d;
    T *ig = item_grads + (r0 + r) * d;
    for (int64_t f = 0; f < g; ++f) {
      gh[f] += dz * gmf[r * g + f];
      const T t = dz * h[f];
      ug[f] = t * qi[f];
      ig[f] = t * pu[f];
    }
    T user_bias_grad = T(0), item_bias_grad = T(0);
    if (rating.ratings != nullptr && rating.weights[r0 + r] != T(0)) {
      const T w = rating.weights[r0 + r], y_r = rating.ratings[r0 + r];
      T pred = rating.mean + pu[s.bias] + qi[s.bias];
      for (int64_t f = 0; f < rating.n; ++f) pred += gmf[r * g + f];
      const T dpred = ncf_rating_grad<T>(w, pred, y_r) * scale;
      const T dreg = T(2) * w * rating.reg * scale;  // the penalty's gradient per unit weight
      T squares = pu[s.bias] * pu[s.bias] + qi[s.bias] * qi[s.bias];
      for (int64_t f = 0; f < rating.n; ++f) {
        ug[f] += dpred * qi[f] + dreg * pu[f];
        ig[f] += dpred * pu[f] + dreg * qi[f];
        squares += pu[f] * pu[f] + qi[f] * qi[f];
      }
      loss += (double)(ncf_rating_loss<T>(w, pred, y_r) + w * rating.reg * squares);
      user_bias_grad = dpred + dreg * pu[s.bias];
      item_bias_grad = dpred + dreg * qi[s.bias];
    }
    if (s.bias >= 0) {
      ug[s.bias] = user_bias_grad;
      ig[s.bias] = item_bias_grad;
    }
    for (int64_t j = 0; j < last; ++j) {
      gh[g + j] += dz * act_last[r * last + j];
      d_last[r * last + j] = dz * h[g + j];
    }
  }
  for (int64_t l = L; l >= 1; --l) {
    const int64_t in = s.width[l - 1], out = s.width[l];
    const T *y = cache + s.cache_block(l, batch) + r0 * out;
    T *dy = grad_work + s.grad_block(l, batch) + r0 * out;
    const T *x = cache + s.cache_block(l - 1, batch) + r0 * in;
    T *dx = grad_work + s.grad_block(l - 1, batch) + r0 * in;
    for (int64_t k = 0; k < n * out; ++k)
      if (!(y[k] > T(0))) dy[k] = T(0);
    const T *W = dense + s.w_off[l];
    T *gW = chunk_grad + s.w_off[l];
    T *gb = gW + in * out;
    gemm_rm<T>(blas, true, false, (int)in, (int)out, (int)n, T(1), x, (int)in, dy, (int)out,
               T(0), gW, (int)out);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t j = 0; j < out; ++j) gb[j] += dy[r * out + j];
    gemm_rm<T>(blas, false, true, (int)n, (int)in, (int)out, T(1), dy, (int)out, W, (int)out,
               T(0), dx, (int)in);
  }
  if (s.n_widths) {
    const T *dx0 = grad_work + s.grad_block(0, batch) + r0 * 2 * e;
    for (int64_t r = 0; r < n; ++r) {
      memcpy(user_grads + (r0 + r) * d + g, dx0 + r * 2 * e, e * sizeof(T));
      memcpy(item_grads + (r0 + r) * d + g, dx0 + r * 2 * e + e, e * sizeof(T));
    }
  }
  return loss;
}

template <typename T, typename I>
FASTREC_NCF_ENTRY void ncf_forward_batch(const Blas &blas, const I *users, const I *items,
                                     int64_t batch, const T *user_emb, const T *item_emb,
                                     const T *dense, const int64_t *layers, int64_t n_widths,
                                     int64_t n_gmf, int64_t stride, T *cache, T *logits,
                                     int n_threads) {
  const NcfShape s(layers, n_widths, n_gmf, stride);
  const int64_t n_chunks = (batch + NCF_CHUNK - 1) / NCF_CHUNK;
#pragma omp parallel for num_threads(n_threads) schedule(static)
  for (int64_t c = 0; c < n_chunks; ++c)
    ncf_forward_rows<T, I>(blas, s, users, items, batch, c * NCF_CHUNK,
                           std::min(NCF_CHUNK, batch - c * NCF_CHUNK), user_emb, item_emb, dense,
                           cache, logits);
}

// Gradients of the mean loss over the batch; returns the summed loss.
template <typename T, typename I>
FASTREC_NCF_ENTRY double ncf_backward_batch(const Blas &blas, const I *users, const I *items,
                                        const T *targets, int64_t batch, const T *user_emb,
                                        const T *item_emb, const T *dense, const int64_t *layers,
                                        int64_t n_widths, int64_t n_gmf, int64_t stride,
                                        const T *cache, const T *logits, int loss_kind,
                                        const T *ratings, const T *rating_weights,
                                        double rating_mean, double rating_reg,
                                        int64_t n_rating, T *dense_grad, T *user_grads,
                                        T *item_grads, int n_threads) {
  const NcfShape s(layers, n_widths, n_gmf, stride);
  const NcfRating<T> rating{ratings, rating_weights, (T)rating_mean, (T)rating_reg, n_rating};
  const int64_t n_chunks = (batch + NCF_CHUNK - 1) / NCF_CHUNK;
  std::vector<T> grad_work(std::max<int64_t>(batch * s.grad_width, 1));
  std::vector<T> chunk_grads(std::max<int64_t>(n_chunks, 1) * s.n_dense);
  std::vector<double> chunk_loss(std::max<int64_t>(n_chunks, 1), 0.0);
  const T scale = T(1) / (T)std::max<int64_t>(batch, 1);
#pragma omp parallel num_threads(n_threads)
  {
#pragma omp for schedule(static)
    for (int64_t c = 0; c < n_chunks; ++c)
      chunk_loss[c] = ncf_backward_rows<T, I>(
          blas, s, users, items, targets, batch, c * NCF_CHUNK,
          std::min(NCF_CHUNK, batch - c * NCF_CHUNK), user_emb, item_emb, dense, cache, logits,
          loss_kind, rating, scale, grad_work.data(), chunk_grads.data() + c * s.n_dense,
          user_grads, item_grads);
#pragma omp for schedule(static)
    for (int64_t j = 0; j < s.n_dense; ++j) {
      T sum = T(0);
      for (int64_t c = 0; c < n_chunks; ++c) sum += chunk_grads[c * s.n_dense + j];
      dense_grad[j] = sum;
    }
  }
  double total = 0.0;
  for (int64_t c = 0; c < n_chunks; ++c) total += chunk_loss[c];
  return total;
}

// Negative `negative` of the epoch (see ncf_negative_candidate) for user u: the first candidate
// not in the user's sorted seen list, or the last candidate after NCF_NEGATIVE_TRIES attempts.
template <typename I>
static inline int64_t ncf_draw_negative(uint64_t key, int64_t negative, int64_t u,
                                        const int64_t *seen_indptr, const I *seen_indices,
                                        int64_t n_items) {
  const I *lo = seen_indices + seen_indptr[u], *hi = seen_indices + seen_indptr[u + 1];
  int64_t item = 0;
  for (int64_t t = 0; t < NCF_NEGATIVE_TRIES; ++t) {
    item = ncf_negative_candidate(key, negative, t, n_items);
    if (!std::binary_search(lo, hi, (I)item)) return item;
  }
  return item;
}

// A whole epoch; see NCF_TRAIN_EPOCH_DOC in fastrec/backends/_contract.py. Returns the summed
// loss of every sample, each measured before the step of its batch. pos_ratings (null: no
// rating term) gives each positive the rating term with weight rating_weight; the first
// n_nonnegative GMF columns of the rows a batch updated are projected onto >= 0 after the step
// (the rating term's columns of a non-negative model, else none).
template <typename T, typename I>
FASTREC_NCF_ENTRY double ncf_train_epoch_cpu(
    const Blas &blas, const I *pos_users, const I *pos_items, const T *pos_targets,
    const int64_t *seen_indptr, const I *seen_indices, const int64_t *order, int64_t n_samples,
    int64_t n_negatives, uint64_t seed, int64_t epoch, T *user_emb, int64_t n_users,
    T *item_emb, int64_t n_items, T *dense, const int64_t *layers, int64_t n_widths,
    int64_t n_gmf, int64_t stride, int loss_kind, const T *pos_ratings, double rating_weight,
    double rating_mean, double rating_reg, int64_t n_rating, int64_t n_nonnegative,
    int optimizer, double lr, double beta1, double beta2, double eps, int64_t step, T *dense_s1,
    T *dense_s2, T *user_s1, T *user_s2, T *item_s1, T *item_s2, int64_t batch_size,
    int n_threads) {
  const NcfShape s(layers, n_widths, n_gmf, stride);
  const int64_t d = s.stride, group = n_negatives + 1;
  const int64_t max_chunks = (batch_size + NCF_CHUNK - 1) / NCF_CHUNK;
  const int64_t n_batches = (n_samples + batch_size - 1) / batch_size;
  const uint64_t key = rng_key(seed, (uint64_t)epoch);
  std::vector<I> b_users(batch_size), b_items(batch_size);
  std::vector<T> b_targets(batch_size), logits(batch_size);
  std::vector<T> b_ratings(pos_ratings ? batch_size : 0), b_weights(pos_ratings ? batch_size : 0);
  const NcfRating<T> rating{pos_ratings ? b_ratings.data() : nullptr, b_weights.data(),
                            (T)rating_mean, (T)rating_reg, n_rating};
  std::vector<T> cache(batch_size * s.cache_width + 1), grad_work(batch_size * s.grad_width + 1);
  std::vector<T> chunk_grads(max_chunks * s.n_dense);
  std::vector<T> user_grads(batch_size * d + 1), item_grads(batch_size * d + 1);
  std::vector<double> chunk_loss(max_chunks);
  std::vector<int64_t> user_stamp(n_users, -1), user_tail(n_users), item_stamp(n_items, -1),
      item_tail(n_items), user_next(batch_size), item_next(batch_size),
      user_leaders(batch_size), item_leaders(batch_size);
  int64_t n_user_rows = 0, n_item_rows = 0;
  double total = 0.0;
#pragma omp parallel num_threads(n_threads)
  for (int64_t b = 0; b < n_batches; ++b) {
    const int64_t start = b * batch_size, bs = std::min(batch_size, n_samples - start);
    const int64_t n_chunks = (bs + NCF_CHUNK - 1) / NCF_CHUNK;
    const T scale = T(1) / (T)bs;
#pragma omp for schedule(static)
    for (int64_t c = 0; c < n_chunks; ++c) {
      const int64_t r0 = c * NCF_CHUNK, n = std::min(NCF_CHUNK, bs - r0);
      for (int64_t r = r0; r < r0 + n; ++r) {
        const int64_t slot = order[start + r], p = slot / group, j = slot % group;
        const int64_t u = (int64_t)pos_users[p];
        b_users[r] = (I)u;
        if (j == 0) {
          b_items[r] = pos_items[p];
          b_targets[r] = pos_targets[p];
        } else {
          b_items[r] = (I)ncf_draw_negative<I>(key, p * n_negatives + j - 1, u, seen_indptr,
                                               seen_indices, n_items);
          b_targets[r] = T(0);
        }
        if (pos_ratings) {
          b_ratings[r] = j == 0 ? pos_ratings[p] : T(0);
          b_weights[r] = j == 0 ? (T)rating_weight : T(0);
        }
      }
      ncf_forward_rows<T, I>(blas, s, b_users.data(), b_items.data(), bs, r0, n, user_emb,
                             item_emb, dense, cache.data(), logits.data());
      chunk_loss[c] = ncf_backward_rows<T, I>(
          blas, s, b_users.data(), b_items.data(), b_targets.data(), bs, r0, n, user_emb,
          item_emb, dense, cache.data(), logits.data(), loss_kind, rating, scale,
          grad_work.data(),
          chunk_grads.data() + c * s.n_dense, user_grads.data(), item_grads.data());
    }
    const OptimStep<T> st =
        make_optim_step<T>(optimizer, lr, beta1, beta2, eps, 0.0, step + b + 1);
    // Chunk 0's slice becomes the batch gradient (chunks summed in order), then one step; the
    // dense vector is cut into blocks so each thread runs straight, vectorisable loops.
    const int64_t n_blocks = (s.n_dense + NCF_DENSE_BLOCK - 1) / NCF_DENSE_BLOCK;
#pragma omp for schedule(static) nowait
    for (int64_t blk = 0; blk < n_blocks; ++blk) {
      const int64_t j0 = blk * NCF_DENSE_BLOCK, len = std::min(NCF_DENSE_BLOCK, s.n_dense - j0);
      T *sum = chunk_grads.data() + j0;
      for (int64_t c = 1; c < n_chunks; ++c) {
        const T *part = chunk_grads.data() + c * s.n_dense + j0;
        for (int64_t j = 0; j < len; ++j) sum[j] += part[j];
      }
      optim_update_range<T>(st, dense + j0, dense_s1 + j0, dense_s2 + j0, sum, len);
    }
    // The users' and the items' duplicate links are independent: two threads build them at
    // once (a serial stretch of every batch otherwise, which the other thread waits out).
#pragma omp for schedule(static)
    for (int64_t side = 0; side < 2; ++side) {
      if (side == 0) {
        n_user_rows = link_rows<I>(b_users.data(), bs, user_stamp.data(), user_tail.data(),
                                   user_next.data(), user_leaders.data(), b);
        for (int64_t c = 0; c < n_chunks; ++c) total += chunk_loss[c];
      } else {
        n_item_rows = link_rows<I>(b_items.data(), bs, item_stamp.data(), item_tail.data(),
                                   item_next.data(), item_leaders.data(), b);
      }
    }
#pragma omp for schedule(static)
    for (int64_t j = 0; j < n_user_rows + n_item_rows; ++j) {
      T *row;
      if (j < n_user_rows) {
        sparse_apply_row<T, I>(st, user_leaders[j], b_users.data(), user_grads.data(),
                               user_next.data(), d, user_emb, user_s1, user_s2);
        row = user_emb + (int64_t)b_users[user_leaders[j]] * d;
      } else {
        sparse_apply_row<T, I>(st, item_leaders[j - n_user_rows], b_items.data(),
                               item_grads.data(), item_next.data(), d, item_emb, item_s1,
                               item_s2);
        row = item_emb + (int64_t)b_items[item_leaders[j - n_user_rows]] * d;
      }
      for (int64_t f = 0; f < n_nonnegative; ++f) row[f] = std::max(row[f], T(0));
    }
  }
  return total;
}

}  // namespace fastrec
