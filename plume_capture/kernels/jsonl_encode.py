"""Numba assembly of JSON Lines text (the encoder in :mod:`plume_capture.io.jsonl_encode` drives it):
integers, booleans and pre-formatted tokens/floats copied into one byte buffer, row by row."""
from __future__ import annotations

import numpy as np

from plume_capture.kernels._jit import njit

# Kernel value kinds; "pool 0" holds per-table tokens (strings, non-float list items), "pool 1" the
# chunk's formatted floats.
INT, BOOL, TOKEN, TOKEN_LIST, FLOAT, FLOAT_LIST = range(6)
_ONE = np.uint64(1)
_TWO = np.uint64(2)
_THREE, _FOUR, _FIVE, _SIX, _SEVEN, _EIGHT = (np.uint64(k) for k in range(3, 9))
_DIGIT_PAIRS = np.frombuffer("".join(f"{i:02d}" for i in range(100)).encode(), np.uint8)
_TRUE = np.frombuffer(b"true", np.uint8)
_FALSE = np.frombuffer(b"false", np.uint8)
_INT64_MIN_DIGITS = np.frombuffer(b"9223372036854775808", np.uint8)


# Byte positions are uint64 on purpose: with signed indices Numba adds a negative-index check to
# every byte copy, which made the kernel ~5x slower. Mixing uint64 with int64 literals would
# promote to float64, hence the explicit np.uint64 everywhere.
@njit(inline="always")
def _copy(out, pos, src, a, b):
    # Eight bytes a step, all loaded before any is stored, so the compiler may combine them (a byte
    # loop may not be: out and src could alias). 17% less CPU for the JSON text (docs/benchmarks.md).
    while a + _EIGHT <= b:
        c0 = src[a]
        c1 = src[a + _ONE]
        c2 = src[a + _TWO]
        c3 = src[a + _THREE]
        c4 = src[a + _FOUR]
        c5 = src[a + _FIVE]
        c6 = src[a + _SIX]
        c7 = src[a + _SEVEN]
        out[pos] = c0
        out[pos + _ONE] = c1
        out[pos + _TWO] = c2
        out[pos + _THREE] = c3
        out[pos + _FOUR] = c4
        out[pos + _FIVE] = c5
        out[pos + _SIX] = c6
        out[pos + _SEVEN] = c7
        pos += _EIGHT
        a += _EIGHT
    while a < b:
        out[pos] = src[a]
        pos += _ONE
        a += _ONE
    return pos


@njit(inline="always")
def _put_int(out, pos, v):
    if v < 0:
        out[pos] = 45  # '-'
        pos += _ONE
        if v == -9223372036854775807 - 1:
            return _copy(out, pos, _INT64_MIN_DIGITS, np.uint64(0), np.uint64(19))
        v = -v
    nd = 1
    t = v
    if t >= 10000000000000000:
        t //= 10000000000000000
        nd += 16
    if t >= 100000000:
        t //= 100000000
        nd += 8
    if t >= 10000:
        t //= 10000
        nd += 4
    if t >= 100:
        t //= 100
        nd += 2
    if t >= 10:
        nd += 1
    end = pos + np.uint64(nd)
    p = end
    while v >= 100:  # two digits at a time
        q = v // 100
        r = 2 * (v - 100 * q)
        p -= _TWO
        out[p] = _DIGIT_PAIRS[r]
        out[p + _ONE] = _DIGIT_PAIRS[r + 1]
        v = q
    if v >= 10:
        out[pos] = _DIGIT_PAIRS[2 * v]
        out[pos + _ONE] = _DIGIT_PAIRS[2 * v + 1]
    else:
        out[pos] = 48 + v
    return end


@njit(inline="always")
def _put_list(out, pos, off, data, t0, t1):
    out[pos] = 91  # '['
    pos += _ONE
    for t in range(t0, t1):
        if t > t0:
            out[pos] = 44  # ','
            pos += _ONE
        pos = _copy(out, pos, data, off[t], off[t + 1])
    out[pos] = 93  # ']'
    return pos + _ONE


@njit
def assemble(r0, r1, kinds, cols, lit_data, lit_off, ints, bools, fidx, fl_base, fl_lrow,
              ts_base, tl_base, tl_lrow, list_off, off0, data0, off1, data1, out, pos, line_end):
    """Write rows r0..r1-1 into out[pos:] and their end offsets into line_end; returns the end."""
    nk = kinds.shape[0]
    for i in range(r0, r1):
        j = i - r0
        for k in range(nk + 1):
            pos = _copy(out, pos, lit_data, lit_off[k], lit_off[k + 1])
            if k == nk:
                break
            kind = kinds[k]
            c = cols[k]
            if kind == INT:
                pos = _put_int(out, pos, ints[c, j])
            elif kind == BOOL:
                if bools[c, j]:
                    pos = _copy(out, pos, _TRUE, np.uint64(0), np.uint64(4))
                else:
                    pos = _copy(out, pos, _FALSE, np.uint64(0), np.uint64(5))
            elif kind == TOKEN:
                t = ts_base[c] + i
                pos = _copy(out, pos, data0, off0[t], off0[t + 1])
            elif kind == TOKEN_LIST:
                lr = tl_lrow[c]
                pos = _put_list(out, pos, off0, data0, tl_base[c] + list_off[lr, i],
                                tl_base[c] + list_off[lr, i + 1])
            elif kind == FLOAT:
                t = fidx[c, j]
                pos = _copy(out, pos, data1, off1[t], off1[t + 1])
            else:  # FLOAT_LIST
                lr = fl_lrow[c]
                pos = _put_list(out, pos, off1, data1, fl_base[c] + list_off[lr, i],
                                fl_base[c] + list_off[lr, i + 1])
        line_end[j] = pos
    return pos


@njit
def periodic(data, size):
    """Whether data is one `size`-byte value repeated."""
    s = np.uint64(size)
    n = np.uint64(data.shape[0])
    i = s
    while i < n:  # blocks of branch-free compares (vectorized), early exit between blocks
        e = min(i + np.uint64(4096), n)
        acc = np.uint8(0)
        while i < e:
            acc |= data[i] ^ data[i - s]
            i += _ONE
        if acc:
            return False
    return True


