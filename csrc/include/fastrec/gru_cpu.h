// CPU passes of GRU4Rec: stacked GRU forward and BPTT backward over a block, sampled-output loss,
// optimizer steps and the session-parallel training epoch. GEMMs go through the BLAS pointers of
// blas_cpu.h (kept single-threaded by the caller), and OpenMP splits every pass into chunks of
// fixed size, so results do not depend on the thread count. Per-element math: gru.h and
// optim.h.
#pragma once

#include <algorithm>
#include <vector>

#include "fastrec/blas_cpu.h"
#include "fastrec/gru.h"
#include "fastrec/optim.h"

namespace fastrec {

// Fixed chunk sizes: rows of a batch per task, and sampled items per task in the output layer.
constexpr int GRU_ROW_CHUNK = 16;
constexpr int GRU_COL_CHUNK = 64;
constexpr int GRU_SAMPLE_CHUNK = 128;
// Below this many multiply-adds a pass runs on one thread: a fork-join costs microseconds, and
// far more when the cores are shared and a worker is descheduled. An optimizer step costs as much
// per element (a square root and a division) as some fifty multiply-adds, so its bar is lower.
constexpr double GRU_PARALLEL_MIN_WORK = 2e6;
constexpr double GRU_PARALLEL_MIN_ELEMENTS = 32768;

static inline int gru_threads(int n_threads, int n_chunks, double work) {
  return work < GRU_PARALLEL_MIN_WORK ? 1 : std::max(1, std::min(n_threads, n_chunks));
}

// The body of every parallel pass is a function with the runtime ISA dispatch of the other CPU
// kernels (AVX-512 / AVX2+FMA / baseline clones, one per (T, I) by a macro): OpenMP outlines a
// loop body before inlining, so clones of the caller would not reach it.
#define FASTREC_GRU_CLONE FASTREC_CPU_CLONES __attribute__((flatten, noinline))

// The same product split over fixed row chunks of C (by_rows) or column chunks, in parallel.
template <typename T>
static void gemm_par(const Blas &blas, bool by_rows, bool ta, bool tb, int M, int N, int K,
                     T alpha, const T *A, int lda, const T *B, int ldb, T beta, T *C, int ldc,
                     int n_threads) {
  const int extent = by_rows ? M : N;
  const int chunk = by_rows ? GRU_ROW_CHUNK : GRU_COL_CHUNK;
  const int n_chunks = (extent + chunk - 1) / chunk;
  const int nt = gru_threads(n_threads, n_chunks, (double)M * N * K);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int c = 0; c < n_chunks; ++c) {
    const int o = c * chunk, len = std::min(chunk, extent - o);
    if (by_rows)
      gemm_rm<T>(blas, ta, tb, len, N, K, alpha, ta ? A + o : A + (int64_t)o * lda, lda, B, ldb,
                 beta, C + (int64_t)o * ldc, ldc);
    else
      gemm_rm<T>(blas, ta, tb, M, len, K, alpha, A, lda, tb ? B + (int64_t)o * ldb : B + o, ldb,
                 beta, C + o, ldc);
  }
}

// ---- stacked GRU ------------------------------------------------------------------------------
template <typename T>
struct GruWork {
  int steps = 0, B = 0, L = 0, H = 0;
  std::vector<T> prev, q, gates, hs;  // [L][steps*B][H or 3H]: per-layer saved activations
  std::vector<T> A;                   // [steps*B][3H] input projection of the current layer
  std::vector<T> hz, nq;              // [B][2H], [B][H] recurrent products of one step
  std::vector<T> dA, d_out, dh, dht, dq, dhn;

  void resize(int steps_, int B_, int L_, int H_) {
    steps = steps_, B = B_, L = L_, H = H_;
    const int64_t n = (int64_t)steps * B;
    prev.resize(L * n * H), q.resize(L * n * H), gates.resize(L * n * 3 * H), hs.resize(L * n * H);
    A.resize(n * 3 * H), hz.resize((int64_t)B * 2 * H), nq.resize((int64_t)B * H);
    dA.resize(n * 3 * H), d_out.resize(n * H);
    dh.resize((int64_t)B * H), dht.resize((int64_t)B * H), dq.resize((int64_t)B * H);
    dhn.resize((int64_t)B * H);
  }
};

// One layer over the block, slots [b0, b1): the recurrence of a slot never reads another slot.
template <typename T>
static void layer_forward_rows(const Blas &blas, GruWork<T> &w, int layer, const T *A,
                               const T *h0, const uint8_t *reset, const T *Wh, int b0, int b1) {
  const int B = w.B, H = w.H, m = b1 - b0;
  const int64_t off = (int64_t)layer * w.steps * B;
  T *prev = w.prev.data() + off * H, *q = w.q.data() + off * H, *hs = w.hs.data() + off * H;
  T *gates = w.gates.data() + off * 3 * H;
  for (int t = 0; t < w.steps; ++t) {
    for (int b = b0; b < b1; ++b) {
      T *p = prev + ((int64_t)t * B + b) * H;
      const T *src = t == 0 ? h0 + (int64_t)b * H : hs + ((int64_t)(t - 1) * B + b) * H;
      if (reset[(int64_t)t * B + b])
        std::fill(p, p + H, T(0));
      else
        std::copy(src, src + H, p);
    }
    const int64_t row0 = (int64_t)t * B + b0;
    gemm_rm<T>(blas, false, false, m, 2 * H, H, T(1), prev + row0 * H, H, Wh, 3 * H, T(0),
               w.hz.data() + (int64_t)b0 * 2 * H, 2 * H);
    for (int b = b0; b < b1; ++b) {
      const int64_t row = (int64_t)t * B + b;
      const T *__restrict a = A + row * 3 * H, *__restrict hz = w.hz.data() + (int64_t)b * 2 * H;
      const T *__restrict p = prev + row * H;
      T *__restrict g = gates + row * 3 * H, *__restrict qq = q + row * H;
      for (int j = 0; j < H; ++j) {
        const T r = gru_gate<T>(a[j], hz[j]);
        g[j] = r;
        g[H + j] = gru_gate<T>(a[H + j], hz[H + j]);
        qq[j] = r * p[j];
      }
    }
    gemm_rm<T>(blas, false, false, m, H, H, T(1), q + row0 * H, H, Wh + 2 * H, 3 * H, T(0),
               w.nq.data() + (int64_t)b0 * H, H);
    for (int b = b0; b < b1; ++b) {
      const int64_t row = (int64_t)t * B + b;
      const T *__restrict a = A + row * 3 * H, *__restrict nq = w.nq.data() + (int64_t)b * H;
      const T *__restrict p = prev + row * H;
      T *__restrict g = gates + row * 3 * H, *__restrict h = hs + row * H;
      for (int j = 0; j < H; ++j) {
        const T n = gru_candidate<T>(a[2 * H + j], nq[j]);
        g[2 * H + j] = n;
        h[j] = gru_state<T>(p[j], g[H + j], n);
      }
    }
  }
}

#define FASTREC_GRU_LAYER_FORWARD(T)                                                              \
  FASTREC_GRU_CLONE void layer_forward_rows_isa(const Blas &blas, GruWork<T> &w, int layer,    \
                                                const T *A, const T *h0, const uint8_t *reset,    \
                                                const T *Wh, int b0, int b1) {                    \
    layer_forward_rows<T>(blas, w, layer, A, h0, reset, Wh, b0, b1);                              \
  }
FASTREC_GRU_LAYER_FORWARD(float)
FASTREC_GRU_LAYER_FORWARD(double)
#undef FASTREC_GRU_LAYER_FORWARD

// Forward through all layers. A0: layer 0's input projections [steps*B][3H] (bias included).
// Wx_rest [L-1][H][3H], Wh [L][H][3H], b [L][3H]; h0 [L][B][H]. Outputs stay in the workspace.
template <typename T>
static void stack_forward(const Blas &blas, GruWork<T> &w, const T *A0, const T *h0,
                          const uint8_t *reset, const T *Wx_rest, const T *Wh, const T *b,
                          int n_threads) {
  const int B = w.B, H = w.H, n = w.steps * B;
  const int n_chunks = (B + GRU_ROW_CHUNK - 1) / GRU_ROW_CHUNK;
  const int nt = gru_threads(n_threads, n_chunks, 3.0 * w.steps * B * H * H);
  for (int l = 0; l < w.L; ++l) {
    const T *A = A0;
    if (l > 0) {
      T *Al = w.A.data();
      for (int64_t row = 0; row < n; ++row) std::copy(b + l * 3 * H, b + (l + 1) * 3 * H, Al + row * 3 * H);
      gemm_par<T>(blas, true, false, false, n, 3 * H, H, T(1),
                  w.hs.data() + (int64_t)(l - 1) * n * H, H, Wx_rest + (int64_t)(l - 1) * H * 3 * H,
                  3 * H, T(1), Al, 3 * H, n_threads);
      A = Al;
    }
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int c = 0; c < n_chunks; ++c)
      layer_forward_rows_isa(blas, w, l, A, h0 + (int64_t)l * B * H, reset,
                             Wh + (int64_t)l * H * 3 * H, c * GRU_ROW_CHUNK,
                             std::min(B, (c + 1) * GRU_ROW_CHUNK));
  }
}

// BPTT through one layer for slots [b0, b1), given w.d_out (gradient on this layer's outputs);
// writes w.dA and, when dh0 is not null, the gradient on the initial state.
template <typename T>
static void layer_backward_rows(const Blas &blas, GruWork<T> &w, int layer,
                                const uint8_t *reset, const T *Wh, T *dh0, int b0, int b1) {
  const int B = w.B, H = w.H, m = b1 - b0;
  const int64_t off = (int64_t)layer * w.steps * B;
  const T *prev = w.prev.data() + off * H, *gates = w.gates.data() + off * 3 * H;
  T *dh = w.dh.data(), *dht = w.dht.data(), *dq = w.dq.data(), *dhn = w.dhn.data();
  std::fill(dh + (int64_t)b0 * H, dh + (int64_t)b1 * H, T(0));
  for (int t = w.steps - 1; t >= 0; --t) {
    const int64_t row0 = (int64_t)t * B + b0;
    for (int b = b0; b < b1; ++b) {
      const int64_t row = (int64_t)t * B + b;
      const T *__restrict g = gates + row * 3 * H, *__restrict p = prev + row * H;
      const T *__restrict dout = w.d_out.data() + row * H, *__restrict dhb = dh + (int64_t)b * H;
      T *__restrict da = w.dA.data() + row * 3 * H, *__restrict d = dht + (int64_t)b * H;
      for (int j = 0; j < H; ++j) {
        d[j] = dout[j] + dhb[j];
        da[2 * H + j] = gru_grad_candidate<T>(d[j], g[H + j], g[2 * H + j]);
        da[H + j] = gru_grad_update<T>(d[j], g[H + j], g[2 * H + j], p[j]);
      }
    }
    gemm_rm<T>(blas, false, true, m, H, H, T(1), w.dA.data() + row0 * 3 * H + 2 * H, 3 * H,
               Wh + 2 * H, 3 * H, T(0), dq + (int64_t)b0 * H, H);
    for (int b = b0; b < b1; ++b) {
      const int64_t row = (int64_t)t * B + b;
      const T *__restrict g = gates + row * 3 * H, *__restrict p = prev + row * H;
      const T *__restrict d = dht + (int64_t)b * H, *__restrict dqb = dq + (int64_t)b * H;
      T *__restrict da = w.dA.data() + row * 3 * H, *__restrict o = dhn + (int64_t)b * H;
      for (int j = 0; j < H; ++j) {
        da[j] = gru_grad_reset<T>(dqb[j], p[j], g[j]);
        o[j] = gru_grad_state<T>(d[j], g[H + j], dqb[j], g[j]);
      }
    }
    gemm_rm<T>(blas, false, true, m, H, 2 * H, T(1), w.dA.data() + row0 * 3 * H, 3 * H, Wh, 3 * H,
               T(1), dhn + (int64_t)b0 * H, H);
    for (int b = b0; b < b1; ++b) {
      T *dhb = dh + (int64_t)b * H;
      if (reset[(int64_t)t * B + b])
        std::fill(dhb, dhb + H, T(0));
      else
        std::copy(dhn + (int64_t)b * H, dhn + (int64_t)(b + 1) * H, dhb);
    }
  }
  if (dh0 != nullptr) std::copy(dh + (int64_t)b0 * H, dh + (int64_t)b1 * H, dh0 + (int64_t)b0 * H);
}

#define FASTREC_GRU_LAYER_BACKWARD(T)                                                             \
  FASTREC_GRU_CLONE void layer_backward_rows_isa(const Blas &blas, GruWork<T> &w, int layer,   \
                                                 const uint8_t *reset, const T *Wh, T *dh0,       \
                                                 int b0, int b1) {                                \
    layer_backward_rows<T>(blas, w, layer, reset, Wh, dh0, b0, b1);                               \
  }
FASTREC_GRU_LAYER_BACKWARD(float)
FASTREC_GRU_LAYER_BACKWARD(double)
#undef FASTREC_GRU_LAYER_BACKWARD

// Column sums of a [rows][cols] matrix into out (overwritten), rows in order.
template <typename T>
static void column_sums(const T *a, int64_t rows, int cols, T *out, int n_threads) {
  const int n_chunks = (cols + GRU_COL_CHUNK - 1) / GRU_COL_CHUNK;
  const int nt = gru_threads(n_threads, n_chunks, (double)rows * cols);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int c = 0; c < n_chunks; ++c) {
    const int j0 = c * GRU_COL_CHUNK, j1 = std::min(cols, j0 + GRU_COL_CHUNK);
    for (int j = j0; j < j1; ++j) out[j] = T(0);
    for (int64_t i = 0; i < rows; ++i)
      for (int j = j0; j < j1; ++j) out[j] += a[i * cols + j];
  }
}

// Backward through all layers given d_top [steps*B][H]. Leaves dA0 in w.dA; writes dWx_rest,
// dWh, db (overwritten) and dh0 [L][B][H] when not null.
template <typename T>
static void stack_backward(const Blas &blas, GruWork<T> &w, const T *d_top, const uint8_t *reset,
                           const T *Wx_rest, const T *Wh, T *dWx_rest, T *dWh, T *db, T *dh0,
                           int n_threads) {
  const int B = w.B, H = w.H, n = w.steps * B;
  const int n_chunks = (B + GRU_ROW_CHUNK - 1) / GRU_ROW_CHUNK;
  const int nt = gru_threads(n_threads, n_chunks, 3.0 * w.steps * B * H * H);
  std::copy(d_top, d_top + (int64_t)n * H, w.d_out.data());
  for (int l = w.L - 1; l >= 0; --l) {
    const T *Whl = Wh + (int64_t)l * H * 3 * H;
    T *dh0l = dh0 ? dh0 + (int64_t)l * B * H : nullptr;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int c = 0; c < n_chunks; ++c)
      layer_backward_rows_isa(blas, w, l, reset, Whl, dh0l, c * GRU_ROW_CHUNK,
                              std::min(B, (c + 1) * GRU_ROW_CHUNK));
    const int64_t off = (int64_t)l * n;
    T *dWhl = dWh + (int64_t)l * H * 3 * H;
    gemm_par<T>(blas, false, true, false, H, 2 * H, n, T(1), w.prev.data() + off * H, H,
                w.dA.data(), 3 * H, T(0), dWhl, 3 * H, n_threads);
    gemm_par<T>(blas, false, true, false, H, H, n, T(1), w.q.data() + off * H, H,
                w.dA.data() + 2 * H, 3 * H, T(0), dWhl + 2 * H, 3 * H, n_threads);
    column_sums<T>(w.dA.data(), n, 3 * H, db + (int64_t)l * 3 * H, n_threads);
    if (l > 0) {
      const T *Wx = Wx_rest + (int64_t)(l - 1) * H * 3 * H;
      gemm_par<T>(blas, false, true, false, H, 3 * H, n, T(1), w.hs.data() + (off - n) * H, H,
                  w.dA.data(), 3 * H, T(0), dWx_rest + (int64_t)(l - 1) * H * 3 * H, 3 * H,
                  n_threads);
      gemm_par<T>(blas, true, false, true, n, H, 3 * H, T(1), w.dA.data(), 3 * H, Wx, 3 * H, T(0),
                  w.d_out.data(), H, n_threads);
    }
  }
}

// ---- sampled output layer ---------------------------------------------------------------------
template <typename T>
struct OutWork {
  std::vector<T> haug, ws, scores, ex, aux, colmax, tgt;
  std::vector<double> part;  // [n_chunks][4][B] partial sums of each sample chunk
  std::vector<double> stats;

  void resize(int B, int S, int H) {
    const int n_chunks = (S + GRU_SAMPLE_CHUNK - 1) / GRU_SAMPLE_CHUNK;
    haug.resize((int64_t)B * (H + 1)), ws.resize((int64_t)S * (H + 1));
    scores.resize((int64_t)S * B), ex.resize((int64_t)S * B), aux.resize((int64_t)S * B);
    part.resize((int64_t)n_chunks * 4 * B), stats.resize((int64_t)4 * B);
    colmax.resize(B), tgt.resize(B);
  }
};

// What the sample-chunk passes of output_loss share.
template <typename T, typename I>
struct OutPass {
  const Blas *blas;
  OutWork<T> *ow;
  const T *out_table;
  const I *samples;
  int N, H1, S, loss;
  T bpreg, grad_scale;
  T *d_rows;
};

// The three passes over sample chunk c of output_loss: 1. gather the sampled rows, score them
// and take each column's max (over negatives only for the BPR-max and TOP1-max softmax);
// 2. exponentials and the per-column partial sums; 4. score gradients (in place of the scores),
// then the sampled rows' gradients.
template <typename T, typename I>
static void output_pass(const OutPass<T, I> &a, int pass, int c) {
  OutWork<T> &ow = *a.ow;
  const int N = a.N, H1 = a.H1, loss = a.loss;
  const bool neg_only = loss != 0;
  const int j0 = c * GRU_SAMPLE_CHUNK, j1 = std::min(a.S, j0 + GRU_SAMPLE_CHUNK);
  T *haug = ow.haug.data(), *sc = ow.scores.data(), *ex = ow.ex.data(), *aux = ow.aux.data();
  double *p = ow.part.data() + (int64_t)c * 4 * N;
  if (pass == 1) {
    for (int j = j0; j < j1; ++j)
      std::copy(a.out_table + (int64_t)a.samples[j] * H1,
                a.out_table + (int64_t)(a.samples[j] + 1) * H1, ow.ws.data() + (int64_t)j * H1);
    gemm_rm<T>(*a.blas, false, true, j1 - j0, N, H1, T(1), ow.ws.data() + (int64_t)j0 * H1, H1,
               haug, H1, T(0), sc + (int64_t)j0 * N, N);
    for (int i = 0; i < N; ++i) p[i] = -INFINITY;
    for (int j = j0; j < j1; ++j) {
      const T *row = sc + (int64_t)j * N;
      for (int i = 0; i < N; ++i) {
        const double v = (neg_only && i == j) ? -INFINITY : (double)row[i];
        p[i] = v > p[i] ? v : p[i];
      }
    }
  } else if (pass == 2) {
    const T *m = ow.colmax.data(), *tgt = ow.tgt.data();
    std::fill(p, p + 4 * N, 0.0);
    for (int j = j0; j < j1; ++j) {
      const T *r = sc + (int64_t)j * N;
      T *e = ex + (int64_t)j * N, *x = aux + (int64_t)j * N;
      for (int i = 0; i < N; ++i) {
        const T keep = (neg_only && i == j) ? T(0) : T(1);
        e[i] = keep * gru_exp<T>(r[i] - m[i]);
      }
      if (loss == 1) {
        for (int i = 0; i < N; ++i) x[i] = gru_sigmoid<T>(tgt[i] - r[i]);
        for (int i = 0; i < N; ++i) {
          p[i] += (double)e[i];
          p[N + i] += (double)(e[i] * x[i]);
          p[2 * N + i] += (double)(e[i] * x[i] * (T(1) - x[i]));
          p[3 * N + i] += (double)(e[i] * r[i] * r[i]);
        }
      } else if (loss == 2) {
        for (int i = 0; i < N; ++i) x[i] = gru_sigmoid<T>(r[i] - tgt[i]);
        for (int i = 0; i < N; ++i) {
          const T v = gru_sigmoid<T>(r[i] * r[i]);
          p[i] += (double)e[i];
          p[N + i] += (double)(e[i] * (x[i] + v));
          p[2 * N + i] += (double)(e[i] * x[i] * (T(1) - x[i]));
        }
      } else {
        for (int i = 0; i < N; ++i) p[i] += (double)e[i];
      }
    }
  } else {
    const double *Z = ow.stats.data(), *P = Z + N, *R = Z + 2 * N, *dt = Z + 3 * N;
    for (int j = j0; j < j1; ++j) {
      T *r = sc + (int64_t)j * N;
      const T *e = ex + (int64_t)j * N, *x = aux + (int64_t)j * N;
      for (int i = 0; i < N; ++i) {
        const T s = e[i] / (T)Z[i];
        T g;
        if (loss == 0)
          g = s - (i == j ? T(1) : T(0));
        else if (loss == 1)
          g = bpr_max_grad_negative<T>(s, x[i], r[i], (T)P[i], (T)R[i], a.bpreg);
        else
          g = top1_max_grad_negative<T>(s, x[i], gru_sigmoid<T>(r[i] * r[i]), r[i], (T)P[i]);
        if (neg_only && i == j) g = (T)dt[i];
        r[i] = g * a.grad_scale;
      }
    }
    gemm_rm<T>(*a.blas, false, false, j1 - j0, H1, N, T(1), sc + (int64_t)j0 * N, N, haug, H1,
               T(0), a.d_rows + (int64_t)j0 * H1, H1);
  }
}

#define FASTREC_GRU_OUTPUT_PASS(T, I)                                                             \
  FASTREC_GRU_CLONE void output_pass_isa(const OutPass<T, I> &a, int pass, int c) {              \
    output_pass<T, I>(a, pass, c);                                                                \
  }
FASTREC_GRU_OUTPUT_PASS(float, int32_t)
FASTREC_GRU_OUTPUT_PASS(float, int64_t)
FASTREC_GRU_OUTPUT_PASS(double, int32_t)
FASTREC_GRU_OUTPUT_PASS(double, int64_t)
#undef FASTREC_GRU_OUTPUT_PASS

// Scores hidden [N][H] against out_table rows samples[0..S) (row i's target is sample i), the
// loss and its gradient. Scores are kept transposed, [S][N], so the per-row reductions over the
// samples run as vector operations across the N rows. Writes d_hidden [N][H] and the gradients
// of the sampled rows d_rows [S][H+1]; returns the summed loss.
template <typename T, typename I>
static double output_loss(const Blas &blas, OutWork<T> &ow, const T *hidden, int N, int H,
                          const T *out_table, const I *samples, int S, int loss, T bpreg,
                          T grad_scale, T *d_hidden, T *d_rows, int n_threads) {
  const int H1 = H + 1;
  const int n_chunks = (S + GRU_SAMPLE_CHUNK - 1) / GRU_SAMPLE_CHUNK;
  const int nt = gru_threads(n_threads, n_chunks, (double)S * N * H1);
  const OutPass<T, I> a{&blas, &ow, out_table, samples, N, H1, S, loss, bpreg, grad_scale, d_rows};
  T *haug = ow.haug.data(), *sc = ow.scores.data();
  double *part = ow.part.data(), *st = ow.stats.data();
  for (int i = 0; i < N; ++i) {
    std::copy(hidden + (int64_t)i * H, hidden + (int64_t)(i + 1) * H, haug + (int64_t)i * H1);
    haug[(int64_t)i * H1 + H] = T(1);
  }
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int c = 0; c < n_chunks; ++c) output_pass_isa(a, 1, c);
  T *m = ow.colmax.data(), *tgt = ow.tgt.data();
  for (int i = 0; i < N; ++i) {
    double v = -INFINITY;
    for (int c = 0; c < n_chunks; ++c) v = std::max(v, part[(int64_t)c * 4 * N + i]);
    m[i] = (T)v;
  }
  for (int i = 0; i < N; ++i) tgt[i] = sc[(int64_t)i * N + i];
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int c = 0; c < n_chunks; ++c) output_pass_isa(a, 2, c);
  // 3. per-row loss and the statistics its gradient needs.
  double total = 0.0;
  double *Z = st, *P = st + N, *R = st + 2 * N, *dt = st + 3 * N;
  for (int i = 0; i < N; ++i) {
    double s[4] = {0, 0, 0, 0};
    for (int c = 0; c < n_chunks; ++c)
      for (int k = 0; k < 4; ++k) s[k] += part[((int64_t)c * 4 + k) * N + i];
    Z[i] = s[0];
    if (loss == 0) {
      total += log(s[0]) + (double)m[i] - (double)tgt[i];
    } else if (loss == 1) {
      P[i] = s[1] / s[0];
      R[i] = s[3] / s[0];
      total += -log(P[i] + 1e-24) + (double)bpreg * R[i];
      dt[i] = -(s[2] / s[0]) / (P[i] + 1e-24);
    } else {
      P[i] = s[1] / s[0];
      total += P[i];
      dt[i] = -(s[2] / s[0]);
    }
  }
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int c = 0; c < n_chunks; ++c) output_pass_isa(a, 4, c);
  // split by columns: a row split would pack all of ws again for every chunk of rows
  gemm_par<T>(blas, false, true, false, N, H, S, T(1), sc, N, ow.ws.data(), H1, T(0),
              d_hidden, H, n_threads);
  return total;
}

// ---- optimizer steps (optim.h) ----------------------------------------------------------------
#define FASTREC_GRU_OPT_APPLY(T)                                                                  \
  FASTREC_GRU_CLONE void opt_apply_isa(T *w, T *s1, T *s2, const T *g, int64_t n,                 \
                                       const OptimStep<T> &o) {                                   \
    optim_update_range<T>(o, w, s1, s2, g, n);                                                    \
  }
FASTREC_GRU_OPT_APPLY(float)
FASTREC_GRU_OPT_APPLY(double)
#undef FASTREC_GRU_OPT_APPLY

template <typename T>
static void gru_dense_update(T *w, T *s1, T *s2, const T *g, int64_t n, const OptimStep<T> &o,
                             int n_threads) {
  const int64_t chunk = 4096, n_chunks = (n + chunk - 1) / chunk;
#pragma omp parallel for num_threads(n_threads) schedule(static) \
    if (n >= GRU_PARALLEL_MIN_ELEMENTS && n_threads > 1)
  for (int64_t c = 0; c < n_chunks; ++c) {
    const int64_t k0 = c * chunk;
    opt_apply_isa(w + k0, s1 + k0, s2 + k0, g + k0, std::min(chunk, n - k0), o);
  }
}

// Sparse rows: duplicates are summed into their first occurrence (in order), then every distinct
// row steps once. Rows are split among the threads by id (row i belongs to part i % parts), so
// each part scans the rows in order and the sums, hence the result, do not depend on the thread
// count. slot_of [n_rows] must be all -1 on entry and is restored.
template <typename T, typename I>
static void rows_update_part(T *table, T *s1, T *s2, int64_t width, const I *rows, T *grads,
                             int64_t n, int64_t *slot_of, const OptimStep<T> &o, int part,
                             int parts) {
  for (int64_t k = 0; k < n; ++k) {
    const int64_t i = rows[k];
    if (i % parts != part) continue;
    if (slot_of[i] < 0) {
      slot_of[i] = k;
    } else {
      T *__restrict dst = grads + slot_of[i] * width;
      const T *__restrict src = grads + k * width;
      for (int64_t f = 0; f < width; ++f) dst[f] += src[f];
    }
  }
  for (int64_t k = 0; k < n; ++k) {
    const int64_t i = rows[k];
    if (i % parts != part || slot_of[i] != k) continue;
    optim_update_range<T>(o, table + i * width, s1 + i * width, s2 + i * width, grads + k * width,
                          width);
    slot_of[i] = -1;
  }
}

#define FASTREC_GRU_ROWS_PART(T, I)                                                               \
  FASTREC_GRU_CLONE void rows_update_part_isa(T *table, T *s1, T *s2, int64_t width,              \
                                              const I *rows, T *grads, int64_t n,                 \
                                              int64_t *slot_of, const OptimStep<T> &o,            \
                                              int part, int parts) {                              \
    rows_update_part<T, I>(table, s1, s2, width, rows, grads, n, slot_of, o, part, parts);        \
  }
FASTREC_GRU_ROWS_PART(float, int32_t)
FASTREC_GRU_ROWS_PART(float, int64_t)
FASTREC_GRU_ROWS_PART(double, int32_t)
FASTREC_GRU_ROWS_PART(double, int64_t)
#undef FASTREC_GRU_ROWS_PART

template <typename T, typename I>
static void gru_rows_update(T *table, T *s1, T *s2, int64_t width, const I *rows, T *grads,
                            int64_t n, int64_t *slot_of, const OptimStep<T> &o, int n_threads) {
  const int parts = (double)n * width >= GRU_PARALLEL_MIN_ELEMENTS ? std::max(1, n_threads) : 1;
#pragma omp parallel for num_threads(parts) schedule(static, 1) if (parts > 1)
  for (int part = 0; part < parts; ++part)
    rows_update_part_isa(table, s1, s2, width, rows, grads, n, slot_of, o, part, parts);
}

// ---- the training epoch -----------------------------------------------------------------------
struct GruSpec {
  int embedded, loss, n_sample, bptt, method;
  double bpreg, dropout_embed, dropout_hidden, lr, momentum, beta1, beta2, eps;
  int64_t step0;
  uint64_t seed, epoch;
};

template <typename T, typename I>
static double gru4rec_epoch_impl(const Blas &blas, const I *inputs, const I *targets,
                                 const uint8_t *reset, int64_t n_steps, int B, int L, int H,
                                 T *hidden, T *emb, T *emb_s1, T *emb_s2, int64_t D, T *gru,
                                 T *gru_s1, T *gru_s2, int64_t n_gru, T *out, T *out_s1,
                                 T *out_s2, int64_t n_items, const double *neg_prob,
                                 const I *neg_alias, const GruSpec &spec, int n_threads,
                                 int64_t *n_events) {
  const int Tb = spec.bptt, K = spec.n_sample, S = B + K, H3 = 3 * H;
  const int64_t n = (int64_t)Tb * B, n_blocks = n_steps / Tb;
  const T *Wx0 = gru;
  const int64_t wx0_size = spec.embedded ? D * H3 : 0;
  const T *Wx_rest = gru + wx0_size, *Wh = Wx_rest + (int64_t)(L - 1) * H * H3;
  const T *bias = Wh + (int64_t)L * H * H3;
  GruWork<T> w;
  w.resize(Tb, B, L, H);
  OutWork<T> ow;
  ow.resize(B, S, H);
  std::vector<T> X(n * D), A0(n * H3), mask_x, top(n * H), mask_h, d_top(n * H);
  std::vector<T> grads(n_gru), dX(n * D), out_grads((int64_t)Tb * S * (H + 1));
  std::vector<I> samples((int64_t)Tb * S), in_rows(n);
  std::vector<int64_t> slot_of(n_items, -1);
  if (spec.dropout_embed > 0) mask_x.resize(n * D);
  if (spec.dropout_hidden > 0) mask_h.resize(n * H);
  // streams as rng_streams in fastrec/backends/_contract.py
  const uint64_t key_neg = rng_key(spec.seed, 4 * spec.epoch + 1);
  const uint64_t key_emb = rng_key(spec.seed, 4 * spec.epoch + 2);
  const uint64_t key_hid = rng_key(spec.seed, 4 * spec.epoch + 3);
  const T keep_x = (T)(1.0 / (1.0 - spec.dropout_embed)), keep_h = (T)(1.0 / (1.0 - spec.dropout_hidden));
  const T grad_scale = (T)(1.0 / (double)n);
  double total = 0.0;
  for (int64_t blk = 0; blk < n_blocks; ++blk) {
    const int64_t s0 = blk * Tb;
    const I *x_items = inputs + s0 * B;
    const uint8_t *blk_reset = reset + s0 * B;
    // embedding rows (with dropout) and layer 0's input projection
#pragma omp parallel for num_threads(n_threads) schedule(static) \
    if ((double)n * H3 >= GRU_PARALLEL_MIN_WORK && n_threads > 1)
    for (int64_t row = 0; row < n; ++row) {
      const T *src = emb + (int64_t)x_items[row] * D;
      T *dst = X.data() + row * D;
      if (spec.dropout_embed > 0) {
        for (int64_t f = 0; f < D; ++f) {
          const int64_t k = row * D + f;
          const double u = rng_uniform(rng_at(key_emb, (uint64_t)(s0 * B * D + k)));
          mask_x[k] = u >= spec.dropout_embed ? keep_x : T(0);
          dst[f] = src[f] * mask_x[k];
        }
      } else {
        std::copy(src, src + D, dst);
      }
      T *a = A0.data() + row * H3;
      if (spec.embedded)
        std::copy(bias, bias + H3, a);
      else
        for (int j = 0; j < H3; ++j) a[j] = dst[j] + bias[j];
    }
    if (spec.embedded)
      gemm_par<T>(blas, true, false, false, (int)n, H3, (int)D, T(1), X.data(), (int)D, Wx0, H3,
                  T(1), A0.data(), H3, n_threads);
    stack_forward<T>(blas, w, A0.data(), hidden, blk_reset, Wx_rest, Wh, bias, n_threads);
    const T *hs_top = w.hs.data() + (int64_t)(L - 1) * n * H;
    if (spec.dropout_hidden > 0) {
      for (int64_t k = 0; k < n * H; ++k) {
        const double u = rng_uniform(rng_at(key_hid, (uint64_t)(s0 * B * H + k)));
        mask_h[k] = u >= spec.dropout_hidden ? keep_h : T(0);
        top[k] = hs_top[k] * mask_h[k];
      }
    } else {
      std::copy(hs_top, hs_top + n * H, top.data());
    }
    // output layer, step by step (in-batch negatives are that step's targets)
    for (int t = 0; t < Tb; ++t) {
      I *smp = samples.data() + (int64_t)t * S;
      std::copy(targets + (s0 + t) * B, targets + (s0 + t + 1) * B, smp);
      for (int k = 0; k < K; ++k)
        smp[B + k] = rng_alias_draw<I>(rng_at(key_neg, (uint64_t)((s0 + t) * K + k)), neg_prob,
                                       neg_alias, (uint64_t)n_items);
      total += output_loss<T, I>(blas, ow, top.data() + (int64_t)t * B * H, B, H, out, smp, S,
                                 spec.loss, (T)spec.bpreg, grad_scale,
                                 d_top.data() + (int64_t)t * B * H,
                                 out_grads.data() + (int64_t)t * S * (H + 1), n_threads);
    }
    if (spec.dropout_hidden > 0)
      for (int64_t k = 0; k < n * H; ++k) d_top[k] *= mask_h[k];
    T *g_wx0 = grads.data(), *g_wx_rest = g_wx0 + wx0_size;
    T *g_wh = g_wx_rest + (int64_t)(L - 1) * H * H3, *g_b = g_wh + (int64_t)L * H * H3;
    stack_backward<T>(blas, w, d_top.data(), blk_reset, Wx_rest, Wh, g_wx_rest, g_wh, g_b,
                      nullptr, n_threads);
    if (spec.embedded) {
      gemm_par<T>(blas, false, true, false, (int)D, H3, (int)n, T(1), X.data(), (int)D,
                  w.dA.data(), H3, T(0), g_wx0, H3, n_threads);
      gemm_par<T>(blas, true, false, true, (int)n, (int)D, H3, T(1), w.dA.data(), H3, Wx0, H3,
                  T(0), dX.data(), (int)D, n_threads);
      if (spec.dropout_embed > 0)
        for (int64_t k = 0; k < n * D; ++k) dX[k] *= mask_x[k];
    } else {
      std::copy(w.dA.begin(), w.dA.begin() + n * H3, dX.begin());
    }
    const OptimStep<T> o = make_optim_step<T>(spec.method, spec.lr, spec.beta1, spec.beta2,
                                              spec.eps, spec.momentum, spec.step0 + blk + 1);
    gru_dense_update<T>(gru, gru_s1, gru_s2, grads.data(), n_gru, o, n_threads);
    std::copy(x_items, x_items + n, in_rows.begin());
    gru_rows_update<T, I>(emb, emb_s1, emb_s2, D, in_rows.data(), dX.data(), n, slot_of.data(),
                          o, n_threads);
    gru_rows_update<T, I>(out, out_s1, out_s2, H + 1, samples.data(), out_grads.data(),
                          (int64_t)Tb * S, slot_of.data(), o, n_threads);
    for (int l = 0; l < L; ++l)
      std::copy(w.hs.data() + ((int64_t)l * n + (int64_t)(Tb - 1) * B) * H,
                w.hs.data() + ((int64_t)l * n + (int64_t)Tb * B) * H, hidden + (int64_t)l * B * H);
  }
  *n_events = n_blocks * n;
  return total;
}

// ---- entry points for the Cython module (non-template overloads per dtype and index type) -----
// Refills the workspace's saved activations from a forward pass's outputs (hs, gates).
template <typename T>
static void restore_work(GruWork<T> &w, const T *h0, const uint8_t *reset, const T *hs,
                         const T *gates) {
  const int B = w.B, H = w.H;
  const int64_t n = (int64_t)w.steps * B;
  std::copy(hs, hs + w.L * n * H, w.hs.data());
  std::copy(gates, gates + w.L * n * 3 * H, w.gates.data());
  for (int l = 0; l < w.L; ++l)
    for (int t = 0; t < w.steps; ++t)
      for (int b = 0; b < B; ++b) {
        const int64_t row = (int64_t)l * n + (int64_t)t * B + b;
        const T *src = t == 0 ? h0 + ((int64_t)l * B + b) * H : hs + (row - B) * H;
        const T *r = gates + row * 3 * H;
        for (int j = 0; j < H; ++j) {
          const T p = reset[(int64_t)t * B + b] ? T(0) : src[j];
          w.prev[row * H + j] = p;
          w.q[row * H + j] = r[j] * p;
        }
      }
}

// Entry points get the runtime ISA dispatch of the other CPU kernels; flatten inlines the gate,
// scoring and optimizer loops (OpenMP bodies included) into each clone, so those are compiled for
// that ISA too.
#define FASTREC_GRU_ENTRY FASTREC_CPU_CLONES __attribute__((flatten))

#define FASTREC_GRU_ENTRY_T(T)                                                                    \
  FASTREC_GRU_ENTRY                                                                               \
  void gru_stack_forward(const Blas &blas, int steps, int B, int L, int H, const T *A0,        \
                         const T *h0, const uint8_t *reset, const T *Wx_rest, const T *Wh,        \
                         const T *b, T *hs, T *gates, int n_threads) {                            \
    GruWork<T> w;                                                                                 \
    w.resize(steps, B, L, H);                                                                     \
    stack_forward<T>(blas, w, A0, h0, reset, Wx_rest, Wh, b, n_threads);                          \
    std::copy(w.hs.begin(), w.hs.end(), hs);                                                      \
    std::copy(w.gates.begin(), w.gates.end(), gates);                                             \
  }                                                                                               \
  FASTREC_GRU_ENTRY                                                                               \
  void gru_stack_backward(const Blas &blas, int steps, int B, int L, int H, const T *h0,       \
                          const uint8_t *reset, const T *Wx_rest, const T *Wh, const T *hs,       \
                          const T *gates, const T *d_top, T *dA0, T *dh0, T *dWx_rest, T *dWh,    \
                          T *db, int n_threads) {                                                 \
    GruWork<T> w;                                                                                 \
    w.resize(steps, B, L, H);                                                                     \
    restore_work<T>(w, h0, reset, hs, gates);                                                     \
    stack_backward<T>(blas, w, d_top, reset, Wx_rest, Wh, dWx_rest, dWh, db, dh0, n_threads);     \
    std::copy(w.dA.begin(), w.dA.end(), dA0);                                                     \
  }

#define FASTREC_GRU_ENTRY_TI(T, I)                                                                \
  FASTREC_GRU_ENTRY                                                                               \
  double gru_output_loss(const Blas &blas, const T *hidden, int N, int H, const T *out_table,  \
                         const I *samples, int S, int loss, double bpreg, double grad_scale,      \
                         T *d_hidden, T *d_rows, int n_threads) {                                 \
    OutWork<T> ow;                                                                                \
    ow.resize(N, S, H);                                                                           \
    return output_loss<T, I>(blas, ow, hidden, N, H, out_table, samples, S, loss, (T)bpreg,       \
                             (T)grad_scale, d_hidden, d_rows, n_threads);                         \
  }                                                                                               \
  FASTREC_GRU_ENTRY                                                                               \
  double gru4rec_epoch(const Blas &blas, const I *inputs, const I *targets,                    \
                       const uint8_t *reset, int64_t n_steps, int B, int L, int H, T *hidden,     \
                       T *emb, T *emb_s1, T *emb_s2, int64_t D, T *gru, T *gru_s1, T *gru_s2,     \
                       int64_t n_gru, T *out, T *out_s1, T *out_s2, int64_t n_items,              \
                       const double *neg_prob, const I *neg_alias, const GruSpec &spec,           \
                       int n_threads, int64_t *n_events) {                                        \
    return gru4rec_epoch_impl<T, I>(blas, inputs, targets, reset, n_steps, B, L, H, hidden, emb,  \
                                    emb_s1, emb_s2, D, gru, gru_s1, gru_s2, n_gru, out, out_s1,   \
                                    out_s2, n_items, neg_prob, neg_alias, spec, n_threads,        \
                                    n_events);                                                    \
  }

FASTREC_GRU_ENTRY_T(float)
FASTREC_GRU_ENTRY_T(double)
FASTREC_GRU_ENTRY_TI(float, int32_t)
FASTREC_GRU_ENTRY_TI(float, int64_t)
FASTREC_GRU_ENTRY_TI(double, int32_t)
FASTREC_GRU_ENTRY_TI(double, int64_t)
#undef FASTREC_GRU_ENTRY_T
#undef FASTREC_GRU_ENTRY_TI
#undef FASTREC_GRU_ENTRY
#undef FASTREC_GRU_CLONE

}  // namespace fastrec
