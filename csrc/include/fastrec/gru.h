// Per-element math of GRU4Rec: alias sampling on the counter-based RNG (rng.h), exp/sigmoid/tanh,
// GRU gates forward and backward and the sampled-output losses (cross-entropy, BPR-max,
// TOP1-max); the optimizer is optim.h's.
// Included by the Cython kernels (through gru_cpu.h) and the CUDA kernels (csrc/cuda/gru.cu); the Numba mirror in
// fastrec/backends/numba/gru_scalar.py keeps the same names and order of operations.
//
// GRU (GRU4Rec's form, reset applied before the recurrent product):
//   r = sig(a_r + h Wh_r)   z = sig(a_z + h Wh_z)   n = tanh(a_n + (r * h) Wh_n)
//   h' = (1 - z) h + z n
#pragma once

#if !defined(__CUDACC_RTC__)  // NVRTC has no C library headers (math and memcpy are built in)
#include <math.h>
#include <string.h>
#endif

#include "fastrec/common.h"
#include "fastrec/rng.h"

namespace fastrec {

// ---- negative sampling ------------------------------------------------------------------------
// Walker/Vose alias draw among n items from 64 random bits of rng.h, integer arithmetic only, so
// every backend picks the same item: rng_below on the high 32 bits chooses the bucket, the low
// 32 bits are the coin.
template <typename I>
FASTREC_HD I rng_alias_draw(uint64_t bits, const double *prob, const I *alias, uint64_t n) {
  const uint64_t bucket = rng_below(bits, n);
  const double coin = (double)(bits & 0xFFFFFFFFULL) * (1.0 / 4294967296.0);
  return coin < prob[bucket] ? (I)bucket : alias[bucket];
}

// ---- transcendental functions -------------------------------------------------------------
// exp for float: Cody-Waite reduction to [-ln2/2, ln2/2] and a degree-6 Taylor polynomial
// (relative error < 3e-7), written without libm calls so the loops over a batch vectorise.
template <typename T>
FASTREC_HD T gru_exp(T x) {
  if constexpr (sizeof(T) == sizeof(double)) {
    return exp(x);
  } else {
    x = x > 88.0f ? 88.0f : (x < -87.0f ? -87.0f : x);
    // round(x / ln2) by the 1.5 * 2^23 shifter: the sum's low mantissa bits hold the integer,
    // so neither floorf nor a float->int conversion is needed and the loop vectorises on SSE2.
    const float shifted = x * 1.44269504f + 12582912.0f;
    const float k = shifted - 12582912.0f;
    int32_t ki;
    memcpy(&ki, &shifted, sizeof(ki));
    ki -= 0x4B400000;
    const float r = (x - k * 0.693145752f) - k * 1.42860677e-6f;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const int32_t bits = (ki + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof(scale));
    return p * scale;
  }
}

template <typename T>
FASTREC_HD T gru_sigmoid(T x) {
  return T(1) / (T(1) + gru_exp<T>(-x));
}

template <typename T>
FASTREC_HD T gru_tanh(T x) {
  return T(1) - T(2) / (T(1) + gru_exp<T>(T(2) * x));
}

// ---- GRU gates --------------------------------------------------------------------------------
// r or z from the input projection and the recurrent product.
template <typename T>
FASTREC_HD T gru_gate(T a, T hproj) {
  return gru_sigmoid<T>(a + hproj);
}

template <typename T>
FASTREC_HD T gru_candidate(T a, T qproj) {
  return gru_tanh<T>(a + qproj);
}

template <typename T>
FASTREC_HD T gru_state(T h, T z, T n) {
  return (T(1) - z) * h + z * n;
}

// Backward of one unit given dh (gradient on h'): pre-activation gradients of n and z.
template <typename T>
FASTREC_HD T gru_grad_candidate(T dh, T z, T n) {
  return dh * z * (T(1) - n * n);
}

template <typename T>
FASTREC_HD T gru_grad_update(T dh, T z, T n, T h) {
  return dh * (n - h) * z * (T(1) - z);
}

// dq is the gradient on q = r * h (from the candidate's recurrent product).
template <typename T>
FASTREC_HD T gru_grad_reset(T dq, T h, T r) {
  return dq * h * r * (T(1) - r);
}

// Gradient on the previous state, without the recurrent-product terms (added by a GEMM).
template <typename T>
FASTREC_HD T gru_grad_state(T dh, T z, T dq, T r) {
  return dh * (T(1) - z) + dq * r;
}

// ---- sampled-output losses (GRU4Rec v2) -------------------------------------------------------
// Per row: t is the target score, r a negative's score, s its softmax weight among negatives.
// BPR-max: loss = -log(P + 1e-24) + bpreg R with P = sum s sig(t - r), R = sum s r^2.
template <typename T>
FASTREC_HD T bpr_max_grad_negative(T s, T sig, T r, T P, T R, T bpreg) {
  return -s * (sig * sig - P) / (P + T(1e-24)) + bpreg * s * (r * r + T(2) * r - R);
}

// TOP1-max: loss = F = sum s (sig(r - t) + sig(r^2)); u = sig(r - t), v = sig(r^2).
template <typename T>
FASTREC_HD T top1_max_grad_negative(T s, T u, T v, T r, T F) {
  return s * (u + v - F) + s * (u * (T(1) - u) + T(2) * r * v * (T(1) - v));
}

}  // namespace fastrec
