"""Numba mirror of ``csrc/include/fastrec/rng.h`` (same names, same uint64 arithmetic).

Every draw is a pure function of (seed, stream, index); see the header for the construction.
All arithmetic is done on ``np.uint64`` so it wraps modulo 2**64 exactly as in C.
"""

import numpy as np
from numba import njit

RNG_GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S32, _S11 = (np.uint64(s) for s in (30, 27, 31, 32, 11))
_ONE = np.uint64(1)
_INV_2_53 = 1.0 / 9007199254740992.0


@njit(inline="always", cache=True)
def rng_mix64(z):
    z = np.uint64(z)
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@njit(inline="always", cache=True)
def rng_key(seed, stream):
    return rng_mix64(np.uint64(seed) ^ rng_mix64(np.uint64(stream) + RNG_GOLDEN_GAMMA))


@njit(inline="always", cache=True)
def rng_at(key, index):
    return rng_mix64(np.uint64(key) + (np.uint64(index) + _ONE) * RNG_GOLDEN_GAMMA)


@njit(inline="always", cache=True)
def rng_below(bits, n):
    return ((np.uint64(bits) >> _S32) * np.uint64(n)) >> _S32


@njit(inline="always", cache=True)
def rng_uniform(bits):
    return float(np.uint64(bits) >> _S11) * _INV_2_53
