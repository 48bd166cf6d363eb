"""Streaming Parquet artifacts (docs/spec.md §9.1): row groups of a reader-friendly size, zstd, sha256 while
writing."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from plume_capture.io.arrow import column
from plume_capture.io.files import FileInfo, HashingFile

def dictionary_columns(schema: pa.Schema) -> list[str]:
    """Parquet paths of the non-float leaf columns.

    Dictionary encoding pays for ids, positions, seeds and strings; float columns (timestamps,
    distances) rarely repeat enough and cost ~20% of the write time when it is tried.
    """
    paths: list[str] = []

    def walk(path: str, t: pa.DataType) -> None:
        if pa.types.is_struct(t):
            for f in t:
                walk(f"{path}.{f.name}", f.type)
        elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            walk(f"{path}.list.element", t.value_type)
        elif not pa.types.is_floating(t):
            paths.append(path)

    for field in schema:
        walk(field.name, field.type)
    return paths


def _own(table: pa.Table) -> pa.Table:
    """A copy of ``table`` in this process's memory. Tables from Ray are zero-copy views of an
    object-store object; buffering such a view would keep the whole shard result pinned there."""
    return table.take(column(np.arange(table.num_rows, dtype=np.int64))) if table.num_rows else table


class ParquetStreamWriter:
    """One standard Parquet file (zstd) written as a stream of row groups.

    Tables are buffered until `row_group_rows` rows are pending, so shards of any size give
    row groups of a reader-friendly size; memory holds at most one row group plus one table.
    Dictionary encoding is used for the non-float columns only.
    The file's key-value metadata gets `metadata` (schema_version, run_id, config_hash) next to
    pyarrow's own ARROW:schema. The sha256 is computed while writing.
    """

    def __init__(self, path: Path, schema: pa.Schema, metadata: dict[str, str], *,
                 row_group_rows: int = 1 << 18, compression_level: int | None = None, copy_pending: bool = True):
        self.path = Path(path)
        # Rows kept for the next row group are copied unless the caller's tables are its own
        # (in-process): a view of a Ray object-store table would pin the whole shard result there.
        self._own = _own if copy_pending else (lambda t: t)
        self.schema = schema.with_metadata({**(schema.metadata or {}), **{
            str(k).encode(): str(v).encode() for k, v in metadata.items()}})
        self.row_group_rows = row_group_rows
        self._sink = HashingFile(self.path)
        try:
            self._writer = pq.ParquetWriter(self._sink, self.schema, compression="zstd",
                                            compression_level=compression_level,
                                            use_dictionary=dictionary_columns(schema))
        except BaseException:
            self._sink.close(sync=False)
            raise
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.rows = 0
        self._info: FileInfo | None = None

    def write(self, table: pa.Table) -> None:
        """Append the rows of `table` (same columns and types as the schema)."""
        if self._info is not None:
            raise ValueError("writer is closed")
        if not table.schema.equals(self.schema, check_metadata=False):
            raise ValueError(f"table schema does not match the Parquet schema:\n{table.schema}")
        if table.num_rows == 0:
            return
        self.rows += table.num_rows
        if self._pending_rows + table.num_rows < self.row_group_rows:
            table = self._own(table)  # kept across calls
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= self.row_group_rows:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self._pending_rows:
            return
        t = pa.concat_tables(self._pending)
        full = t.num_rows if final else t.num_rows - t.num_rows % self.row_group_rows
        self._writer.write_table(t.slice(0, full), row_group_size=self.row_group_rows)
        rest = self._own(t.slice(full))
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows

    def close(self) -> FileInfo:
        """Write the remaining rows and the footer; returns the file's info."""
        if self._info is None:
            self._flush(final=True)
            self._writer.close()
            self._sink.close()
            self._info = FileInfo(self.path.name, self._sink.size, self.rows, self._sink.hexdigest())
        return self._info

    def abort(self) -> None:
        """Close the file without a footer (the caller discards it)."""
        self._writer.is_open = False  # or pyarrow's finalizer writes a footer into the closed file
        self._sink.close(sync=False)
        self._pending = []


def read_parquet(run_dir, names: list, **kwargs) -> pa.Table:
    """The Parquet file, or the parts of a Parquet directory in order (``RunFiles.parquet[base]``),
    as one table; ``kwargs`` go to ``pyarrow.parquet.read_table`` (columns, filters)."""
    import os

    tables = [pq.read_table(os.path.join(run_dir, n), **kwargs) for n in names]
    if len(tables) == 1:
        return tables[0]
    meta = tables[0].schema.metadata
    return pa.concat_tables([t.replace_schema_metadata(None) for t in tables]).replace_schema_metadata(meta)
