"""Reading run directories (SPEC §9, §11): file discovery, streaming gzip, fast JSON Lines parsing,
and ``load_run``.

JSON Lines are parsed by a Numba scanner specialised for the record layouts of ``records``
(strict JSON, any key order, every key exactly once). Numbers are converted exactly: short ones
with Clinger's fast path (an exact integer times/divided by an exact power of ten), the rest by
Arrow's correctly rounded string-to-double cast. Whatever the scanner does not accept (unusual
but valid JSON such as string escapes, or invalid lines) goes to a per-line ``json.loads`` path
that also names the problem; the scanner never accepts a line that path would reject.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import queue
import re
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from isal import isal_zlib

from plume_capture import spec as records
from plume_capture.kernels._jit import njit

# ------------------------------------------------------------------------------------------------
# Record layouts

T_INT, T_FLOAT, T_BOOL, T_STR, T_EPID, T_POS, T_FLIST = range(7)
_TYPE_NAMES = {T_INT: "an integer", T_FLOAT: "a number", T_BOOL: "a boolean", T_STR: "a string",
               T_EPID: "a string", T_POS: 'an object {"x": int, "y": int}',
               T_FLIST: "a list of numbers"}


class Layout:
    """Where each field of a record schema goes in the scanner's output matrices."""

    def __init__(self, schema: pa.Schema):
        self.schema = schema
        self.names = list(schema.names)
        self.kinds: dict[str, int] = {}
        self.slot: dict[str, tuple[int, int]] = {}
        counts = {"int": 0, "flt": 0, "bool": 0, "str": 0}

        def take(kind):
            counts[kind] += 1
            return counts[kind] - 1

        for f in schema:
            t = f.type
            if f.name == "episode_id":
                kind, slots = T_EPID, (take("str"), take("int"))
            elif pa.types.is_string(t):
                kind, slots = T_STR, (take("str"), take("bool"))
            elif pa.types.is_int64(t):
                kind, slots = T_INT, (take("int"), 0)
            elif pa.types.is_float64(t):
                kind, slots = T_FLOAT, (take("flt"), 0)
            elif pa.types.is_boolean(t):
                kind, slots = T_BOOL, (take("bool"), 0)
            elif pa.types.is_struct(t):
                kind, slots = T_POS, (take("int"), take("int"))
            elif pa.types.is_list(t):
                kind, slots = T_FLIST, (0, 0)
            else:  # pragma: no cover - the record schemas only use the types above
                raise TypeError(f"unsupported field type {t}")
            self.kinds[f.name] = kind
            self.slot[f.name] = slots
        self.n_int, self.n_flt = counts["int"], counts["flt"]
        self.n_bool, self.n_str = counts["bool"], counts["str"]
        self.str_fields = [n for n in self.names if self.kinds[n] == T_STR]
        self.list_field = next((n for n in self.names if self.kinds[n] == T_FLIST), None)
        keys = [n.encode() for n in self.names]
        width = max(len(k) for k in keys)
        self.key_bytes = np.zeros((len(keys), width), np.uint8)
        for i, k in enumerate(keys):
            self.key_bytes[i, : len(k)] = np.frombuffer(k, np.uint8)
        self.key_len = np.array([len(k) for k in keys], np.int64)
        self.key_type = np.array([self.kinds[n] for n in self.names], np.int64)
        self.key_slot = np.array([self.slot[n][0] for n in self.names], np.int64)
        self.key_slot2 = np.array([self.slot[n][1] for n in self.names], np.int64)

    def expected(self, values: dict[str, str] | None):
        """Byte table of the expected values of the plain string fields (run_id, schema_version);
        None when a value is not plain printable ASCII (then only the per-line path is exact)."""
        values = values or {}
        enc = []
        for n in self.str_fields:
            v = values.get(n)
            if v is None:
                enc.append(None)
                continue
            if not isinstance(v, str) or not _PLAIN.fullmatch(v):
                return None
            enc.append(v.encode())
        width = max([len(e) for e in enc if e is not None] + [1])
        table = np.zeros((max(self.n_str, 1), width), np.uint8)
        lens = np.full(max(self.n_str, 1), -1, np.int64)
        for n, e in zip(self.str_fields, enc):
            if e is not None:
                s = self.slot[n][0]
                table[s, : len(e)] = np.frombuffer(e, np.uint8)
                lens[s] = len(e)
        return table, lens


_PLAIN = re.compile(r'[ !#-\[\]-~]*')  # printable ASCII without '"' and '\\'

STEP_LAYOUT = Layout(records.STEP_SCHEMA)
EPISODE_LAYOUT = Layout(records.EPISODE_SCHEMA)

# ------------------------------------------------------------------------------------------------
# Numba scanner

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
def _scan(buf, end, key_bytes, key_len, key_type, key_slot, key_slot2, exp_bytes, exp_len,
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
def _gather(buf, starts, ends):
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


def to_numpy(arr: pa.Array) -> np.ndarray:
    """A fixed-width Arrow array without nulls as numpy, zero-copy (bools are unpacked).

    ``Array.to_numpy`` imports pandas (half a second and tens of MB) on first use.
    """
    if arr.null_count:
        raise ValueError("array has nulls")
    buf = arr.buffers()[1]
    if pa.types.is_boolean(arr.type):
        bits = np.frombuffer(buf, np.uint8)
        return np.unpackbits(bits, bitorder="little")[arr.offset:arr.offset + len(arr)].view(bool)
    return np.frombuffer(buf, _DTYPES[arr.type])[arr.offset:arr.offset + len(arr)]


_DTYPES = {pa.int64(): np.int64, pa.int32(): np.int32, pa.float64(): np.float64}


def from_numpy(a: np.ndarray, type_: pa.DataType) -> pa.Array:
    """A numpy array as an Arrow array without nulls (zero-copy except for bools; ``pa.array``
    would import pandas)."""
    if type_ == pa.bool_():
        return pa.Array.from_buffers(type_, len(a), [None, pa.py_buffer(
            np.packbits(a.astype(bool), bitorder="little"))])
    return pa.Array.from_buffers(type_, len(a), [None, pa.py_buffer(
        np.ascontiguousarray(a, dtype=_DTYPES[type_]))])


def _strings_from_spans(buf: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> pa.Array:
    data, off = _gather(buf, starts, starts + lens)
    return pa.StringArray.from_buffers(len(starts), pa.py_buffer(off), pa.py_buffer(data))


def _strings_from_list(values: list) -> pa.Array:
    enc = [v.encode() for v in values]
    off = np.zeros(len(enc) + 1, np.int32)
    np.cumsum([len(e) for e in enc], out=off[1:])
    return pa.StringArray.from_buffers(len(enc), pa.py_buffer(off), pa.py_buffer(b"".join(enc)))


# ------------------------------------------------------------------------------------------------
# Batches


@dataclass
class Batch:
    """Columns of ``n`` records parsed from one JSON Lines file (numpy arrays, no nulls).

    ``cols`` has one entry per field: int64/float64/bool arrays; ``<pos>.x``/``<pos>.y`` for
    positions; ``<list>.offsets``/``<list>.values`` for the observation list; for ``episode_id``
    the 0-based episode index (-1 when not of the form ``ep-NNNNNN``); for other strings a bool
    array "equals the expected value". ``strings`` gives the string values lazily.
    """

    layout: Layout
    n: int
    nlines: int  # lines in the chunk (n plus the lines that were not well-formed records)
    cols: dict
    first: int = 1  # line number of the chunk's first line in its file
    rows: np.ndarray | None = None  # 0-based line offsets of the records when some were dropped
    _buf: np.ndarray | None = None
    _spans: dict = field(default_factory=dict)
    _strs: dict = field(default_factory=dict)

    @property
    def lines(self) -> np.ndarray:
        """1-based line number of each record in its file."""
        rel = np.arange(self.n, dtype=np.int64) if self.rows is None else self.rows
        return rel + self.first

    def strings(self, name: str) -> pa.Array:
        if name in self._strs:
            return _strings_from_list(self._strs[name])
        starts, lens = self._spans[name]
        return _strings_from_spans(self._buf, starts, lens)

    def string_at(self, name: str, row: int) -> str:
        if name in self._strs:
            return self._strs[name][row]
        starts, lens = self._spans[name]
        s = int(starts[row])
        return bytes(self._buf[s : s + int(lens[row])]).decode()

    def to_arrow(self) -> pa.RecordBatch:
        arrays = []
        for f in self.layout.schema:
            kind = self.layout.kinds[f.name]
            if kind in (T_STR, T_EPID):
                arrays.append(self.strings(f.name))
            elif kind == T_POS:
                arrays.append(pa.StructArray.from_arrays(
                    [from_numpy(self.cols[f"{f.name}.{c}"], pa.int64()) for c in "xy"],
                    fields=list(f.type)))
            elif kind == T_FLIST:
                arrays.append(pa.ListArray.from_arrays(
                    from_numpy(self.cols[f.name + ".offsets"], pa.int32()),
                    from_numpy(self.cols[f.name + ".values"], pa.float64()), type=f.type))
            else:
                arrays.append(from_numpy(self.cols[f.name], f.type))
        return pa.RecordBatch.from_arrays(arrays, schema=self.layout.schema)


def _scan_chunk(layout: Layout, buf: np.ndarray, expected, rows: int, values: int):
    """Run the scanner with fresh output arrays, growing them until they suffice."""
    L = layout
    order = np.full(len(L.names), -1, np.int64)
    while True:
        out = dict(
            ints=np.empty((max(L.n_int, 1), rows), np.int64),
            flts=np.empty((max(L.n_flt, 1), rows), np.float64),
            bools=np.empty((max(L.n_bool, 1), rows), np.uint8),
            sst=np.empty((max(L.n_str, 1), rows), np.int64),
            sln=np.empty((max(L.n_str, 1), rows), np.int64),
            loff=np.empty(rows + 1, np.int64),
            lvals=np.empty(values, np.float64),
            slow=np.empty((L.n_flt * rows + values, 3), np.int64),
            lstart=np.empty(rows, np.int64),
        )
        status, n, nv, ns = _scan(buf, len(buf), L.key_bytes, L.key_len, L.key_type, L.key_slot,
                                  L.key_slot2, expected[0], expected[1], out["ints"], out["flts"],
                                  out["bools"], out["sst"], out["sln"], out["loff"],
                                  out["lvals"], out["slow"], out["lstart"], order)
        if status != 2:
            return status, n, nv, ns, out
        if n >= rows:
            rows *= 2
        else:
            values *= 2


def parse_fast(layout: Layout, chunk, expected, rows: int | None = None) -> Batch | None:
    """Parse a chunk of complete lines (bytes or uint8 array) with the scanner; None when some
    line needs the slow path.

    ``expected`` is ``layout.expected(values)``; ``rows`` an estimate of the row count (a fixed
    estimate keeps the allocations the same size from chunk to chunk). Set ``first`` on the
    result. The batch refers to ``chunk`` for its strings.
    """
    buf = chunk if isinstance(chunk, np.ndarray) else np.frombuffer(chunk, np.uint8)
    if not len(buf) or buf[-1] != 10 or expected is None:
        return None
    rows = rows or len(buf) // 160 + 16
    status, n, nv, ns, out = _scan_chunk(layout, buf, expected, rows, 2 * rows)
    if status != 0:
        return None
    flts, lvals = out["flts"], out["lvals"]
    if ns:
        slow = out["slow"][:ns]
        data, off = _gather(buf, slow[:, 0], slow[:, 1])
        text = pa.StringArray.from_buffers(ns, pa.py_buffer(off), pa.py_buffer(data))
        try:
            vals = to_numpy(pc.cast(text, pa.float64()))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        if not np.isfinite(vals).all():
            return None
        dest = slow[:, 2]
        m = dest >= 0
        flts.ravel()[dest[m]] = vals[m]
        lvals[-dest[~m] - 1] = vals[~m]
    cols, spans = {}, {}
    ints, bools, sst, sln = out["ints"], out["bools"], out["sst"], out["sln"]
    for name in layout.names:
        kind = layout.kinds[name]
        s1, s2 = layout.slot[name]
        if kind == T_INT:
            cols[name] = ints[s1, :n]
        elif kind == T_FLOAT:
            cols[name] = flts[s1, :n]
        elif kind == T_BOOL:
            cols[name] = bools[s1, :n].view(bool)
        elif kind == T_STR:
            cols[name] = bools[s2, :n].view(bool)
            spans[name] = (sst[s1, :n], sln[s1, :n])
        elif kind == T_EPID:
            cols[name] = ints[s2, :n]
            spans[name] = (sst[s1, :n], sln[s1, :n])
        elif kind == T_POS:
            cols[name + ".x"] = ints[s1, :n]
            cols[name + ".y"] = ints[s2, :n]
        else:
            cols[name + ".offsets"] = out["loff"][: n + 1]
            cols[name + ".values"] = lvals[:nv]
    return Batch(layout, n, n, cols, _buf=buf, _spans=spans)


# ------------------------------------------------------------------------------------------------
# Per-line path (exact diagnosis)

_EPID_RE = re.compile(r"ep-([0-9]{6,18})\Z")


def episode_index(s) -> int:
    """0-based index of an episode id ``ep-NNNNNN`` (canonical form only), else -1."""
    if not isinstance(s, str):
        return -1
    m = _EPID_RE.match(s)
    if not m:
        return -1
    digits = m.group(1)
    if len(digits) > 6 and digits[0] == "0":
        return -1
    v = int(digits)
    return v - 1 if v >= 1 else -1


class StrictJSONError(ValueError):
    """Text ``json.loads`` accepts but the format does not: NaN/Infinity, duplicate keys."""


class DuplicateKeyError(StrictJSONError):
    pass


def _reject_constant(name):
    raise StrictJSONError(f"{name} is not valid JSON")


def _unique_keys(pairs):
    d = dict(pairs)
    if len(d) != len(pairs):
        seen = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise DuplicateKeyError(f"duplicate key {dup!r}")
    return d


def strict_loads(text):
    """``json.loads`` that rejects NaN/Infinity and duplicate keys (raises ValueError)."""
    return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)


def _is_int(v) -> bool:
    return type(v) is int and -(2 ** 63) <= v < 2 ** 63


def _is_num(v) -> bool:
    if type(v) is float:
        return math.isfinite(v)
    if type(v) is int:
        return abs(v) < 2 ** 1023
    return False


def _type_ok(kind: int, v) -> bool:
    if kind == T_INT:
        return _is_int(v)
    if kind == T_FLOAT:
        return _is_num(v)
    if kind == T_BOOL:
        return type(v) is bool
    if kind in (T_STR, T_EPID):
        return type(v) is str
    if kind == T_POS:
        return (type(v) is dict and set(v) == {"x", "y"} and _is_int(v["x"]) and _is_int(v["y"]))
    return type(v) is list and all(_is_num(e) for e in v)


def check_line(layout: Layout, line: bytes):
    """Parse one line strictly -> (record, None, None) or (None, code, message)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, "RECORD_JSON", f"not UTF-8 ({e.reason} at byte {e.start})"
    if not text.strip():
        return None, "RECORD_JSON", "blank line"
    try:
        obj = strict_loads(text)
    except StrictJSONError as e:
        return None, "RECORD_KEYS" if isinstance(e, DuplicateKeyError) else "RECORD_JSON", str(e)
    except ValueError as e:
        return None, "RECORD_JSON", f"invalid JSON ({e})"
    if type(obj) is not dict:
        return None, "RECORD_JSON", f"not a JSON object ({type(obj).__name__})"
    missing = [n for n in layout.names if n not in obj]
    unknown = [k for k in obj if k not in layout.kinds]
    if missing or unknown:
        parts = []
        if missing:
            parts.append("missing key(s) " + ", ".join(missing))
        if unknown:
            parts.append("unknown key(s) " + ", ".join(repr(k) for k in unknown))
        return None, "RECORD_KEYS", "; ".join(parts)
    for n in layout.names:
        kind = layout.kinds[n]
        if not _type_ok(kind, obj[n]):
            v = json.dumps(obj[n])
            v = v if len(v) <= 40 else v[:37] + "..."
            return None, "RECORD_TYPE", f"{n} must be {_TYPE_NAMES[kind]}, got {v}"
    return obj, None, None


def parse_slow(layout: Layout, chunk: bytes, first_line: int, expected_values: dict | None):
    """Per-line parse of a chunk -> (Batch of the good lines, [(line, code, message), ...])."""
    rows, offsets, problems = [], [], []
    chunk = bytes(chunk)
    text = chunk[:-1] if chunk.endswith(b"\n") else chunk
    parts = text.split(b"\n")
    for i, line in enumerate(parts):
        rec, code, msg = check_line(layout, line)
        if rec is None:
            problems.append((first_line + i, code, msg))
        else:
            rows.append(rec)
            offsets.append(i)
    batch = rows_to_batch(layout, rows, expected_values)
    batch.first, batch.nlines = first_line, len(parts)
    if len(rows) != len(parts):
        batch.rows = np.array(offsets, np.int64)
    return batch, problems


def rows_to_batch(layout: Layout, rows: list, expected_values=None) -> Batch:
    """A Batch from checked record dicts."""
    expected_values = expected_values or {}
    cols, strs = {}, {}
    for name in layout.names:
        kind = layout.kinds[name]
        vals = [r[name] for r in rows]
        if kind == T_INT:
            cols[name] = np.array(vals, np.int64)
        elif kind == T_FLOAT:
            cols[name] = np.array(vals, np.float64)
        elif kind == T_BOOL:
            cols[name] = np.array(vals, bool)
        elif kind == T_STR:
            exp = expected_values.get(name)
            cols[name] = np.array([v == exp for v in vals], bool)
            strs[name] = vals
        elif kind == T_EPID:
            cols[name] = np.array([episode_index(v) for v in vals], np.int64)
            strs[name] = vals
        elif kind == T_POS:
            cols[name + ".x"] = np.array([v["x"] for v in vals], np.int64)
            cols[name + ".y"] = np.array([v["y"] for v in vals], np.int64)
        else:
            lens = np.array([len(v) for v in vals], np.int64)
            cols[name + ".offsets"] = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
            cols[name + ".values"] = np.array([x for v in vals for x in v], np.float64)
    return Batch(layout, len(rows), len(rows), cols, _strs=strs)


# ------------------------------------------------------------------------------------------------
# Gzip streaming


class BufferPool:
    """A few fixed-size byte buffers, recycled (variable-size multi-MB allocations fragment the C
    heap and make the RSS grow with the data read)."""

    OUT = 1 << 18  # decompressed bytes per call (at most)

    def __init__(self, chunk_bytes: int = 4 << 20, slots: int = 2):
        self.chunk_bytes = max(int(chunk_bytes), 1)
        self.out = min(self.OUT, self.chunk_bytes)
        self.cap = self.chunk_bytes + self.out + 1
        self.slots = slots
        self._made = 0
        self._free: queue.Queue = queue.Queue()
        self._ids: set = set()
        self._closed = False

    def get(self) -> np.ndarray:
        """A free buffer (waits for one when all are out); raises _Closed after ``close``."""
        while True:
            if self._closed:
                raise _Closed
            if self._free.empty() and self._made < self.slots:
                self._made += 1
                buf = np.empty(self.cap, np.uint8)
                self._ids.add(id(buf))
                return buf
            buf = self._free.get()
            if buf is not None:
                return buf

    def put(self, chunk: np.ndarray):
        """Give back the buffer of ``chunk`` (a view of it); other arrays are ignored."""
        base = chunk.base if isinstance(chunk.base, np.ndarray) else chunk
        if id(base) in self._ids:
            self._free.put(base)

    def close(self):
        """Make a waiting ``get`` (in another thread) give up."""
        self._closed = True
        self._free.put(None)


class _Closed(Exception):
    pass


class GzipLines:
    """Streams a gzip file (possibly multi-member) as chunks of complete lines.

    Iterating yields uint8 arrays that end with a newline, views of the buffers of ``pool``:
    with ``auto_release`` a chunk stays valid until the next one is requested; otherwise until
    ``pool.put(chunk)``, and iteration waits while all buffers are out. Afterwards
    ``bytes_read`` and ``sha256`` cover the whole file and ``problem`` is None or
    ``(code, message)`` for GZIP_TRUNCATED / GZIP_CORRUPT / RECORD_JSON (after which only the
    complete lines decoded before the damage were yielded).
    """

    MAX_LINE = 64 << 20

    def __init__(self, path, chunk_bytes: int = 4 << 20, *, pool: BufferPool | None = None,
                 auto_release: bool = True, read_bytes: int = 1 << 20):
        self.path = path
        self.pool = pool or BufferPool(chunk_bytes, 2)
        self.chunk_bytes = self.pool.chunk_bytes
        self.read_bytes = read_bytes
        self.auto_release = auto_release
        self.bytes_read = 0
        self.sha256 = None
        self.problem = None

    def __iter__(self) -> Iterator[np.ndarray]:
        h = hashlib.sha256()
        d = isal_zlib.decompressobj(31)
        fed = False
        members = 0
        out_of_turn = None  # the chunk to release when the next is requested (auto_release)
        pool = self.pool
        slot, fill = pool.get(), 0
        no_nl = 0  # slot[:no_nl] is known to hold no newline
        raw = bytearray(self.read_bytes)
        view = memoryview(raw)
        try:
            with open(self.path, "rb") as f:
                while True:
                    k = f.readinto(raw)
                    if not k:
                        break
                    h.update(view[:k])
                    self.bytes_read += k
                    data = bytes(view[:k]) if self.problem is None else b""
                    while data and self.problem is None:
                        if d.eof:
                            d = isal_zlib.decompressobj(31)
                            fed = False
                        if not fed and members and not data.startswith(b"\x1f\x8b"[:len(data)]):
                            self.problem = ("GZIP_CORRUPT", f"{len(data)}+ bytes after gzip "
                                            f"member {members} are not a gzip member")
                            break
                        fed = True
                        try:
                            out = d.decompress(data, pool.out)
                        except isal_zlib.error as e:
                            self.problem = ("GZIP_CORRUPT", f"gzip member {members + 1} cannot be "
                                            f"decoded (near compressed byte "
                                            f"{self.bytes_read - len(data)}: {e})")
                            break
                        if d.eof:
                            members += 1
                            data = d.unused_data
                        else:
                            data = d.unconsumed_tail
                        n = len(out)
                        if fill + n > len(slot):  # a line longer than a buffer: grow (rare)
                            if fill + n > self.MAX_LINE:
                                self.problem = ("RECORD_JSON", "a line is longer than "
                                                f"{self.MAX_LINE >> 20} MiB")
                                break
                            bigger = np.empty(2 * (fill + n), np.uint8)
                            bigger[:fill] = slot[:fill]
                            pool.put(slot)
                            slot = bigger
                        slot[fill:fill + n] = np.frombuffer(out, np.uint8)
                        fill += n
                        if fill >= self.chunk_bytes:
                            cut = _last_newline(slot, no_nl, fill) + 1
                            no_nl = fill
                            if cut > 0:
                                if out_of_turn is not None:
                                    pool.put(out_of_turn)
                                    out_of_turn = None
                                nxt = pool.get()
                                rest = fill - cut
                                if rest > len(nxt):
                                    pool.put(nxt)
                                    nxt = np.empty(2 * rest, np.uint8)
                                nxt[:rest] = slot[cut:fill]
                                chunk = slot[:cut]
                                slot, fill, no_nl = nxt, rest, rest
                                if self.auto_release:
                                    out_of_turn = chunk
                                yield chunk
            if self.problem is None:
                if self.bytes_read == 0:
                    self.problem = ("GZIP_TRUNCATED", "empty file (no gzip member)")
                elif fed and not d.eof:
                    self.problem = ("GZIP_TRUNCATED", f"the gzip stream ends inside member "
                                    f"{members + 1} ({self.bytes_read} bytes read)")
                elif fill and slot[fill - 1] != 10:
                    self.problem = ("RECORD_JSON", "the last line is not newline-terminated")
                    if fill == len(slot):
                        bigger = np.empty(fill + 1, np.uint8)
                        bigger[:fill] = slot[:fill]
                        slot = bigger
                    slot[fill] = 10
                    fill += 1
            # After damage: hand on the complete lines decoded before it.
            cut = _last_newline(slot, 0, fill) + 1
            if cut > 0:
                if out_of_turn is not None:
                    pool.put(out_of_turn)
                yield slot[:cut]
                if self.auto_release:
                    pool.put(slot)
            else:
                pool.put(slot)
        except _Closed:
            return
        finally:
            self.sha256 = h.hexdigest()


@njit
def _last_newline(buf, lo, end):
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


def sha256_file(path, block: int = 4 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(block)
            if not b:
                return h.hexdigest()
            h.update(b)


# ------------------------------------------------------------------------------------------------
# File discovery

_PART_RE = re.compile(r"(steps|episodes)\.part(\d+)\.jsonl\.gz\Z")


@dataclass
class RunFiles:
    """The artifact files of a run directory, as the readers see them."""

    jsonl: dict  # base -> [file names in order]
    parquet: dict  # base -> file name or None
    missing_parts: list  # (base, expected name) for gaps in the part numbering
    stray: list  # names that look like artifacts of a base but are not read by any reader
    other: list  # other names


def list_run_files(run_dir) -> RunFiles:
    names = sorted(os.listdir(run_dir))
    jsonl, parquet, missing, stray, other = {}, {}, [], [], []
    for base in (records.STEPS_BASENAME, records.EPISODES_BASENAME):
        parts = {}
        for n in names:
            m = _PART_RE.match(n)
            if m and m.group(1) == base and int(m.group(2)) >= 1 and \
                    records.part_name(base, int(m.group(2))) == n:
                parts[int(m.group(2))] = n
        files = []
        base_name = records.part_name(base, 0)
        if base_name in names:
            files.append(base_name)
        if parts:
            for k in range(1, max(parts) + 1):
                if k in parts:
                    files.append(parts[k])
                else:
                    missing.append((base, records.part_name(base, k)))
        jsonl[base] = files
        parquet[base] = f"{base}.parquet" if f"{base}.parquet" in names else None
    known = {n for fs in jsonl.values() for n in fs} | {p for p in parquet.values() if p}
    known.add("run.json")
    for n in names:
        if n in known:
            continue
        if n.startswith((f"{records.STEPS_BASENAME}.", f"{records.EPISODES_BASENAME}.")):
            stray.append(n)
        else:
            other.append(n)
    return RunFiles(jsonl, parquet, missing, stray, other)


def parse_chunk(layout: Layout, chunk: bytes, first_line: int, expected, expected_values):
    """-> (batch, problems): the scanner, or the per-line path when it declines."""
    batch = parse_fast(layout, chunk, expected)
    if batch is None:
        return parse_slow(layout, chunk, first_line, expected_values)
    batch.first = first_line
    return batch, []


def iter_jsonl_batches(path, layout: Layout, expected_values: dict | None = None,
                       chunk_bytes: int = 4 << 20):
    """Yield ``(batch, problems)`` for one JSON Lines file (problems: [(line, code, message)]);
    a damaged gzip stream ends with ``(None, [(line, code, message)])``. A batch is valid until
    the next one is requested."""
    reader = GzipLines(path, chunk_bytes)
    expected = layout.expected(expected_values)
    line = 1
    for chunk in reader:
        batch, problems = parse_chunk(layout, chunk, line, expected, expected_values)
        line += batch.nlines
        yield batch, problems
    if reader.problem is not None:
        yield None, [(line, *reader.problem)]


# ------------------------------------------------------------------------------------------------
# load_run


@dataclass
class LoadedRun:
    """A run directory in memory: ``meta`` (run.json), ``steps`` and ``episodes`` Arrow tables."""

    run_dir: str
    meta: dict | None
    steps: pa.Table
    episodes: pa.Table
    sources: dict = field(default_factory=dict)

    def to_pandas(self):
        """(steps, episodes) as pandas DataFrames."""
        return self.steps.to_pandas(), self.episodes.to_pandas()


def _read_jsonl_table(run_dir, files: list, layout: Layout) -> pa.Table:
    batches = []
    for name in files:
        for batch, problems in iter_jsonl_batches(os.path.join(run_dir, name), layout):
            if problems:
                line, code, msg = problems[0]
                raise ValueError(f"{name}:{line}: {code}: {msg} "
                                 "(run plume-nav-validate for a full report)")
            batches.append(batch.to_arrow())
    return pa.Table.from_batches(batches, schema=layout.schema)


def _read_parquet_table(path, schema: pa.Schema) -> pa.Table:
    t = pq.read_table(path)
    meta = t.schema.metadata
    if not t.schema.remove_metadata().equals(schema):
        t = t.select(schema.names).cast(schema)
    return t.replace_schema_metadata(meta)


def load_run(run_dir, *, prefer: str = "parquet") -> LoadedRun:
    """Load a run directory: ``meta`` from run.json, steps and episodes as Arrow tables.

    ``prefer="parquet"`` reads ``<base>.parquet`` when present, else all JSON Lines parts in
    order; ``prefer="jsonl"`` always reads the JSON Lines. Raises FileNotFoundError for a missing
    directory or steps/episodes file and ValueError for unreadable records (the loader does not
    validate; use ``validate_run_artifacts`` for that).
    """
    if prefer not in ("parquet", "jsonl"):
        raise ValueError(f"prefer must be 'parquet' or 'jsonl', not {prefer!r}")
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"not a run directory: {run_dir}")
    meta = None
    meta_path = os.path.join(run_dir, "run.json")
    if os.path.exists(meta_path):
        with open(meta_path, "rb") as f:
            meta = strict_loads(f.read())
    files = list_run_files(run_dir)
    sources = {}
    for base in (records.STEPS_BASENAME, records.EPISODES_BASENAME):
        if prefer == "parquet" and files.parquet[base]:
            sources[base] = [files.parquet[base]]
        elif files.jsonl[base]:
            sources[base] = list(files.jsonl[base])
        else:
            raise FileNotFoundError(f"{run_dir}: no {records.part_name(base, 0)}")
    tables = {}
    for base, layout in ((records.STEPS_BASENAME, STEP_LAYOUT),
                         (records.EPISODES_BASENAME, EPISODE_LAYOUT)):
        if sources[base][0].endswith(".parquet"):
            tables[base] = _read_parquet_table(os.path.join(run_dir, sources[base][0]),
                                               layout.schema)
        else:
            tables[base] = _read_jsonl_table(run_dir, sources[base], layout)
    return LoadedRun(run_dir, meta, tables[records.STEPS_BASENAME],
                     tables[records.EPISODES_BASENAME], sources)
