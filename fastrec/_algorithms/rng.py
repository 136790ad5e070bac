"""numpy mirror of ``csrc/include/fastrec/rng.h``, vectorised over arrays of indices, for the
host-side draws of production code (evaluation negatives, the CUDA launchers' stream keys).

Every draw is a pure function of (seed, stream, index), so these are exactly the numbers the
compiled kernels draw. Inputs are converted to ``uint64`` arrays (every function returns one);
numpy's uint64 array arithmetic wraps modulo 2**64 like C. The oracle's own scalar transcription
is ``fastrec.backends.reference.rng``; the tests hold the two equal.
"""

from __future__ import annotations

import numpy as np

RNG_GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _u64(x) -> np.ndarray:
    return np.atleast_1d(np.asarray(x)).astype(np.uint64)


def rng_mix64(z) -> np.ndarray:
    z = _u64(z)
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def rng_key(seed, stream) -> np.ndarray:
    return rng_mix64(_u64(seed) ^ rng_mix64(_u64(stream) + RNG_GOLDEN_GAMMA))


def rng_at(key, index) -> np.ndarray:
    return rng_mix64(_u64(key) + (_u64(index) + np.uint64(1)) * RNG_GOLDEN_GAMMA)


def rng_below(bits, n) -> np.ndarray:
    """Integers in [0, n) for 0 < n <= 2**32 (multiply-shift of the top 32 bits)."""
    return ((_u64(bits) >> np.uint64(32)) * _u64(n)) >> np.uint64(32)


def rng_uniform(bits) -> np.ndarray:
    """float64 in [0, 1) from the top 53 bits."""
    return (_u64(bits) >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
