"""The driver's side of a run: appends shard results in shard order to the artifacts in the
staging directory, then publishes the run (``run.json`` last, then an atomic rename).

Write lifecycle: ``<output>/<experiment>/.<run_id>.partial/`` (staging; never looks complete) →
artifacts appended shard by shard, each shard recorded in ``journal.jsonl`` → ``run.json`` with
``extra.status = "complete"`` → rename to ``<output>/<experiment>/<run_id>/``.
"""
from __future__ import annotations

import collections
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from plume_capture.spec import EPISODE_SCHEMA, EPISODES_BASENAME, SCHEMA_VERSION, STEP_SCHEMA, STEPS_BASENAME

JOURNAL = "journal.jsonl"
MANIFEST = "capture.json"
# The journal gets a line per shard (flushed: a run whose process dies loses nothing journaled);
# data and journal are fsynced at most this often, so a power loss costs at most this much work.
# Per shard, three fsyncs stalled the driver on every ~0.1 s shard (and on network filesystems).
DURABLE_EVERY_S = 1.0


def staging_path(run_dir: Path) -> Path:
    return run_dir.with_name("." + run_dir.name + ".partial")


class RunSink:
    def __init__(self, staging: Path, *, rotate_size: int | None, parquet: bool, run_id: str,
                 config_hash: str, copy_parquet_input: bool = True):
        from plume_capture.io.files import JsonlPartWriter
        from plume_capture.io.parquet import ParquetStreamWriter

        self.staging = staging
        self.steps = JsonlPartWriter(staging, STEPS_BASENAME, rotate_size)
        self.episodes = JsonlPartWriter(staging, EPISODES_BASENAME, rotate_size)
        self.parquet = None
        if parquet:
            meta = {"schema_version": SCHEMA_VERSION, "run_id": run_id, "config_hash": config_hash}
            kw = {"copy_pending": copy_parquet_input}
            self.parquet = (ParquetStreamWriter(staging / "steps.parquet", STEP_SCHEMA, meta, **kw),
                            ParquetStreamWriter(staging / "episodes.parquet", EPISODE_SCHEMA, meta, **kw))
        # Parquet encoding runs on a background thread (pyarrow releases the GIL), overlapping the
        # next shard's work; at most two shards wait for it.
        self._pq_pool = ThreadPoolExecutor(1, thread_name_prefix="parquet") if parquet else None
        self._pq_pending: collections.deque = collections.deque()
        self.journal = open(staging / JOURNAL, "a", encoding="utf-8")
        self.next_shard = 0
        self.steps_written = 0
        self.episodes_written = 0
        self.resumed = False
        self._durable_at = float("-inf")

    def restore(self, checkpoint: dict | None) -> None:
        """Continue an interrupted run from ``checkpoint`` (a journal entry; None: nothing was
        kept): the JSON Lines truncated back to it, the Parquet files rebuilt from them (a Parquet
        file cannot be appended to after a crash). Raises ValueError if the files are damaged."""
        cp = checkpoint or {}
        self.steps.restore(cp.get("steps_files", []))
        self.episodes.restore(cp.get("episodes_files", []))
        if checkpoint:
            self.next_shard = checkpoint["shard"] + 1
            self.steps_written = checkpoint["steps"]
            self.episodes_written = checkpoint["episodes"]
        self.resumed = True
        if self.parquet is not None:
            self._rebuild_parquet()

    def _rebuild_parquet(self) -> None:
        import pyarrow as pa

        from plume_capture.io.jsonl_decode import Layout, iter_jsonl_batches

        for writer, jsonl, schema in ((self.parquet[0], self.steps, STEP_SCHEMA),
                                      (self.parquet[1], self.episodes, EPISODE_SCHEMA)):
            layout = Layout(schema)
            for name, _, _ in jsonl.checkpoint():
                for batch, problems in iter_jsonl_batches(self.staging / name, layout):
                    if problems:
                        line, code, msg = problems[0]
                        raise ValueError(f"{name}:{line}: {code}: {msg}")
                    writer.write(pa.Table.from_batches([batch.to_arrow()], schema=schema))

    def append(self, result, on_written=None) -> None:
        """Write the next shard's records; ``on_written()`` is called once nothing refers to
        them any more (after the Parquet thread, if any, has written them)."""
        assert result.shard.index == self.next_shard, "shards must arrive in order"
        self.steps.write(result.steps_jsonl)
        self.episodes.write(result.episodes_jsonl)
        if self.parquet is not None:
            fut = self._pq_pool.submit(self._write_parquet, result.steps_table, result.episodes_table)
            if on_written is not None:
                fut.add_done_callback(lambda _: on_written())
            self._pq_pending.append(fut)
            while len(self._pq_pending) > 2:
                self._pq_pending.popleft().result()
        elif on_written is not None:
            on_written()
        self.next_shard += 1
        self.steps_written += result.steps
        self.episodes_written += result.shard.episodes
        self._checkpoint(result.shard.index)

    def _write_parquet(self, steps, episodes) -> None:
        self.parquet[0].write(steps)
        self.parquet[1].write(episodes)

    def _drain_parquet(self) -> None:
        while self._pq_pending:
            self._pq_pending.popleft().result()

    def _checkpoint(self, shard: int) -> None:
        """Journal that shards ``0..shard`` are written, with each JSON Lines file's size and rows,
        so an interrupted run can be truncated back to this point and resumed. Every
        ``DURABLE_EVERY_S`` the data files, then the journal, are fsynced (in that order: a durable
        journal line never refers to data that is not)."""
        durable = time.monotonic() - self._durable_at >= DURABLE_EVERY_S
        entry = {"shard": shard, "steps": self.steps_written, "episodes": self.episodes_written,
                 "steps_files": self.steps.checkpoint(sync=durable),
                 "episodes_files": self.episodes.checkpoint(sync=durable)}
        self.journal.write(json.dumps(entry) + "\n")
        self.journal.flush()
        if durable:
            os.fsync(self.journal.fileno())
            self._durable_at = time.monotonic()

    def close(self) -> dict:
        """Close every artifact; returns ``{file name: {bytes, rows, sha256}}``."""
        infos = self.steps.close() + self.episodes.close()
        if self.parquet is not None:
            self._drain_parquet()
            self._pq_pool.shutdown()
            infos += [w.close() for w in self.parquet]
        self.journal.close()
        return {i.name: {"bytes": i.bytes, "rows": i.rows, "sha256": i.sha256} for i in infos}

    def abort(self) -> None:
        """Leave the staging directory as it is (incomplete), releasing file handles."""
        if self._pq_pool is not None:
            self._pq_pool.shutdown(wait=True, cancel_futures=True)
            for w in self.parquet:
                try:
                    w.abort()
                except Exception:
                    pass
        for w in (self.steps, self.episodes):
            try:
                w.abort() if hasattr(w, "abort") else None
            except Exception:
                pass
        try:
            self.journal.close()
        except Exception:
            pass


def publish(staging: Path, run_dir: Path) -> None:
    """Atomically move the finished staging directory to its final name (never onto an existing one)."""
    if run_dir.exists():
        raise FileExistsError(f"run directory {run_dir} already exists")
    os.rename(staging, run_dir)


def drop_bookkeeping(staging: Path) -> None:
    from plume_capture.capture.lock import LOCK

    for name in (JOURNAL, MANIFEST, LOCK):
        try:
            (staging / name).unlink()
        except FileNotFoundError:
            pass
