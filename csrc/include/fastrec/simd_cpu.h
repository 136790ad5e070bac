// Rows of a compile-time rank K held in CPU vector registers, for the register-resident kernel
// paths (SGD, NMF), and the per-ISA versions of the functions that use them.
//
// A row is K / W native vectors of VB bytes (W elements each). VB is the widest vector the
// running ISA has: 64 bytes with AVX-512, 32 with AVX2, 16 with SSE2. Wider GCC vectors than the
// ISA's are no shortcut: GCC keeps them in memory and splits every operation, which made the
// AVX2 build of these loops 15-30x slower than the AVX-512 one.
//
// Element-wise arithmetic does not depend on VB. Dot products are summed in sgd_lane_dot's
// order (16 lanes, lane l gets elements f = l mod 16, then halved 8/4/2/1) whatever VB is, so
// every ISA version rounds alike and matches the generic (scalar-loop) paths bit for bit.
// Fused multiply-adds are explicit (fma_axpy), never left to the compiler's contraction.
#pragma once

#include <cmath>
#include <utility>  // std::integer_sequence

#include "fastrec/common.h"
#include "fastrec/sgd.h"

namespace fastrec {

#define FASTREC_SIMD_INLINE inline __attribute__((always_inline))

// FASTREC_SIMD_VERSIONS(EXTRA, RET, NAME, PARAMS, BODY...) defines the function NAME once per
// ISA level, with `constexpr int VB` (vector bytes) in scope in BODY; the loader binds the
// version for the running CPU (GCC function multiversioning). EXTRA: further attributes, or
// nothing. Without multiversioning there is one version, for the compiler's target.
#if defined(FASTREC_HAVE_CPU_CLONES)
#define FASTREC_SIMD_VERSIONS(EXTRA, RET, NAME, PARAMS, ...)                \
  __attribute__((target("arch=x86-64-v4"))) EXTRA RET NAME PARAMS {         \
    constexpr int VB = 64;                                                  \
    __VA_ARGS__                                                             \
  }                                                                         \
  __attribute__((target("arch=x86-64-v3"))) EXTRA RET NAME PARAMS {         \
    constexpr int VB = 32;                                                  \
    __VA_ARGS__                                                             \
  }                                                                         \
  __attribute__((target("default"))) EXTRA RET NAME PARAMS {                \
    constexpr int VB = 16;                                                  \
    __VA_ARGS__                                                             \
  }
#else
#if defined(__AVX512F__)
#define FASTREC_SIMD_BYTES 64
#elif defined(__AVX2__)
#define FASTREC_SIMD_BYTES 32
#else
#define FASTREC_SIMD_BYTES 16
#endif
#define FASTREC_SIMD_VERSIONS(EXTRA, RET, NAME, PARAMS, ...) \
  EXTRA RET NAME PARAMS {                                    \
    constexpr int VB = FASTREC_SIMD_BYTES;                   \
    __VA_ARGS__                                              \
  }
#endif

// Whether the version for VB has fused multiply-add instructions (x86-64-v3 and up do).
template <int VB>
constexpr bool simd_has_fma() {
#if defined(FASTREC_HAVE_CPU_CLONES)
  return VB >= 32;
#elif defined(__FMA__) || defined(__aarch64__)
  return true;
#else
  return false;
#endif
}

// Vector registers of the version for VB (AVX-512 has 32, AVX2 and SSE2 16).
template <int VB>
constexpr int simd_registers() {
  return VB == 64 ? 32 : 16;
}

template <typename T, int K, int VB>
struct SimdRow;

// Whether two rows of rank K fit in the registers of the version for VB. Larger rows spill
// every vector to the stack, and the generic (scalar-loop) paths are faster there (SGD at
// K = 112 float32 with AVX2: 2x), so the register paths are taken only when this holds.
template <typename T, int K, int VB>
constexpr bool simd_rows_fit() {
  return 2 * SimdRow<T, K, VB>::NV <= simd_registers<VB>();
}

template <typename T, int VB>
struct SimdVec {
  typedef T V __attribute__((vector_size(VB)));
  static constexpr int W = VB / (int)sizeof(T);

  static FASTREC_SIMD_INLINE V load(const T *p) {
    V out;
    __builtin_memcpy(&out, p, sizeof(V));
    return out;
  }
  static FASTREC_SIMD_INLINE void store(T *p, const V &v) { __builtin_memcpy(p, &v, sizeof(V)); }
  // c + *a * x per lane, rounded once where the version has FMA (simd_has_fma), else multiplied
  // then added. The FMA is explicit so it does not depend on -ffp-contract. On x86 it is one
  // instruction in inline assembly, broadcasting the scalar straight from memory (hence the
  // pointer): intrinsics cannot be inlined into these target-less templates, and GCC turns a
  // vector of per-lane std::fma into memory round trips (a 1.7x slower NMF iteration). Other
  // CPUs with FMA take that per-lane form.
  static FASTREC_SIMD_INLINE V madd(const T *a, const V &x, V c) {
    if constexpr (!simd_has_fma<VB>()) {
      return c + x * *a;
    } else {
#if defined(__x86_64__)
      if constexpr (VB == 64 && sizeof(T) == 4) {
        __asm__("vfmadd231ps %[a]%{1to16%}, %[x], %[c]" : [c] "+v"(c) : [x] "v"(x), [a] "m"(*a));
      } else if constexpr (VB == 64) {
        __asm__("vfmadd231pd %[a]%{1to8%}, %[x], %[c]" : [c] "+v"(c) : [x] "v"(x), [a] "m"(*a));
      } else {
        V b;
        if constexpr (sizeof(T) == 4)
          __asm__("vbroadcastss %[a], %[b]\n\tvfmadd231ps %[b], %[x], %[c]"
                  : [c] "+x"(c), [b] "=&x"(b)
                  : [x] "x"(x), [a] "m"(*a));
        else
          __asm__("vbroadcastsd %[a], %[b]\n\tvfmadd231pd %[b], %[x], %[c]"
                  : [c] "+x"(c), [b] "=&x"(b)
                  : [x] "x"(x), [a] "m"(*a));
      }
      return c;
#else
      V out;
      for (int i = 0; i < W; ++i) out[i] = std::fma(*a, x[i], c[i]);
      return out;
#endif
    }
  }
  // Sum of the lanes, halving: lanes l and l + N/2 first.
  template <typename U, int N>
  static FASTREC_SIMD_INLINE T halve(U v) {
    if constexpr (N == 2) {
      return v[0] + v[1];
    } else {
      return halve<decltype(lower(v, std::make_integer_sequence<int, N / 2>{})), N / 2>(
          lower(v, std::make_integer_sequence<int, N / 2>{}) +
          upper<N / 2>(v, std::make_integer_sequence<int, N / 2>{}));
    }
  }
  template <typename U, int... I>
  static FASTREC_SIMD_INLINE auto lower(U v, std::integer_sequence<int, I...>) {
    return __builtin_shufflevector(v, v, I...);
  }
  template <int H, typename U, int... I>
  static FASTREC_SIMD_INLINE auto upper(U v, std::integer_sequence<int, I...>) {
    return __builtin_shufflevector(v, v, (I + H)...);
  }
};

template <typename T, int K, int VB>
struct SimdRow {
  typedef SimdVec<T, VB> S;
  typedef typename S::V V;
  static constexpr int W = S::W;
  static constexpr int NV = K / W;
  static_assert(K % SGD_DOT_LANES == 0, "register rows are whole groups of 16 lanes");
  V v[NV];

  FASTREC_SIMD_INLINE void zero() {
    for (int j = 0; j < NV; ++j) v[j] = V{};
  }
  FASTREC_SIMD_INLINE void load(const T *p) {
    for (int j = 0; j < NV; ++j) v[j] = S::load(p + j * W);
  }
  FASTREC_SIMD_INLINE void store(T *p) const {
    for (int j = 0; j < NV; ++j) S::store(p + j * W, v[j]);
  }
  // this += a * x[0:K]. The scalar stays a scalar operand: GCC broadcasts it with one
  // instruction, where every explicit broadcast idiom (a vector constructor, a shuffle of {a},
  // V{} + a) became a masked lane-by-lane build or an extra add inside target() functions.
  FASTREC_SIMD_INLINE void axpy(T a, const T *x) {
    for (int j = 0; j < NV; ++j) v[j] += S::load(x + j * W) * a;
  }
  // this = fma(*a, x, this) per element (SimdVec::madd).
  FASTREC_SIMD_INLINE void fma_axpy(const T *a, const SimdRow &x) {
    for (int j = 0; j < NV; ++j) v[j] = S::madd(a, x.v[j], v[j]);
  }
  FASTREC_SIMD_INLINE void fma_axpy(const T *a, const T *x) {
    for (int j = 0; j < NV; ++j) v[j] = S::madd(a, S::load(x + j * W), v[j]);
  }
  FASTREC_SIMD_INLINE void add(const T *x) {
    for (int j = 0; j < NV; ++j) v[j] += S::load(x + j * W);
  }
  // sgd_lane_dot(this, x, K) bit for bit: native vector j holds lanes (j mod L) W ... of the 16,
  // where L = 16 / W vectors make up the 16 lanes.
  FASTREC_SIMD_INLINE T dot(const T *x) const {
    constexpr int L = SGD_DOT_LANES / W;
    V acc[L];
    for (int l = 0; l < L; ++l) acc[l] = V{};
    for (int j = 0; j < NV; ++j) acc[j % L] += v[j] * S::load(x + j * W);
    return reduce<L>(acc);
  }
  FASTREC_SIMD_INLINE T dot(const SimdRow &x) const {
    constexpr int L = SGD_DOT_LANES / W;
    V acc[L];
    for (int l = 0; l < L; ++l) acc[l] = V{};
    for (int j = 0; j < NV; ++j) acc[j % L] += v[j] * x.v[j];
    return reduce<L>(acc);
  }
  // The halving of the 16 lanes: across vectors while they span more than one, then within.
  template <int L>
  static FASTREC_SIMD_INLINE T reduce(V *acc) {
    for (int h = L / 2; h >= 1; h /= 2)
      for (int l = 0; l < h; ++l) acc[l] += acc[l + h];
    return S::template halve<V, W>(acc[0]);
  }
};

}  // namespace fastrec
