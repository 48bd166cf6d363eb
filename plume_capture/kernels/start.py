"""Episode start position (docs/spec.md §3.2), bit-exact with numpy, callable from njit code.

``start_position(s, W, H)`` equals::

    rng = numpy.random.default_rng(s)
    x = int(rng.integers(0, W)); y = int(rng.integers(0, H))

It ports, in plain uint64 arithmetic, numpy's ``SeedSequence`` (one-word entropy, no spawn key),
``PCG64`` seeding and its 128-bit LCG + XSL-RR output (as two 64-bit halves), the PCG64 32-bit
draw (low half of a 64-bit output first, high half buffered in the generator state, so the buffer
carries over from the x draw to the y draw) and ``Generator.integers(0, n)`` for int64, which for
n <= 2**32 is Lemire's method on 32-bit draws and draws nothing when n == 1.

Every operation keeps its operands in ``np.uint64`` (Numba turns uint64/int64 mixes into float64)
and never overflows: products are split into 32-bit limbs and sums carry by hand, so the pure-Python
path (``NUMBA_DISABLE_JIT=1`` or ``start_position.py_func``) gives the same result without warnings.
``start_position`` re-casts every helper result to uint64 (free when compiled): under ``py_func``
the helpers are still compiled and hand back Python ints, which Numba would re-type as int64.
"""
import numpy as np

from plume_capture.kernels._jit import njit

_ZERO = np.uint64(0)
_ONE = np.uint64(1)
_S16 = np.uint64(16)
_S32 = np.uint64(32)
_S58 = np.uint64(58)
_S63 = np.uint64(63)
_S64 = np.uint64(64)
_M32 = np.uint64(0xFFFFFFFF)
_LOW63 = np.uint64(0x7FFFFFFFFFFFFFFF)
_TWO32 = np.uint64(0x100000000)

# numpy/random/bit_generator.pyx (SeedSequence)
_INIT_A = np.uint64(0x43B0D7E5)
_MULT_A = np.uint64(0x931E8875)
_INIT_B = np.uint64(0x8B51F9DD)
_MULT_B = np.uint64(0x58F38DED)
_MIX_MULT_L = np.uint64(0xCA01F9DD)
_MIX_MULT_R = np.uint64(0x4973F715)

# PCG_DEFAULT_MULTIPLIER_128 (numpy/random/src/pcg64/pcg64.h), high and low halves
_PCG_MUL_HI = np.uint64(2549297995355413924)
_PCG_MUL_LO = np.uint64(4865540595714422341)

from plume_capture.spec import SEED_MAX  # noqa: E402
SIZE_MAX = 2**31 - 1


# --- SeedSequence (32-bit words held in uint64, masked after every product) ---------------

@njit
def _hashmix(value, hash_const):
    value = value ^ hash_const
    hash_const = (hash_const * _MULT_A) & _M32
    value = (value * hash_const) & _M32
    value = value ^ (value >> _S16)
    return value, hash_const


@njit
def _mix(x, y):
    a = (_MIX_MULT_L * x) & _M32
    b = (_MIX_MULT_R * y) & _M32
    result = (a + _TWO32 - b) & _M32
    return result ^ (result >> _S16)


@njit
def _mix_into(src, a, b, c, hash_const):
    """One source row of SeedSequence.mix_entropy: fold ``src`` into the three other words."""
    h, hash_const = _hashmix(src, hash_const)
    a = _mix(a, h)
    h, hash_const = _hashmix(src, hash_const)
    b = _mix(b, h)
    h, hash_const = _hashmix(src, hash_const)
    c = _mix(c, h)
    return a, b, c, hash_const


@njit
def _state_word(data, hash_const):
    """One uint32 word of SeedSequence.generate_state."""
    data = data ^ hash_const
    hash_const = (hash_const * _MULT_B) & _M32
    data = (data * hash_const) & _M32
    data = data ^ (data >> _S16)
    return data, hash_const


@njit
def _state_u64(p_lo, p_hi, hash_const):
    """Two consecutive words viewed as one little-endian uint64."""
    lo, hash_const = _state_word(p_lo, hash_const)
    hi, hash_const = _state_word(p_hi, hash_const)
    return lo | (hi << _S32), hash_const


@njit
def _seed_sequence_u64x4(seed):
    """``SeedSequence(seed).generate_state(4, np.uint64)`` for 0 <= seed < 2**32."""
    h = _INIT_A
    m0, h = _hashmix(seed, h)
    m1, h = _hashmix(_ZERO, h)
    m2, h = _hashmix(_ZERO, h)
    m3, h = _hashmix(_ZERO, h)
    m1, m2, m3, h = _mix_into(m0, m1, m2, m3, h)
    m0, m2, m3, h = _mix_into(m1, m0, m2, m3, h)
    m0, m1, m3, h = _mix_into(m2, m0, m1, m3, h)
    m0, m1, m2, h = _mix_into(m3, m0, m1, m2, h)
    # generate_state cycles over the pool m0..m3 for 8 uint32 words
    h = _INIT_B
    v0, h = _state_u64(m0, m1, h)
    v1, h = _state_u64(m2, m3, h)
    v2, h = _state_u64(m0, m1, h)
    v3, h = _state_u64(m2, m3, h)
    return v0, v1, v2, v3


# --- 128-bit arithmetic on (hi, lo) uint64 halves ------------------------------------------

@njit
def _mul64(a, b):
    """Full product a * b as (hi, lo), from 32-bit limbs."""
    a0 = a & _M32
    a1 = a >> _S32
    b0 = b & _M32
    b1 = b >> _S32
    p00 = a0 * b0
    p01 = a0 * b1
    p10 = a1 * b0
    p11 = a1 * b1
    mid = (p00 >> _S32) + (p01 & _M32) + (p10 & _M32)
    lo = ((mid & _M32) << _S32) | (p00 & _M32)
    hi = p11 + (p01 >> _S32) + (p10 >> _S32) + (mid >> _S32)
    return hi, lo


@njit
def _add64(a, b):
    """(carry, (a + b) mod 2**64)."""
    lo = (a & _M32) + (b & _M32)
    hi = (a >> _S32) + (b >> _S32) + (lo >> _S32)
    return hi >> _S32, ((hi & _M32) << _S32) | (lo & _M32)


@njit
def _add128(ah, al, bh, bl):
    carry, lo = _add64(al, bl)
    _, hi = _add64(ah, bh)
    _, hi = _add64(hi, carry)
    return hi, lo


@njit
def _lcg_step(sh, sl, ih, il):
    """state * PCG_DEFAULT_MULTIPLIER_128 + inc (mod 2**128)."""
    hi, lo = _mul64(sl, _PCG_MUL_LO)
    _, cross1 = _mul64(sl, _PCG_MUL_HI)
    _, cross2 = _mul64(sh, _PCG_MUL_LO)
    _, hi = _add64(hi, cross1)
    _, hi = _add64(hi, cross2)
    return _add128(hi, lo, ih, il)


@njit
def _xsl_rr(sh, sl):
    """PCG XSL-RR 128 -> 64 output."""
    rot = sh >> _S58
    x = sh ^ sl
    if rot == _ZERO:
        return x
    return (x >> rot) | (x << (_S64 - rot))


# --- PCG64 draws -----------------------------------------------------------------------

@njit
def _next32(sh, sl, ih, il, has32, buf32):
    """pcg64_next32: returns (value, sh, sl, has32, buf32)."""
    if has32 != _ZERO:
        return buf32, sh, sl, _ZERO, _ZERO
    sh, sl = _lcg_step(sh, sl, ih, il)
    v = _xsl_rr(sh, sl)
    return v & _M32, sh, sl, _ONE, v >> _S32


@njit
def _bounded32(n, sh, sl, ih, il, has32, buf32):
    """Lemire draw in [0, n) for 2 <= n < 2**32; returns (value, sh, sl, has32, buf32)."""
    r, sh, sl, has32, buf32 = _next32(sh, sl, ih, il, has32, buf32)
    m = r * n
    leftover = m & _M32
    if leftover < n:
        threshold = (_M32 - (n - _ONE)) % n
        while leftover < threshold:
            r, sh, sl, has32, buf32 = _next32(sh, sl, ih, il, has32, buf32)
            m = r * n
            leftover = m & _M32
    return m >> _S32, sh, sl, has32, buf32


@njit
def start_position(seed, W, H):
    """Start cell ``(x, y)`` for episode seed ``seed`` on a W x H grid, exactly as numpy draws it.

    ``seed`` in [0, 2**32 - 1], ``W`` and ``H`` in [1, 2**31 - 1]; otherwise ValueError.
    """
    if seed < 0 or seed > SEED_MAX:
        raise ValueError("seed must be in [0, 2**32 - 1]")
    if W < 1 or W > SIZE_MAX or H < 1 or H > SIZE_MAX:
        raise ValueError("W and H must be in [1, 2**31 - 1]")
    u = np.uint64
    s0, s1, q0, q1 = _seed_sequence_u64x4(u(seed))
    s0, s1, q0, q1 = u(s0), u(s1), u(q0), u(q1)
    # pcg64_set_seed -> pcg_setseq_128_srandom_r(state=(s0, s1), initseq=(q0, q1))
    ih = ((q0 & _LOW63) << _ONE) | (q1 >> _S63)
    il = ((q1 & _LOW63) << _ONE) | _ONE
    sh, sl = _add128(ih, il, s0, s1)  # state = 0 -> step gives inc; then += initstate
    sh, sl = _lcg_step(u(sh), u(sl), ih, il)
    sh, sl, has32, buf32 = u(sh), u(sl), _ZERO, _ZERO
    x = np.int64(0)
    if W > 1:
        v, sh, sl, has32, buf32 = _bounded32(u(W), sh, sl, ih, il, has32, buf32)
        sh, sl, has32, buf32 = u(sh), u(sl), u(has32), u(buf32)
        x = np.int64(v)
    y = np.int64(0)
    if H > 1:
        v, sh, sl, has32, buf32 = _bounded32(u(H), sh, sl, ih, il, has32, buf32)
        y = np.int64(v)
    return x, y
