"""Artifact writers (docs/spec.md §9.1): JSON Lines as gzip members, rotated parts, streaming Parquet.

Shard actors call :func:`encode_jsonl` on their Arrow tables (CPU heavy, one core each); the driver
only appends the resulting gzip members with :class:`JsonlPartWriter` (rotation, sha256) and streams
tables into :class:`ParquetStreamWriter`.

JSON text. One object per line, keys in column order, compact separators (``{"a":1,"b":[0.5]}``),
strings as ``json.dumps(s, ensure_ascii=False)`` writes them. Floats use polars' float-to-string
cast (Rust, shortest round-trip): ``json.loads`` gives back the exact float64 and integral values
keep a ``.0`` or exponent (``1.0``, ``1e+16``), so they parse as floats. float32 columns are widened
to float64 first (docs/spec.md §9.1). NaN/Infinity and nulls raise ``ValueError``. The lines are assembled
by a Numba kernel in row chunks of ~2 MiB that are compressed right away (isal, gzip container), so
memory stays bounded and hot; only floats are formatted by polars, and a run of equal values in a
column (timestamps of one kernel call) is formatted once. The text is byte-identical to polars
``DataFrame.write_ndjson`` for the step/episode schemas (tested); with compression it is ~1.5x as
fast per core (2.0-2.4 vs 1.4 M step rows/s, ``benchmarks/bench_writers.py``).

Threads. polars reads ``POLARS_MAX_THREADS`` once, when it is first imported; this module imports
polars lazily (on the first :func:`encode_jsonl`), so a Ray actor running with one CPU should call
``configure_threads(1)`` before anything imports polars.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from isal import isal_zlib

from plume_capture.io.arrow import column, to_numpy
from plume_capture.kernels.jsonl_encode import (BOOL, FLOAT, FLOAT_LIST, INT, TOKEN, TOKEN_LIST, assemble,
                                                periodic)

__all__ = ["BLOCK_BYTES", "EMPTY_GZIP_MEMBER", "EncodedJsonl", "configure_threads", "encode_jsonl",
           "load_polars_for"]

BLOCK_BYTES = 65536  # docs/spec.md §9.1: uncompressed text per gzip member when rotation is on
_GZIP_WBITS = 31  # zlib wbits for the gzip container (header mtime 0: deterministic bytes)
EMPTY_GZIP_MEMBER = isal_zlib.compress(b"", 1, wbits=_GZIP_WBITS)
_CHUNK_TEXT_BYTES = 2 << 20  # text assembled per kernel call


def configure_threads(n: int) -> bool:
    """Limit polars to `n` threads; returns whether that limit is in force.

    Only effective before polars is first imported in this process (it reads
    ``POLARS_MAX_THREADS`` once); afterwards it returns False if the pool size differs.
    """
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    os.environ["POLARS_MAX_THREADS"] = str(n)
    pl = sys.modules.get("polars")
    return pl is None or pl.thread_pool_size() == n


# --------------------------------------------------------------------------------------------
# JSON Lines encoding
# --------------------------------------------------------------------------------------------


@dataclass
class EncodedJsonl:
    """One shard's JSON Lines, compressed, ready to append."""

    members: list  # complete gzip members (bytes, or read-only buffers after a Ray transfer), in order
    raw_sizes: list[int]  # uncompressed bytes per member
    rows: list[int]  # records per member

    def __reduce_ex__(self, protocol):
        # Protocol 5 (Ray): the members travel out of band, straight into and out of Ray's
        # shared-memory object store, instead of being copied through the pickle stream.
        if protocol >= 5:
            import pickle

            return _rebuild_encoded, ([pickle.PickleBuffer(m) for m in self.members], self.raw_sizes, self.rows)
        return EncodedJsonl, (self.members, self.raw_sizes, self.rows)


def _rebuild_encoded(members, raw_sizes, rows) -> EncodedJsonl:
    return EncodedJsonl([m if isinstance(m, bytes) else memoryview(m).cast("B") for m in members], raw_sizes, rows)


_FLOAT_TEXT_MAX = 25  # a float64's text: "-0.0000" and 17 digits at most, or "-d.dddddddddddddddde-308"
_INT_TEXT_MAX = 20  # an int64's


def max_line_bytes(base: str, *, obs_size: int, run_id: str, episodes: int, max_steps: int) -> int:
    """An upper bound on one JSON Lines record of ``base`` (``steps``/``episodes``), newline included."""
    from plume_capture.spec import SCHEMA_VERSION, SEED_MAX, episode_id

    pos = {"x": 0, "y": 0}
    common = {"episode_id": episode_id(episodes - 1), "run_id": run_id, "schema_version": SCHEMA_VERSION,
              "terminated": False, "truncated": False}
    if base == "steps":
        rec = {**common, "action": 0, "agent_position": pos, "distance_to_goal": 0.0,
               "observation_summary": [0.0] * obs_size, "reward": 0.0, "seed": SEED_MAX, "step": max_steps,
               "ts": 0.0}
        ints, floats = 3, 3 + obs_size
    else:
        rec = {**common, "avg_step_time_ms": 0.0, "duration_ms": 0.0, "final_distance_to_goal": 0.0,
               "final_position": pos, "total_reward": 0.0, "total_steps": max_steps}
        ints, floats = 2, 4
    text = json.dumps(rec, separators=(",", ":"), ensure_ascii=False).encode()
    return len(text) + 1 + ints * (_INT_TEXT_MAX - 1) + floats * (_FLOAT_TEXT_MAX - 3)


def _pl():
    import polars

    return polars


def load_polars_for(rows: int) -> None:
    """Import polars now, in the calling thread, if encoding a table of ``rows`` rows would use it:
    two threads importing polars for the first time at once can fail (an internal error, now
    and then), so a pool of encoding threads gets it imported before they start."""
    if rows > PYTHON_FLOATS_MAX_ROWS:
        _pl()


def _ro(a: np.ndarray) -> np.ndarray:
    # One array type (read-only) for every pool argument, so the kernel compiles once.
    a = a.view()
    a.flags.writeable = False
    return a


def _string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(int64 offsets, uint8 data) of a string-like array, as large_string."""
    arr = arr.cast(pa.large_string()) if arr.type != pa.large_string() else arr
    bufs = arr.buffers()
    off = np.frombuffer(bufs[1], dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    return off, data


#: tables of at most this many rows have their floats formatted in Python while polars is not
#: loaded yet (a small run then does not pay polars' ~0.1 s import; the text is the same, see
#: ``float_text``); larger tables always use polars (Python's repr is ~30x slower per value)
PYTHON_FLOATS_MAX_ROWS = 4096


def float_text(v: float) -> str:
    """polars' text of a finite float64, from Python's shortest round-trip ``repr`` (the same
    digits): they differ only in the decimal exponent -5 (polars: ``0.00001``, Python ``1e-05``)
    and in the exponent's zero padding (polars ``1e-7``, Python ``1e-07``)."""
    r = repr(v)
    mant, sep, exp = r.partition("e-")
    if not sep:
        return r
    if exp == "05":
        sign, digits = ("-", mant[1:]) if mant[0] == "-" else ("", mant)
        return sign + "0.0000" + digits.replace(".", "")
    return f"{mant}e-{int(exp)}"


def _format_floats_python(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    texts = [float_text(v).encode() for v in x.tolist()]
    off = np.zeros(len(texts) + 1, np.uint64)
    np.cumsum([len(b) for b in texts], out=off[1:])
    return _ro(off), _ro(np.frombuffer(b"".join(texts), np.uint8))


def _format_floats(x: np.ndarray, python: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Shortest round-trip text of float64 values: (uint64 offsets, uint8 data); with ``python``,
    formatted by :func:`float_text` (the same text) instead of polars."""
    if python:
        return _format_floats_python(x)
    pl = _pl()
    s = pl.Series(values=x, dtype=pl.Float64).cast(pl.String).to_arrow()
    if isinstance(s, pa.ChunkedArray):
        s = s.combine_chunks()
    off, data = _string_buffers(s)
    return _ro(off.view(np.uint64)), _ro(data)


def _json_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


class _Plan:
    """Per-table layout: literal text between values, value columns, per-table token pool."""

    def __init__(self, table: pa.Table):
        self.n = table.num_rows
        self.python_floats = self.n <= PYTHON_FLOATS_MAX_ROWS and "polars" not in sys.modules
        self.kinds: list[int] = []
        self.cols: list[int] = []
        self.lits: list[str] = []
        self._cur = ""
        self.ints: list[np.ndarray] = []
        self.bools: list[np.ndarray] = []
        self.fcols: list[np.ndarray] = []  # scalar float columns
        self.flists: list[tuple[np.ndarray, int]] = []  # (values, list row)
        self.ts_base: list[int] = []  # scalar token columns (pool 0)
        self.tl: list[tuple[int, int]] = []  # token list columns (pool 0): (base, list row)
        self.list_offs: list[np.ndarray] = []
        self._static: list[pa.Array] = []
        self._static_len = 0
        for i, name in enumerate(table.column_names):
            col = table.column(name)
            arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
            self._cur += ("{" if i == 0 else ",") + _json_str(name) + ":"
            self._value(name, arr)
        self.lits.append(self._cur + "}\n" if table.column_names else "{}\n")
        lb = [s.encode() for s in self.lits]
        self.lit_data = np.frombuffer(bytearray(b"".join(lb)), np.uint8)
        self.lit_off = np.cumsum([0] + [len(b) for b in lb]).astype(np.uint64)
        if self._static:
            pool = self._static[0] if len(self._static) == 1 else pa.concat_arrays(self._static)
            off0, data0 = _string_buffers(pool)
        else:
            off0, data0 = np.zeros(1, np.int64), np.zeros(0, np.uint8)
        self.off0 = _ro(off0.view(np.uint64))
        self.data0 = _ro(data0)
        self.list_off = np.stack(self.list_offs) if self.list_offs else np.zeros((1, 1), np.int64)
        self.fixed_row_bytes = (len(self.lit_data) + 20 * len(self.ints) + 5 * len(self.bools)
                                + 2 * len(self.list_offs))
        floats = len(self.fcols) * self.n + sum(len(v) for v, _ in self.flists)
        static = int(self.off0[-1] - self.off0[0]) + len(self.off0)
        self.row_bytes = self.fixed_row_bytes + (25 * floats + static) / max(self.n, 1)

    def _op(self, kind: int, col: int) -> None:
        self.lits.append(self._cur)
        self._cur = ""
        self.kinds.append(kind)
        self.cols.append(col)

    def _static_tokens(self, tokens: pa.Array) -> int:
        base = self._static_len
        self._static.append(tokens.cast(pa.large_string()))
        self._static_len += len(tokens)
        return base

    def _value(self, name: str, arr: pa.Array) -> None:
        t = arr.type
        if arr.null_count:
            raise ValueError(f"column {name!r} has null values; records need every field")
        if pa.types.is_dictionary(t):
            return self._value(name, arr.dictionary_decode())
        if pa.types.is_struct(t):
            self._cur += "{"
            for j, (field, child) in enumerate(zip(t, arr.flatten())):
                self._cur += ("," if j else "") + _json_str(field.name) + ":"
                self._value(f"{name}.{field.name}", child)
            self._cur += "}"
            return
        if _is_list(t):
            return self._list(name, arr)
        n = len(arr)
        # A column holding one value throughout (run_id, schema_version, ...) becomes literal text.
        if pa.types.is_integer(t):
            x = self._int_values(name, arr)
            if n and np.all(x == x[0]):
                self._cur += str(int(x[0]))
            else:
                self._op(INT, len(self.ints))
                self.ints.append(x)
        elif pa.types.is_boolean(t):
            x = to_numpy(arr)
            if n and np.all(x == x[0]):
                self._cur += "true" if x[0] else "false"
            else:
                self._op(BOOL, len(self.bools))
                self.bools.append(x)
        elif pa.types.is_floating(t):
            x = self._float_values(name, arr)
            if n and np.all(x.view(np.uint64) == x[:1].view(np.uint64)[0]):
                off, data = _format_floats(x[:1], self.python_floats)
                self._cur += bytes(data[off[0] : off[1]]).decode()
            else:
                self._op(FLOAT, len(self.fcols))
                self.fcols.append(x)
        elif _is_string(t):
            off, data = _string_buffers(arr)
            if n and self._all_equal(off, data):
                self._cur += _json_str(arr[0].as_py())
                return
            d = data[off[0] : off[-1]]
            escape = bool(np.any((d < 0x20) | (d == 0x22) | (d == 0x5C)))
            # Plain strings are copied raw between literal quotes; others get json.dumps tokens.
            base = self._static_tokens(self._escaped(arr) if escape else arr)
            self._cur += "" if escape else '"'
            self._op(TOKEN, len(self.ts_base))
            self._cur += "" if escape else '"'
            self.ts_base.append(base)
        else:
            raise TypeError(f"column {name!r}: type {t} is not supported in JSON Lines records")

    def _list(self, name: str, arr: pa.Array) -> None:
        values = arr.flatten()
        if values.null_count:
            raise ValueError(f"column {name!r} has null list elements")
        if pa.types.is_fixed_size_list(arr.type):
            offs = np.arange(len(arr) + 1, dtype=np.int64) * arr.type.list_size
        else:
            offs = to_numpy(arr.offsets).astype(np.int64)
            offs -= offs[0]
        lrow = len(self.list_offs)
        self.list_offs.append(offs)
        vt = values.type
        if pa.types.is_floating(vt):
            self._op(FLOAT_LIST, len(self.flists))
            self.flists.append((self._float_values(name, values), lrow))
            return
        if pa.types.is_integer(vt):
            tokens = column(self._int_values(name, values)).cast(pa.large_string())
        elif pa.types.is_boolean(vt):
            tokens = pa.array(np.where(to_numpy(values), "true", "false"))
        elif _is_string(vt):
            tokens = self._escaped(values)
        else:
            raise TypeError(f"column {name!r}: list of {vt} is not supported in JSON Lines records")
        self._op(TOKEN_LIST, len(self.tl))
        self.tl.append((self._static_tokens(tokens), lrow))

    @staticmethod
    def _int_values(name: str, arr: pa.Array) -> np.ndarray:
        if arr.type != pa.int64():
            try:
                arr = arr.cast(pa.int64())
            except pa.ArrowInvalid as e:
                raise ValueError(f"column {name!r}: integer out of int64 range") from e
        return np.ascontiguousarray(to_numpy(arr))

    @staticmethod
    def _float_values(name: str, arr: pa.Array) -> np.ndarray:
        x = np.ascontiguousarray(to_numpy(arr), dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"column {name!r} has NaN or infinite values, which JSON cannot hold")
        return x

    @staticmethod
    def _all_equal(off: np.ndarray, data: np.ndarray) -> bool:
        size = int(off[1] - off[0])
        if int(off[-1] - off[-2]) != size or not np.all(np.diff(off) == size):
            return False
        return bool(periodic(data[off[0] : off[-1]], size)) if size else True

    @staticmethod
    def _escaped(arr: pa.Array) -> pa.Array:
        enc = arr.dictionary_encode()
        quoted = pa.array([_json_str(s) for s in enc.dictionary.to_pylist()], pa.large_string())
        return quoted.take(enc.indices)

    def chunk_rows(self) -> int:
        return int(max(64, min(self.n, _CHUNK_TEXT_BYTES // max(self.row_bytes, 1))))

    def float_tokens(self, r0: int, r1: int, fidx: np.ndarray, fl_base: np.ndarray):
        """Format the floats of rows r0..r1-1 into pool 1; fills the kernel's indexes into it.

        Runs of one repeated value in a column (timestamps of one kernel call, a constant
        reward, ...) are formatted once.
        """
        m = r1 - r0
        parts = []
        start = 0
        change = np.empty(m, np.bool_)
        change[0] = True
        for k, x in enumerate(self.fcols):
            seg = x[r0:r1]
            u = seg.view(np.uint64)
            np.not_equal(u[1:], u[:-1], out=change[1:])
            idx = fidx[k, :m]
            np.cumsum(change, out=idx)
            runs = int(idx[-1])
            idx += start - 1
            parts.append(seg if runs == m else seg[change])
            start += runs
        for k, (x, lrow) in enumerate(self.flists):
            offs = self.list_offs[lrow]
            a, b = int(offs[r0]), int(offs[r1])
            parts.append(x[a:b])
            fl_base[k] = start - a
            start += b - a
        x = np.concatenate(parts) if len(parts) > 1 else (parts[0] if parts else np.zeros(0))
        return _format_floats(x, self.python_floats)

    def bound(self, r0: int, r1: int, off1: np.ndarray, data1: np.ndarray) -> int:
        """Upper bound of the text size of rows r0..r1-1."""
        m = r1 - r0
        # pool 1 holds each float list item once, but a scalar token once per run of rows
        total = m * self.fixed_row_bytes + len(data1) + len(off1)
        if self.fcols and len(off1) > 1:
            total += len(self.fcols) * m * int(np.max(np.diff(off1)))
        spans = [(b + r0, b + r1) for b in self.ts_base]
        spans += [(b + int(self.list_offs[lr][r0]), b + int(self.list_offs[lr][r1])) for b, lr in self.tl]
        for a, b in spans:
            total += int(self.off0[b] - self.off0[a]) + (b - a)
        return total


def _int_array(values: list[int]) -> np.ndarray:
    """Index array for the kernel; never empty, so that it is never typed from an empty list."""
    return np.array(values or [0], np.int64)


def encode_jsonl(table: pa.Table, *, block_bytes: int | None = None, level: int = 1,
                 _chunk_rows: int | None = None) -> EncodedJsonl:
    """Encode `table` as JSON Lines in gzip members (see the module docstring for the format).

    `block_bytes=None`: one member for the whole table. `block_bytes=B`: the text is cut at record
    boundaries so that each member holds at most B uncompressed bytes, except that a single record
    longer than B gets a member of its own; cuts depend only on the text, never on chunking.
    `level` is the isal compression level (0-3). A table without rows gives no members.
    """
    if block_bytes is not None and block_bytes < 1:
        raise ValueError(f"block_bytes must be >= 1, got {block_bytes}")
    if not 0 <= level <= 3:
        raise ValueError(f"isal compression level must be 0..3, got {level}")
    plan = _Plan(table)
    n = plan.n
    enc = EncodedJsonl([], [], [])
    if n == 0:
        return enc
    R = _chunk_rows or plan.chunk_rows()
    kinds, cols = np.array(plan.kinds, np.int64), np.array(plan.cols, np.int64)
    ts_base = _int_array(plan.ts_base)
    tl_base, tl_lrow = _int_array([b for b, _ in plan.tl]), _int_array([lr for _, lr in plan.tl])
    fl_base, fl_lrow = _int_array([0] * len(plan.flists)), _int_array([lr for _, lr in plan.flists])
    ints = np.empty((len(plan.ints), R), np.int64)
    bools = np.empty((len(plan.bools), R), np.uint8)
    fidx = np.empty((len(plan.fcols), R), np.int64)
    buf = np.empty(0, np.uint8)
    ends = np.empty(2 * R + 1, np.int64)
    comp = None
    if block_bytes is None:
        comp = isal_zlib.compressobj(level, isal_zlib.DEFLATED, _GZIP_WBITS)
    pieces: list[bytes] = []
    carry_bytes = carry_rows = raw_total = 0
    for r0 in range(0, n, R):
        r1 = min(n, r0 + R)
        m = r1 - r0
        for k, x in enumerate(plan.ints):
            ints[k, :m] = x[r0:r1]
        for k, x in enumerate(plan.bools):
            bools[k, :m] = x[r0:r1]
        off1, data1 = plan.float_tokens(r0, r1, fidx, fl_base)
        need = carry_bytes + plan.bound(r0, r1, off1, data1)
        if need > len(buf):
            grown = np.empty(max(need, 2 * len(buf)), np.uint8)
            grown[:carry_bytes] = buf[:carry_bytes]
            buf = grown
        if carry_rows + m > len(ends):
            ends = np.concatenate([ends[:carry_rows], np.empty(m, np.int64)])
        pos = int(assemble(r0, r1, kinds, cols, plan.lit_data, plan.lit_off, ints, bools, fidx,
                            fl_base, fl_lrow, ts_base, tl_base, tl_lrow, plan.list_off,
                            plan.off0, plan.data0, off1, data1, buf, np.uint64(carry_bytes),
                            ends[carry_rows:]))
        if pos > len(buf):  # cannot happen unless bound() is wrong; then memory is corrupt
            raise RuntimeError("JSON Lines text overflowed its buffer")
        if comp is not None:
            pieces.append(comp.compress(memoryview(buf)[:pos]))
            raw_total += pos
            continue
        rows = carry_rows + m
        last = r1 == n
        start = k = 0
        while k < rows:
            j = int(np.searchsorted(ends[k:rows], start + block_bytes, side="right")) + k
            if j == k:
                j = k + 1  # one record longer than the block: a member of its own
            elif j == rows and not last:
                break  # partial block: carried into the next chunk
            end = int(ends[j - 1])
            enc.members.append(isal_zlib.compress(memoryview(buf)[start:end], level, wbits=_GZIP_WBITS))
            enc.raw_sizes.append(end - start)
            enc.rows.append(j - k)
            start, k = end, j
        carry_bytes, carry_rows = pos - start, rows - k
        buf[:carry_bytes] = buf[start:pos]
        ends[:carry_rows] = ends[k:rows] - start
    if comp is not None:
        pieces.append(comp.flush())
        enc.members.append(b"".join(pieces))
        enc.raw_sizes.append(raw_total)
        enc.rows.append(n)
    return enc


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


