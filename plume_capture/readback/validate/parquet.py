"""Parquet files against the JSON Lines, value for value (floats bit for bit), batch by batch."""
from __future__ import annotations

import os
import threading
import queue

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from plume_capture import spec as records
from plume_capture.kernels.checks import epid_parse
from plume_capture.io.arrow import from_numpy, to_numpy
from plume_capture.io.jsonl_decode import Layout
from plume_capture.kernels.jsonl_scan import T_EPID, T_FLIST, T_POS, T_STR
from plume_capture.readback.validate.report import Report, concat_columns, eid, fmt_value
from plume_capture.readback.validate.run_json import Context, short


def _epid_index_arrow(strs: pa.Array) -> np.ndarray:
    """Vectorised ``episode_index`` for an Arrow string array."""
    strs = strs.cast(pa.string())
    bufs = strs.buffers()
    off = np.frombuffer(bufs[1], np.int32)[strs.offset:strs.offset + len(strs) + 1]
    data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None else np.zeros(1, np.uint8)
    out = np.empty(len(strs), np.int64)
    epid_parse(off, data, out)
    return out


def _dict_parts(arr: pa.Array):
    if not pa.types.is_dictionary(arr.type):
        arr = pc.dictionary_encode(arr)
    return arr.dictionary, to_numpy(arr.indices)


def _parquet_cols(rb: pa.RecordBatch, layout: Layout, expected: dict) -> dict:
    """The columns of a Parquet batch in the form of ``load.Batch.cols``."""
    cols = {}
    for name in layout.names:
        arr = rb.column(name)
        if arr.null_count:
            raise ValueError(f"column {name} has {arr.null_count} nulls")
        kind = layout.kinds[name]
        if kind == T_EPID:
            cols[name] = _epid_index_arrow(arr)
        elif kind == T_STR:
            # Read as a dictionary (one value in a good run). A batch carries its row group's
            # dictionary so far, so only the entries the batch uses are looked at.
            d, ix = _dict_parts(arr)
            used, inverse = np.unique(ix, return_inverse=True)
            d = d.take(from_numpy(used.astype(np.int64), pa.int64()))
            cols[name] = np.array([v == expected.get(name) for v in d.to_pylist()],
                                  bool)[inverse]
        elif kind == T_POS:
            xs, ys = arr.flatten()
            if xs.null_count or ys.null_count:
                raise ValueError(f"column {name} has nulls")
            cols[name + ".x"] = to_numpy(xs)
            cols[name + ".y"] = to_numpy(ys)
        elif kind == T_FLIST:
            off = to_numpy(arr.offsets)
            vals = arr.flatten()
            if vals.null_count:
                raise ValueError(f"column {name} has null elements")
            cols[name + ".offsets"] = off - off[0]
            cols[name + ".values"] = to_numpy(vals)
        else:
            cols[name] = to_numpy(arr)
    return cols


def _slice_cols(cols: dict, start: int, n: int, lf: str | None) -> dict:
    out = {}
    for k, v in cols.items():
        if lf and k == lf + ".offsets":
            out[k] = v[start:start + n + 1] - v[start]
        elif lf and k == lf + ".values":
            off = cols[lf + ".offsets"]
            out[k] = v[off[start]:off[start + n]]
        else:
            out[k] = v[start:start + n]
    return out


def _cat_cols(parts: list[dict], lf: str | None) -> dict:
    if len(parts) == 1:
        return parts[0]
    out = concat_columns(parts)
    if lf:
        lens = np.concatenate([np.diff(p[lf + ".offsets"]) for p in parts])
        out[lf + ".offsets"] = np.concatenate([[0], np.cumsum(lens)])
    return out


def _slice_rows(cols: dict, rows: np.ndarray, lf: str | None) -> dict:
    out = {}
    for k, v in cols.items():
        if lf and k == lf + ".offsets":
            out[k] = np.concatenate([[0], np.cumsum(np.diff(v)[rows])])
        elif lf and k == lf + ".values":
            off = cols[lf + ".offsets"]
            out[k] = np.concatenate([v[off[r]:off[r + 1]] for r in rows] or [v[:0]])
        else:
            out[k] = v[rows]
    return out


def _schema_ok(pf, layout: Layout, rep: Report, name: str) -> bool:
    """The file's columns are the record schema's (strings may be dictionary-encoded); else reported."""
    got, want = pf.schema_arrow.remove_metadata(), layout.schema
    if got.names != want.names or any(not g.type.equals(w.type) and not (
            pa.types.is_dictionary(g.type) and g.type.value_type == w.type) for g, w in zip(got, want)):
        rep.error("PARQUET_SCHEMA", name, f"schema differs from the record schema: {short(str(got), 200)}")
        return False
    return True


class ParquetSide:
    """Reads a Parquet file batch by batch in a background thread and compares it, row for row,
    with the JSON Lines records of the same base (all parts in order)."""

    BATCH = 1 << 14

    def __init__(self, run_dir: str, names: list[str], layout: Layout, ctx: Context, rep: Report):
        # One file, or the parts of a Parquet directory (one per shard) read as one sequence.
        self.name = names[0] if len(names) == 1 else names[0].split("/")[0]
        self.layout, self.ctx, self.rep = layout, ctx, rep
        self.active = False
        self.diverged = False  # after the first difference rows are only counted
        self.rows = None
        self.pos = 0  # parquet rows consumed
        self.parts: list[list] = []  # [cols, rows used, rows]
        self._q: queue.Queue | None = None
        self._stop = threading.Event()
        self.files = []
        for name in names:
            try:
                # No pre-buffering: it holds whole row groups (the engine writes 256Ki rows each).
                pf = pq.ParquetFile(os.path.join(run_dir, name), read_dictionary=layout.str_fields,
                                    pre_buffer=False, buffer_size=1 << 20)
            except Exception as e:  # noqa: BLE001 - any reader failure means a damaged file
                rep.error("PARQUET_CORRUPT", name, f"cannot open: {e}")
                return
            if not _schema_ok(pf, layout, rep, name):
                return
            self._check_metadata(pf, name)
            self.files.append(pf)
        self.rows = sum(pf.metadata.num_rows for pf in self.files)
        self.active = True
        self._q = queue.Queue(maxsize=2)
        self._thread = threading.Thread(target=self._produce, daemon=True)
        self._thread.start()

    def _check_metadata(self, pf, name):
        if not self.ctx.meta_ok:
            return
        kv = {k.decode(errors="replace"): v.decode(errors="replace")
              for k, v in (pf.metadata.metadata or {}).items()}
        want = {"schema_version": records.SCHEMA_VERSION, "run_id": self.ctx.run_id,
                "config_hash": self.ctx.config_hash}
        missing = [k for k, v in want.items() if k not in kv and v is not None]
        if missing and not self.ctx.ours:
            self.rep.warn("UNCHECKED", name, "no key-value metadata " + ", ".join(missing)
                          + " (reference Parquet)")
            return
        if missing:
            self.rep.error("PARQUET_METADATA", name,
                           "key-value metadata lacks " + ", ".join(missing))
        for k, v in want.items():
            if k in kv and kv[k] != (v if v is not None else kv[k]):
                self.rep.error("PARQUET_METADATA", name,
                               f"metadata {k} is {kv[k]!r}, run.json has {v!r}")

    def _produce(self):
        try:
            # One thread is enough here (and Arrow's pool threads cost memory).
            for rb in (rb for pf in self.files
                       for rb in pf.iter_batches(batch_size=self.BATCH, use_threads=False)):
                cols = _parquet_cols(rb, self.layout, self.ctx.expected_values())
                while not self._stop.is_set():
                    try:
                        self._q.put(("ok", cols, rb.num_rows), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._q.put(("end", None, 0))
        except Exception as e:  # noqa: BLE001
            self._q.put(("error", str(e), 0))

    def _next_part(self) -> bool:
        """Append the next Parquet batch to ``self.parts``; False at the end."""
        kind, cols, k = self._q.get()
        if kind == "end":
            self._q.put((kind, cols, k))
            return False
        if kind == "error":
            self.rep.error("PARQUET_CORRUPT", self.name, f"cannot read beyond row {self.pos}: "
                           f"{cols}")
            self.close()
            return False
        self.parts.append([cols, 0, k])
        return True

    def take_rows(self, n: int):
        """Yield ``(cols, start, count, row)`` pieces of the next ``n`` Parquet rows (views;
        ``row`` is the file row of the piece's first row)."""
        while n > 0:
            if not self.parts and not self._next_part():
                return
            part = self.parts[0]
            cols, off, k = part
            m = min(n, k - off)
            part[1] += m
            self.pos += m
            n -= m
            if part[1] == k:
                self.parts.pop(0)
            yield cols, off, m, self.pos - m

    def compare(self, batch, fname: str):
        """Compare the next Parquet rows with the lines of one JSON Lines chunk (the batch holds
        the well-formed ones; the rows of the others are skipped)."""
        if not self.active:
            return
        nlines, got = batch.nlines, 0
        if batch.rows is None and not self.diverged:
            for cols, off, m, row in self.take_rows(nlines):
                self._diff(batch, got, cols, off, m, fname, row)
                got += m
        else:
            pieces = list(self.take_rows(nlines))
            got = sum(m for _, _, m, _ in pieces)
            if not self.diverged and batch.n and got == nlines:
                lf = self.layout.list_field
                p = _cat_cols([_slice_cols(c, o, m, lf) for c, o, m, _ in pieces], lf)
                self._diff(batch, 0, _slice_rows(p, batch.rows, lf), 0, batch.n, fname,
                           pieces[0][3], batch.rows)
        if got < nlines and self.active:
            self._report(fname, batch.first + got, f"{self.name} has only {self.pos} rows",
                         nlines - got, "short")
            self.close()

    def _diff(self, batch, ja: int, p: dict, pa_: int, k: int, fname: str, row0: int,
              rows=None):
        """Compare JSON Lines rows ``ja:ja+k`` of ``batch`` with Parquet rows ``pa_:pa_+k``
        (file rows ``row0 + (rows or range(k))``)."""
        if self.diverged or k == 0:
            return
        c = batch.cols
        lf = self.layout.list_field
        first = None
        for key, a in c.items():
            if lf and key == lf + ".values":
                continue
            b = p[key]
            if lf and key == lf + ".offsets":
                ao, bo = a[ja:ja + k + 1], b[pa_:pa_ + k + 1]
                m = np.diff(ao) != np.diff(bo)
                if not m.any():
                    va = c[lf + ".values"][ao[0]:ao[-1]]
                    vb = p[lf + ".values"][bo[0]:bo[-1]]
                    cs = np.concatenate([[0], np.cumsum(va.view(np.uint64) != vb.view(np.uint64))])
                    rel = ao - ao[0]
                    m = (cs[rel[1:]] - cs[rel[:-1]]) > 0
                name = lf
            else:
                a, b = a[ja:ja + k], b[pa_:pa_ + k]
                m = (a.view(np.uint64) != b.view(np.uint64)) if a.dtype == np.float64 else a != b
                name = key
            if m.any():
                i = int(np.argmax(m))
                if first is None or i < first[0]:
                    first = (i, name)
        if first is not None:
            i, name = first
            row = row0 + (i if rows is None else int(rows[i]))
            self._report(fname, int(batch.lines[ja + i]),
                         f"{self.name} row {row + 1}: {name} differs from the JSON Lines "
                         f"({self._value(p, name, pa_ + i)} vs {self._value(c, name, ja + i)}); "
                         "later rows not compared", 1, "values")
            self.diverged = True

    def _value(self, cols, name, i):
        lf = self.layout.list_field
        if name == lf:
            off, vals = cols[lf + ".offsets"], cols[lf + ".values"]
            return fmt_value([float(v) for v in vals[off[i]:off[i + 1]]])
        v = cols[name]
        if name == "episode_id":
            return eid(v[i]) if v[i] >= 0 else "<malformed>"
        if name in self.layout.str_fields:
            return "expected value" if v[i] else "other value"
        return fmt_value(v[i].item())

    def _report(self, fname, line, msg, count, check):
        self.rep.rows("PARQUET_MISMATCH", fname, line, msg, count, check + self.name)

    def finish(self, total_lines: int):
        if not self.active:
            self.close()
            return
        if self.rows is not None and self.rows != total_lines:
            self.rep.error("PARQUET_MISMATCH", self.name,
                           f"{self.rows} rows, the JSON Lines have {total_lines}")
        self.close()

    def disable(self, why: str):
        if self.active:
            self.rep.warn("PARQUET_SKIPPED", self.name, why)
        self.active = False
        self.close()

    def close(self):
        self.active = False
        self._stop.set()
        if self._q is not None:
            try:
                while True:
                    self._q.get_nowait()
            except queue.Empty:
                pass




class _ParquetBatch:
    """A Parquet record batch in the form of ``jsonl_decode.Batch`` (what the record checks read);
    rows are numbered from 1 across the base's Parquet files."""

    def __init__(self, layout: Layout, rb: pa.RecordBatch, cols: dict, first: int):
        self.layout, self._rb, self.cols, self.first = layout, rb, cols, first
        self.n = self.nlines = rb.num_rows
        self.rows = None

    @property
    def lines(self) -> np.ndarray:
        return np.arange(self.n, dtype=np.int64) + self.first

    def string_at(self, name: str, row: int) -> str:
        return self._rb.column(name)[row].as_py()


class ParquetStream:
    """The records of one base read from its Parquet files (the ``Stream`` interface), for
    ``source="parquet"``: the JSON Lines are then checked by size and sha256 only."""

    BATCH = 1 << 16

    def __init__(self, run_dir: str, names: list[str], layout: Layout, ctx: Context, rep: Report):
        self.run_dir, self.files, self.layout, self.ctx, self.rep = run_dir, names, layout, ctx, rep
        self.file_info: list[tuple] = []
        self.lines = 0
        self.damaged = False

    def batches(self):
        for name in self.files:
            try:
                pf = pq.ParquetFile(os.path.join(self.run_dir, name), read_dictionary=self.layout.str_fields)
            except Exception as e:  # noqa: BLE001 - any reader failure means a damaged file
                self.rep.error("PARQUET_CORRUPT", name, f"cannot open: {e}")
                self.damaged = True
                return
            if not _schema_ok(pf, self.layout, self.rep, name):
                self.damaged = True
                return
            rows = 0
            try:
                for rb in pf.iter_batches(batch_size=self.BATCH):
                    cols = _parquet_cols(rb, self.layout, self.ctx.expected_values())
                    yield name, _ParquetBatch(self.layout, rb, cols, rows + 1)
                    rows += rb.num_rows
            except Exception as e:  # noqa: BLE001
                self.rep.error("PARQUET_CORRUPT", name, f"cannot read beyond row {rows}: {e}")
                self.damaged = True
            self.file_info.append((rows, None, None))
            self.lines += rows
            if self.damaged:
                return
