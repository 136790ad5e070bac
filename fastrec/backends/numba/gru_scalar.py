"""Numba mirror of the scalar math in ``csrc/include/fastrec/gru.h`` (same names, same order of
operations). Functions are generic over float32/float64: constants take the argument's type
through ``cast_like`` so float32 math stays float32 as in C."""

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from fastrec.backends.numba.rng import rng_below


def cast_like(x, value):
    """``value`` in the floating type of ``x`` (a compile-time constant under Numba)."""
    return type(x)(value)


@overload(cast_like, inline="always")
def _cast_like(x, value):
    if isinstance(x, types.Float):
        ctor = np.float32 if x.bitwidth == 32 else np.float64
        return lambda x, value: ctor(value)
    return None


@intrinsic
def _int32_bits_as_float32(typingctx, bits):
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@intrinsic
def _float32_bits_as_int32(typingctx, value):
    sig = types.int32(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


def gru_exp(x):
    """exp; float32 uses gru.h's Cody-Waite reduction (shifter rounding) and degree-6
    polynomial."""
    return math.exp(x)


@overload(gru_exp, inline="always")
def _gru_exp(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        f = np.float32

        def exp32(x):
            x = min(max(x, f(-87.0)), f(88.0))
            shifted = x * f(1.44269504) + f(12582912.0)
            k = shifted - f(12582912.0)
            ki = _float32_bits_as_int32(shifted) - np.int32(0x4B400000)
            r = (x - k * f(0.693145752)) - k * f(1.42860677e-6)
            p = f(1.0 / 720.0)
            p = p * r + f(1.0 / 120.0)
            p = p * r + f(1.0 / 24.0)
            p = p * r + f(1.0 / 6.0)
            p = p * r + f(0.5)
            p = p * r + f(1.0)
            p = p * r + f(1.0)
            return p * _int32_bits_as_float32((ki + np.int32(127)) << np.int32(23))

        return exp32
    if isinstance(x, types.Float):
        return lambda x: math.exp(x)
    return None


@njit(inline="always", cache=True)
def gru_sigmoid(x):
    one = cast_like(x, 1.0)
    return one / (one + gru_exp(-x))


@njit(inline="always", cache=True)
def gru_tanh(x):
    one = cast_like(x, 1.0)
    two = cast_like(x, 2.0)
    return one - two / (one + gru_exp(two * x))


@njit(inline="always", cache=True)
def gru_gate(a, hproj):
    return gru_sigmoid(a + hproj)


@njit(inline="always", cache=True)
def gru_candidate(a, qproj):
    return gru_tanh(a + qproj)


@njit(inline="always", cache=True)
def gru_state(h, z, n):
    return (cast_like(h, 1.0) - z) * h + z * n


@njit(inline="always", cache=True)
def gru_grad_candidate(dh, z, n):
    return dh * z * (cast_like(dh, 1.0) - n * n)


@njit(inline="always", cache=True)
def gru_grad_update(dh, z, n, h):
    return dh * (n - h) * z * (cast_like(dh, 1.0) - z)


@njit(inline="always", cache=True)
def gru_grad_reset(dq, h, r):
    return dq * h * r * (cast_like(dq, 1.0) - r)


@njit(inline="always", cache=True)
def gru_grad_state(dh, z, dq, r):
    return dh * (cast_like(dh, 1.0) - z) + dq * r


@njit(inline="always", cache=True)
def bpr_max_grad_negative(s, sig, r, P, R, bpreg):
    return -s * (sig * sig - P) / (P + cast_like(s, 1e-24)) + bpreg * s * (
        r * r + cast_like(s, 2.0) * r - R)


@njit(inline="always", cache=True)
def top1_max_grad_negative(s, u, v, r, F):
    one = cast_like(s, 1.0)
    return s * (u + v - F) + s * (u * (one - u) + cast_like(s, 2.0) * r * v * (one - v))


_LOW32 = np.uint64(0xFFFFFFFF)


@njit(inline="always", cache=True)
def rng_alias_draw(bits, prob, alias, n):
    bucket = rng_below(bits, n)
    coin = float(np.uint64(bits) & _LOW32) * (1.0 / 4294967296.0)
    return np.int64(bucket) if coin < prob[bucket] else np.int64(alias[bucket])
