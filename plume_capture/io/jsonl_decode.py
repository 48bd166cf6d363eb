"""Decoding the run format (docs/spec.md §9.1): record layouts, streaming gzip, JSON Lines batches.

JSON Lines are parsed by the Numba scanner of :mod:`plume_capture.kernels.jsonl_scan`, specialised
for the record layouts of ``spec``. Whatever the scanner does not accept (unusual but valid JSON
such as string escapes, or invalid lines) goes to a per-line ``json.loads`` path that also names the
problem; the scanner never accepts a line that path would reject.
"""
from __future__ import annotations

import hashlib
import json
import math
import queue
import re
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from isal import isal_zlib

from plume_capture import spec as records
from plume_capture.io.arrow import from_numpy, strings, to_numpy
from plume_capture.io.rundir import open_regular
from plume_capture.kernels.jsonl_scan import (T_BOOL, T_EPID, T_FLIST, T_FLOAT, T_INT, T_POS, T_STR,
                                              gather, last_newline, scan, count_lines)

__all__ = ["EPISODE_LAYOUT", "STEP_LAYOUT", "Batch", "BufferPool", "GzipLines", "Layout", "StrictJSONError",
           "count_lines", "episode_index", "iter_jsonl_batches", "parse_chunk", "parse_fast", "parse_slow",
           "sha256_file", "strict_loads"]

# ------------------------------------------------------------------------------------------------
# Record layouts

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


def _strings_from_spans(buf: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> pa.Array:
    data, off = gather(buf, starts, starts + lens)
    return pa.StringArray.from_buffers(len(starts), pa.py_buffer(off), pa.py_buffer(data))



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
            return strings(self._strs[name])
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
        status, n, nv, ns = scan(buf, len(buf), L.key_bytes, L.key_len, L.key_type, L.key_slot,
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
        data, off = gather(buf, slow[:, 0], slow[:, 1])
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
    ``(code, message)`` for GZIP_TRUNCATED / GZIP_CORRUPT / GZIP_TOO_LARGE / RECORD_JSON (after
    which only the complete lines decoded before the damage were yielded). ``max_bytes`` bounds the
    decompressed text (GZIP_TOO_LARGE past it: a gzip bomb is not read to its end). Only a regular
    file is opened (``NotRegularFile``, an OSError, otherwise).
    """

    MAX_LINE = 64 << 20

    def __init__(self, path, chunk_bytes: int = 4 << 20, *, pool: BufferPool | None = None,
                 auto_release: bool = True, read_bytes: int = 1 << 20, max_bytes: int | None = None):
        self.path = path
        self.max_bytes = max_bytes
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
        left = self.max_bytes if self.max_bytes is not None else -1  # text still allowed
        try:
            with open_regular(self.path) as f:
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
                        if left >= 0:
                            left -= n
                            if left < 0:
                                self.problem = ("GZIP_TOO_LARGE", "decompresses to more than "
                                                f"{self.max_bytes} bytes, more than the records "
                                                "run.json lists can hold (a gzip bomb?)")
                                break
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
                            cut = last_newline(slot, no_nl, fill) + 1
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
            cut = last_newline(slot, 0, fill) + 1
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


def sha256_file(path, block: int = 4 << 20) -> str:
    """sha256 hex of a regular file (``NotRegularFile`` otherwise)."""
    h = hashlib.sha256()
    with open_regular(path) as f:
        while True:
            b = f.read(block)
            if not b:
                return h.hexdigest()
            h.update(b)


def parse_chunk(layout: Layout, chunk: bytes, first_line: int, expected, expected_values):
    """-> (batch, problems): the scanner, or the per-line path when it declines."""
    batch = parse_fast(layout, chunk, expected)
    if batch is None:
        return parse_slow(layout, chunk, first_line, expected_values)
    batch.first = first_line
    return batch, []


def iter_jsonl_batches(path, layout: Layout, expected_values: dict | None = None,
                       chunk_bytes: int = 4 << 20, max_bytes: int | None = None):
    """Yield ``(batch, problems)`` for one JSON Lines file (problems: [(line, code, message)]);
    a damaged gzip stream (or more text than ``max_bytes``) ends with ``(None, [(line, code,
    message)])``. A batch is valid until the next one is requested."""
    reader = GzipLines(path, chunk_bytes, max_bytes=max_bytes)
    expected = layout.expected(expected_values)
    line = 1
    for chunk in reader:
        batch, problems = parse_chunk(layout, chunk, line, expected, expected_values)
        line += batch.nlines
        yield batch, problems
    if reader.problem is not None:
        yield None, [(line, *reader.problem)]


