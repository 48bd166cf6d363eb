"""One shard's files in a multi-shard run (docs/format.md, "Layout of a multi-shard run"), made where the records are made.

A worker encodes its shard's JSON Lines parts and Parquet files (:func:`encode_shard`) and either
writes them itself into the run's staging directory under temporary names (:func:`write_pieces`,
when it sees that directory) or hands the bytes back; the driver commits them in shard order under
their final names (``capture.sink.ShardedSink``). What a shard's files hold depends only on its
records and ``rotate_size``, never on who wrote them.

JSON Lines parts (docs/spec.md §9.1): a shard starts a new part; within a shard a new part starts before a
member when the part is non-empty and would exceed ``rotate_size`` (so a part is larger than
``rotate_size`` only when it holds a single member).
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from plume_capture.io.files import write_new
from plume_capture.io.parquet import dictionary_columns

PARQUET_ROW_GROUP_ROWS = 1 << 18
TMP_DIR = ".shards"  # in the staging directory: files written but not committed yet
PROBE = ".probe"  # in the staging directory: what a worker reads to know it sees the directory


@dataclass
class Piece:
    """One file of a shard: ``kind`` is ``steps``/``episodes`` (a JSON Lines part) or
    ``steps.parquet``/``episodes.parquet``. Either written by the worker (``tmp``: its path in the
    staging directory, with ``bytes`` and ``sha256``) or carried (``data``: buffers to write)."""

    kind: str
    rows: int
    data: list | None = None
    tmp: str | None = None
    bytes: int = 0
    sha256: str = ""

    def __reduce_ex__(self, protocol):
        if protocol >= 5 and self.data is not None:  # buffers out of band through Ray's object store
            import pickle

            return _rebuild_piece, (self.kind, self.rows, [pickle.PickleBuffer(b) for b in self.data])
        return Piece, (self.kind, self.rows, self.data, self.tmp, self.bytes, self.sha256)


def _rebuild_piece(kind, rows, data) -> Piece:
    return Piece(kind, rows, [b if isinstance(b, bytes) else memoryview(b).cast("B") for b in data])


def split_parts(sizes: list[int], rotate_size: int | None) -> list[list[int]]:
    """Member indices of each part (docs/spec.md §9.1 rotation, starting with an empty part)."""
    parts: list[list[int]] = []
    fill = 0
    for i, n in enumerate(sizes):
        if not parts or (rotate_size is not None and fill and fill + n > rotate_size):
            parts.append([])
            fill = 0
        parts[-1].append(i)
        fill += n
    return parts


_GZIP_OVERHEAD = 64  # a gzip member's bytes beyond its compressed text, at most (header, trailer, block headers)


def max_parts(rows: int, line_bytes: int, rotate_size: int | None) -> int:
    """An upper bound on the JSON Lines parts of a shard of ``rows`` records of at most
    ``line_bytes`` bytes each, cut at ``rotate_size`` (whatever the data: no credit for compression)."""
    from plume_capture.io.jsonl_encode import BLOCK_BYTES

    if rows == 0:
        return 0
    text = rows * line_bytes
    if rotate_size is None:
        return 1
    # a gzip member holds more than BLOCK_BYTES - line_bytes of text, but the last of a shard
    members = rows if line_bytes >= BLOCK_BYTES else text // (BLOCK_BYTES - line_bytes) + 1
    size = text + members * _GZIP_OVERHEAD  # the shard's compressed bytes, at most
    biggest = max(BLOCK_BYTES, line_bytes) + _GZIP_OVERHEAD
    # Two parts in a row hold more than rotate_size (a part is only cut when the next member
    # would not fit), so n parts hold more than (n // 2) * rotate_size; and every part but the
    # last holds more than rotate_size - biggest.
    bound = min(members, 2 * -(-size // rotate_size) - 1)
    if rotate_size > biggest:
        bound = min(bound, -(-size // (rotate_size - biggest)))
    return bound


def encode_parquet(table: pa.Table, metadata: dict) -> pa.Buffer:
    """``table`` as one Parquet file (zstd, dictionary-encoded non-float columns, row groups of
    ``PARQUET_ROW_GROUP_ROWS``), its key-value metadata holding ``metadata``."""
    schema = table.schema.with_metadata({**(table.schema.metadata or {}), **{
        str(k).encode(): str(v).encode() for k, v in metadata.items()}})
    out = pa.BufferOutputStream()
    with pq.ParquetWriter(out, schema, compression="zstd",
                          use_dictionary=dictionary_columns(table.schema)) as w:
        w.write_table(table.replace_schema_metadata(schema.metadata), row_group_size=PARQUET_ROW_GROUP_ROWS)
    return out.getvalue()


def encode_shard(steps_jsonl, episodes_jsonl, rotate_size: int | None, steps_table=None,
                 episodes_table=None, parquet_meta: dict | None = None) -> list[Piece]:
    """A shard's pieces in commit order: steps parts, episodes parts, then the Parquet files."""
    pieces = []
    for kind, enc in (("steps", steps_jsonl), ("episodes", episodes_jsonl)):
        for part in split_parts([len(m) for m in enc.members], rotate_size):
            pieces.append(Piece(kind, sum(enc.rows[i] for i in part), [enc.members[i] for i in part]))
    if parquet_meta is not None:
        for kind, table in (("steps.parquet", steps_table), ("episodes.parquet", episodes_table)):
            pieces.append(Piece(kind, table.num_rows, [encode_parquet(table, parquet_meta)]))
    return pieces


def sees(staging: str, token: str) -> bool:
    """Whether this process sees the staging directory the driver made (its probe file)."""
    try:
        with open(os.path.join(staging, PROBE), encoding="ascii") as f:
            return f.read() == token
    except OSError:
        return False


def write_pieces(staging: str, shard: int, pieces: list[Piece]) -> list[Piece]:
    """Write each piece to a new temporary file under ``staging/.shards`` (fsynced), named for the
    shard and this attempt; -> the pieces without their data."""
    tag = f"{shard:05d}-{uuid.uuid4().hex[:12]}"
    out = []
    for k, piece in enumerate(pieces):
        rel = f"{TMP_DIR}/{tag}.{k}.{piece.kind}"
        size, sha = write_new(os.path.join(staging, rel), piece.data)
        out.append(Piece(piece.kind, piece.rows, tmp=rel, bytes=size, sha256=sha))
    return out
