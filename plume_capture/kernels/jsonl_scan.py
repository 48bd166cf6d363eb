"""Numba scanner of JSON Lines records (the decoder in :mod:`plume_capture.io.jsonl_decode`
drives it): strict JSON, any key order, every key exactly once; numbers converted exactly (Clinger's
fast path; longer ones handed back for a correctly rounded cast)."""
from __future__ import annotations

import numpy as np

from plume_capture.kernels._jit import njit

#: field kinds of a record layout (``Layout.kinds``)
T_INT, T_FLOAT, T_BOOL, T_STR, T_EPID, T_POS, T_FLIST = range(7)


_P10 = np.array([10.0 ** i for i in range(23)])
_TWO53 = 9007199254740992


@njit
def _ws(buf, p):
    while buf[p] == 32 or buf[p] == 9 or buf[p] == 13:
        p += 1
    return p


@njit
def _number(buf, p):
    """JSON number at ``p`` -> (end, status, is_int, neg, w, e10), value = ±w·10^e10.

    status 0: not a JSON number; 1: exact in (w, e10); 2: more than 18 significant digits.
    """
    neg = False
    if buf[p] == 45:
        neg = True
        p += 1
    c = buf[p]
    w = 0
    nd = 0
    e10 = 0
    many = False
    if c < 48 or c > 57:
        return p, 0, False, neg, w, e10
    if c == 48:
        p += 1
        if 48 <= buf[p] <= 57:  # leading zero
            return p, 0, False, neg, w, e10
    else:
        while 48 <= buf[p] <= 57:
            if nd < 18:
                w = w * 10 + (int(buf[p]) - 48)
                nd += 1
            else:
                many = True
            p += 1
    is_int = True
    if buf[p] == 46:
        is_int = False
        p += 1
        if not (48 <= buf[p] <= 57):
            return p, 0, False, neg, w, e10
        while 48 <= buf[p] <= 57:
            d = int(buf[p]) - 48  # int(): uint8 arithmetic would wrap without the JIT
            if w == 0 and d == 0:
                e10 -= 1
            elif nd < 18:
                w = w * 10 + d
                nd += 1
                e10 -= 1
            else:
                many = True
            p += 1
    if buf[p] == 101 or buf[p] == 69:
        is_int = False
        p += 1
        eneg = False
        if buf[p] == 43 or buf[p] == 45:
            eneg = buf[p] == 45
            p += 1
        if not (48 <= buf[p] <= 57):
            return p, 0, False, neg, w, e10
        ev = 0
        while 48 <= buf[p] <= 57:
            if ev < 100000:
                ev = ev * 10 + (int(buf[p]) - 48)
            p += 1
        e10 += -ev if eneg else ev
    return p, 2 if many else 1, is_int, neg, w, e10


@njit
def _fast_float(status, is_int, neg, w, e10):
    """Clinger's exact fast path; (value, True) or (0.0, False) when the slow path is needed."""
    if status != 1:
        return 0.0, False
    if w == 0:  # json.loads reads "-0" as the int 0
        return (-0.0 if neg and not is_int else 0.0), True
    if w > _TWO53 or e10 < -22 or e10 > 22:
        return 0.0, False
    v = float(w)
    if e10 >= 0:
        v = v * _P10[e10]
    else:
        v = v / _P10[-e10]
    return (-v if neg else v), True


@njit
def _string_end(buf, p):
    """End quote of the plain string starting at quote ``p``; -1 for escapes/control/non-ASCII."""
    q = p + 1
    while buf[q] != 34:
        c = buf[q]
        if c == 92 or c < 32 or c >= 128:
            return -1
        q += 1
    return q


@njit
def scan(buf, end, key_bytes, key_len, key_type, key_slot, key_slot2, exp_bytes, exp_len,
          ints, flts, bools, sst, sln, loff, lvals, slow, lstart, order):
    """Parse the complete lines of ``buf[:end]`` (which ends with a newline) into the matrices.

    Returns (status, rows, list values, slow tokens): status 0 ok, 1 a line the scanner does not
    accept (row = its index), 2 an output buffer is full (retry bigger).
    """
    nkeys = key_len.shape[0]
    full = (1 << nkeys) - 1
    cap = lstart.shape[0]
    p = 0
    row = 0
    nv = 0
    ns = 0
    loff[0] = 0
    while p < end:
        if row >= cap:
            return 2, row, nv, ns
        lstart[row] = p
        p = _ws(buf, p)
        if buf[p] != 123:
            return 1, row, nv, ns
        p = _ws(buf, p + 1)
        seen = 0
        kpos = 0
        while True:
            if buf[p] != 34:
                return 1, row, nv, ns
            ks = p + 1
            # Keys usually come in the same order on every line: try last line's key first.
            k = -1
            g = order[kpos] if kpos < nkeys else -1
            if g >= 0:
                klen = key_len[g]
                k = g
                for i in range(klen):
                    if buf[ks + i] != key_bytes[g, i]:
                        k = -1
                        break
                if k >= 0 and buf[ks + klen] != 34:
                    k = -1
                q = ks + klen
            if k < 0:
                q = _string_end(buf, p)
                if q < 0:
                    return 1, row, nv, ns
                klen = q - ks
                for j in range(nkeys):
                    if key_len[j] == klen:
                        same = True
                        for i in range(klen):
                            if buf[ks + i] != key_bytes[j, i]:
                                same = False
                                break
                        if same:
                            k = j
                            break
                if kpos < nkeys:
                    order[kpos] = k
            kpos += 1
            if k < 0 or (seen >> k) & 1:
                return 1, row, nv, ns
            seen |= 1 << k
            p = _ws(buf, q + 1)
            if buf[p] != 58:
                return 1, row, nv, ns
            p = _ws(buf, p + 1)
            t = key_type[k]
            s1 = key_slot[k]
            s2 = key_slot2[k]
            if t == 0:  # T_INT
                p, st, isint, neg, w, e10 = _number(buf, p)
                if st != 1 or not isint:
                    return 1, row, nv, ns
                ints[s1, row] = -w if neg else w
            elif t == 1:  # T_FLOAT
                q = p
                p, st, isint, neg, w, e10 = _number(buf, p)
                if st == 0:
                    return 1, row, nv, ns
                v, ok = _fast_float(st, isint, neg, w, e10)
                if ok:
                    flts[s1, row] = v
                else:
                    if ns >= slow.shape[0]:
                        return 2, row, nv, ns
                    slow[ns, 0] = q
                    slow[ns, 1] = p
                    slow[ns, 2] = s1 * cap + row
                    ns += 1
            elif t == 2:  # T_BOOL
                if (p + 4 <= end and buf[p] == 116 and buf[p + 1] == 114 and buf[p + 2] == 117
                        and buf[p + 3] == 101):
                    bools[s1, row] = 1
                    p += 4
                elif (p + 5 <= end and buf[p] == 102 and buf[p + 1] == 97 and buf[p + 2] == 108
                        and buf[p + 3] == 115 and buf[p + 4] == 101):
                    bools[s1, row] = 0
                    p += 5
                else:
                    return 1, row, nv, ns
            elif t == 3 or t == 4:  # T_STR, T_EPID
                if buf[p] != 34:
                    return 1, row, nv, ns
                st0 = p + 1
                same = False
                if t == 3 and exp_len[s1] >= 0:
                    # Expected value (plain ASCII): compare in place.
                    el = exp_len[s1]
                    same = True
                    for i in range(el):
                        if buf[st0 + i] != exp_bytes[s1, i]:
                            same = False
                            break
                    if same and buf[st0 + el] != 34:
                        same = False
                    q = st0 + el
                if not same:
                    q = _string_end(buf, p)
                    if q < 0:
                        return 1, row, nv, ns
                ln = q - st0
                sst[s1, row] = st0
                sln[s1, row] = ln
                if t == 3:
                    bools[s2, row] = 1 if same else 0
                else:
                    index = -1
                    nd = ln - 3
                    if (6 <= nd <= 18 and buf[st0] == 101 and buf[st0 + 1] == 112
                            and buf[st0 + 2] == 45 and (nd == 6 or buf[st0 + 3] != 48)):
                        v = 0
                        for i in range(st0 + 3, q):
                            c = int(buf[i])
                            if c < 48 or c > 57:
                                v = -1
                                break
                            v = v * 10 + (c - 48)
                        if v >= 1:
                            index = v - 1
                    ints[s2, row] = index
                p = q + 1
            elif t == 5:  # T_POS
                if buf[p] != 123:
                    return 1, row, nv, ns
                p = _ws(buf, p + 1)
                got = 0
                while True:
                    if buf[p] != 34:
                        return 1, row, nv, ns
                    c = buf[p + 1]
                    if c == 120:
                        b = 1
                    elif c == 121:
                        b = 2
                    else:
                        return 1, row, nv, ns
                    if buf[p + 2] != 34 or got & b:
                        return 1, row, nv, ns
                    got |= b
                    p = _ws(buf, p + 3)
                    if buf[p] != 58:
                        return 1, row, nv, ns
                    p = _ws(buf, p + 1)
                    p, st, isint, neg, w, e10 = _number(buf, p)
                    if st != 1 or not isint:
                        return 1, row, nv, ns
                    ints[s1 if b == 1 else s2, row] = -w if neg else w
                    p = _ws(buf, p)
                    if buf[p] == 44:
                        p = _ws(buf, p + 1)
                    elif buf[p] == 125:
                        p += 1
                        break
                    else:
                        return 1, row, nv, ns
                if got != 3:
                    return 1, row, nv, ns
            else:  # T_FLIST
                if buf[p] != 91:
                    return 1, row, nv, ns
                p = _ws(buf, p + 1)
                if buf[p] == 93:
                    p += 1
                else:
                    while True:
                        q = p
                        p, st, isint, neg, w, e10 = _number(buf, p)
                        if st == 0:
                            return 1, row, nv, ns
                        if nv >= lvals.shape[0]:
                            return 2, row, nv, ns
                        v, ok = _fast_float(st, isint, neg, w, e10)
                        if ok:
                            lvals[nv] = v
                        else:
                            if ns >= slow.shape[0]:
                                return 2, row, nv, ns
                            slow[ns, 0] = q
                            slow[ns, 1] = p
                            slow[ns, 2] = -(nv + 1)
                            ns += 1
                        nv += 1
                        p = _ws(buf, p)
                        if buf[p] == 44:
                            p = _ws(buf, p + 1)
                        elif buf[p] == 93:
                            p += 1
                            break
                        else:
                            return 1, row, nv, ns
            p = _ws(buf, p)
            if buf[p] == 44:
                p = _ws(buf, p + 1)
            elif buf[p] == 125:
                p += 1
                break
            else:
                return 1, row, nv, ns
        p = _ws(buf, p)
        if buf[p] != 10 or seen != full:
            return 1, row, nv, ns
        p += 1
        loff[row + 1] = nv
        row += 1
    return 0, row, nv, ns


@njit
def gather(buf, starts, ends):
    """Concatenate byte ranges -> (data, int32 offsets) for an Arrow string array."""
    n = starts.shape[0]
    off = np.empty(n + 1, np.int32)
    total = 0
    for i in range(n):
        off[i] = total
        total += ends[i] - starts[i]
    off[n] = total
    data = np.empty(total, np.uint8)
    k = 0
    for i in range(n):
        for j in range(starts[i], ends[i]):
            data[k] = buf[j]
            k += 1
    return data, off


@njit
def last_newline(buf, lo, end):
    """Index of the last newline in ``buf[lo:end]``, else -1."""
    for i in range(end - 1, lo - 1, -1):
        if buf[i] == 10:
            return i
    return -1


@njit
def count_lines(buf):
    """Number of newline bytes in a uint8 array."""
    n = 0
    for i in range(buf.shape[0]):
        if buf[i] == 10:
            n += 1
    return n


