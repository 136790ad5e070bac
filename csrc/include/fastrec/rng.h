// Counter-based random numbers: every draw is a pure function of (seed, stream, index), so any
// backend, any thread count and any processing order draws the same numbers, and the numpy
// reference can be compared with the compiled kernels sample for sample.
//
// Construction (splitmix64, Steele et al. 2014): the finaliser rng_mix64 is a bijection of
// 64-bit words with strong avalanche; a stream's key is a mixed (seed, stream) pair and draw
// number `index` of that stream is rng_mix64(key + (index + 1) * golden gamma), i.e. the
// splitmix64 sequence started at `key`, evaluated at random access.
//
// Typical use (one stream per epoch, one index per sample/attempt):
//   const uint64_t key = rng_key(seed, epoch);
//   uint64_t item = rng_below(rng_at(key, sample_index), n_items);
//   double u = rng_uniform(rng_at(key, other_index));
// Mirrors with the same names: fastrec/backends/numba/rng.py (Numba, scalar),
// fastrec/_algorithms/rng.py (numpy, vectorised over index arrays, for host-side draws) and
// fastrec/backends/reference/rng.py (the oracle: Python integers, one draw at a time).
#pragma once

#include "fastrec/common.h"

namespace fastrec {

constexpr uint64_t RNG_GOLDEN_GAMMA = 0x9E3779B97F4A7C15ULL;

// splitmix64 finaliser (variant 13 of Stafford's mixers).
FASTREC_HD uint64_t rng_mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Key of stream `stream` (e.g. an epoch) under `seed`; distinct streams get unrelated keys.
FASTREC_HD uint64_t rng_key(uint64_t seed, uint64_t stream) {
  return rng_mix64(seed ^ rng_mix64(stream + RNG_GOLDEN_GAMMA));
}

// 64 random bits: draw number `index` of the stream with key `key`.
FASTREC_HD uint64_t rng_at(uint64_t key, uint64_t index) {
  return rng_mix64(key + (index + 1) * RNG_GOLDEN_GAMMA);
}

// Integer in [0, n) from 64 random bits, for 0 < n <= 2^32: the top 32 bits scaled by n
// (multiply-shift, bias below n / 2^32, no division and exact in 64-bit arithmetic).
FASTREC_HD uint64_t rng_below(uint64_t bits, uint64_t n) {
  return ((bits >> 32) * n) >> 32;
}

// Double in [0, 1) from the top 53 bits.
FASTREC_HD double rng_uniform(uint64_t bits) {
  return (double)(bits >> 11) * (1.0 / 9007199254740992.0);
}

}  // namespace fastrec
