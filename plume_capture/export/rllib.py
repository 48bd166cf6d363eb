"""RLlib offline data: Parquet shards, one row per transition with the column names RLlib's
offline reader expects by default (obs, new_obs, actions, rewards, terminateds, truncateds,
eps_id) plus ``t`` (0-based step index)."""
from __future__ import annotations

import contextlib
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from plume_capture.export.reader import Chunk, iter_chunks, open_run, validated
from plume_capture.export.staging import check_free, provenance, staged_dir

SHARD_ROWS = 4 << 20


def _obs_array(obs: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(obs.reshape(-1)), obs.shape[1])


def transitions(c: Chunk) -> pa.Table:
    return pa.table({
        "obs": _obs_array(c.prev_obs()), "new_obs": _obs_array(c.obs),
        "actions": c.action, "rewards": c.reward,
        "terminateds": c.terminated, "truncateds": c.truncated,
        "eps_id": c.episode, "t": c.step - 1,
    })


class ShardWriter:
    """Parquet shards ``part-NNNNN.parquet`` of at most ``shard_rows`` rows under ``dirpath``."""

    def __init__(self, dirpath: str, shard_rows: int, metadata: dict):
        self.dir, self.shard_rows, self.meta = dirpath, shard_rows, metadata
        self.writer, self.rows, self.shards = None, 0, 0
        os.makedirs(dirpath, exist_ok=True)

    def write(self, table: pa.Table):
        while table.num_rows:
            if self.writer is None:
                path = os.path.join(self.dir, f"part-{self.shards:05d}.parquet")
                self.writer = pq.ParquetWriter(
                    path, table.schema.with_metadata(self.meta), compression="snappy")
                self.shards, self.rows = self.shards + 1, 0
            take = min(table.num_rows, self.shard_rows - self.rows)
            self.writer.write_table(table.slice(0, take), row_group_size=1 << 20)
            self.rows += take
            table = table.slice(take)
            if self.rows >= self.shard_rows:
                self.close()

    def close(self):
        writer, self.writer = self.writer, None
        if writer is not None:
            try:
                writer.close()
            except BaseException:
                writer.is_open = False  # else its finalizer retries the failed write and prints a traceback
                raise

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc) -> None:
        """On success close the shard; after a failure drop it quietly (the staging directory goes)."""
        if exc_type is None:
            self.close()
            return
        with contextlib.suppress(Exception):  # the failure that brought us here is the one to report
            self.close()


def export_rllib(run_dir, out=None, *, shard_rows: int = SHARD_ROWS, full_validation: bool = False) -> str:
    """Export ``run_dir`` to ``out`` (default ``<run_dir>.rllib``); returns ``out``."""
    out = check_free(out if out is not None else os.fspath(run_dir).rstrip(os.sep) + ".rllib", run_dir)
    src = open_run(run_dir, full_validation=full_validation)
    meta = {b"plume_capture.provenance": json.dumps(provenance(src)).encode()}
    with staged_dir(out) as tmp, validated(src), ShardWriter(tmp, shard_rows, meta) as w:
        for c in iter_chunks(src):
            w.write(transitions(c))
    return out
