"""``csrc/include/fastrec/rng.h`` transcribed line by line on Python integers, one draw at a time.

Every draw is a pure function of (seed, stream, index), so the reference draws exactly the
numbers the compiled kernels draw. C's uint64 arithmetic wraps modulo 2**64: here every sum and
product is masked to 64 bits. Arguments are Python or numpy integers; results are Python ints
(``rng_uniform``: a float).
"""

from __future__ import annotations

MASK64 = 2**64 - 1
RNG_GOLDEN_GAMMA = 0x9E3779B97F4A7C15


def rng_mix64(z: int) -> int:
    z = int(z) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def rng_key(seed: int, stream: int) -> int:
    return rng_mix64((int(seed) & MASK64) ^ rng_mix64(int(stream) + RNG_GOLDEN_GAMMA))


def rng_at(key: int, index: int) -> int:
    return rng_mix64(int(key) + (int(index) + 1) * RNG_GOLDEN_GAMMA)


def rng_below(bits: int, n: int) -> int:
    """An integer in [0, n) for 0 < n <= 2**32 (multiply-shift of the top 32 bits)."""
    return ((int(bits) >> 32) * int(n)) >> 32


def rng_uniform(bits: int) -> float:
    """A float in [0, 1) from the top 53 bits."""
    return (int(bits) >> 11) * (1.0 / 9007199254740992.0)
