"""The driver's side of a run, in the staging directory: ``RunSink`` (a run of one shard: the
driver appends its records to one file per artifact) and ``ShardedSink`` (several shards: the
workers wrote each shard's files, the driver renames them into place); then the run is published
(an atomic rename, then ``run.json``).

Write lifecycle: ``<output>/<experiment>/.<run_id>.partial/`` (staging; never holds ``run.json``) →
shards committed in order, each recorded in ``journal.jsonl`` → rename to
``<output>/<experiment>/<run_id>/`` → ``run.json`` with ``extra.status = "complete"`` (the commit).
"""
from __future__ import annotations

import collections
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from plume_capture.spec import (EPISODE_SCHEMA, EPISODES_BASENAME, MAX_PARTS, SCHEMA_VERSION, STEP_SCHEMA,
                                STEPS_BASENAME)

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
            for name, *_ in jsonl.checkpoint():
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


class ShardedSink:
    """The driver's side of a multi-shard run (layout: docs/format.md, "Layout of a multi-shard run"): it commits each shard's
    files, made by the worker that ran it, under their final names in shard order — a rename where
    the worker wrote them into ``.shards/``, else a write of the bytes it sent back — and journals
    them (``{"shard", "steps", "episodes", "files": [[name, bytes, rows, sha256], ...]}``).

    The driver never touches a record: its work per shard is a few renames and a journal line.
    A file in ``.shards/`` that is never committed (its worker died, or the run stopped) is deleted
    with the directory when the run closes or resumes, so no shard is torn or doubled.
    """

    def __init__(self, staging: Path, *, rotate_size: int | None, parquet: bool, token: str, run_id: str,
                 config_hash: str):
        from plume_capture.io.shardfiles import PROBE, TMP_DIR

        self._run_id, self._config_hash = run_id, config_hash
        self.staging = staging
        self.rotate_size = rotate_size
        self.parquet = parquet
        self.token = token
        self.tmp = staging / TMP_DIR
        self.tmp.mkdir(exist_ok=True)
        (staging / (PROBE + ".tmp")).write_text(token, encoding="ascii")
        os.replace(staging / (PROBE + ".tmp"), staging / PROBE)
        self.files: dict = {}  # name -> {bytes, rows, sha256}, in commit order
        self.parts = {STEPS_BASENAME: 0, EPISODES_BASENAME: 0}
        self.journal = open(staging / JOURNAL, "a", encoding="utf-8")
        self.next_shard = 0
        self.steps_written = 0
        self.episodes_written = 0
        self.resumed = False
        self.by_workers = 0
        self.by_driver = 0
        self._durable_at = float("-inf")
        self._dirs = {str(staging)}

    def _name(self, kind: str, shard: int) -> str:
        from plume_capture.io.rundir import parquet_part_name
        from plume_capture.spec import part_name

        if kind.endswith(".parquet"):
            base = kind[:-len(".parquet")]
            d = self.staging / f"{base}.parquet"
            if str(d) not in self._dirs:
                d.mkdir(exist_ok=True)
                self._dirs.add(str(d))
            return parquet_part_name(base, shard)
        k = self.parts[kind]
        if k >= MAX_PARTS:  # prevented by the check of rotate_size when the run is prepared
            from plume_capture.errors import CaptureError

            raise CaptureError(f"{kind}: more than {MAX_PARTS:,} JSON Lines parts (their names would no longer "
                               "sort in data order); use a larger rotate_size")
        self.parts[kind] = k + 1
        return part_name(kind, k)

    def append(self, result, on_written=None) -> None:
        from plume_capture.io.files import write_new

        assert result.shard.index == self.next_shard, "shards must arrive in order"
        entry_files = []
        for piece in result.pieces:
            name = self._name(piece.kind, result.shard.index)
            if piece.tmp is not None:
                os.rename(self.staging / piece.tmp, self.staging / name)
                size, sha = piece.bytes, piece.sha256
            else:  # the worker did not see the directory: it sent the bytes
                size, sha = write_new(self.staging / name, piece.data)
            self.files[name] = {"bytes": size, "rows": piece.rows, "sha256": sha}
            entry_files.append([name, size, piece.rows, sha])
        if result.written:
            self.by_workers += 1
        else:
            self.by_driver += 1
        if on_written is not None:
            on_written()
        self.next_shard += 1
        self.steps_written += result.steps
        self.episodes_written += result.shard.episodes
        self._journal({"shard": result.shard.index, "steps": self.steps_written,
                       "episodes": self.episodes_written, "files": entry_files})

    def _journal(self, entry: dict) -> None:
        """One line per committed shard; every ``DURABLE_EVERY_S`` the directories (the renames;
        the files themselves were fsynced by whoever wrote them), then the journal, are fsynced."""
        self.journal.write(json.dumps(entry) + "\n")
        self.journal.flush()
        if time.monotonic() - self._durable_at >= DURABLE_EVERY_S:
            self._sync_dirs()
            os.fsync(self.journal.fileno())
            self._durable_at = time.monotonic()

    def _sync_dirs(self) -> None:
        for d in self._dirs:
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def restore(self, entries: list) -> None:
        """Continue an interrupted run from its journal entries (those whose files are all on
        disk): every other artifact file is deleted, and with ``parquet`` on now but not then,
        the committed shards' Parquet files are made from their JSON Lines."""
        import shutil

        import stat

        keep = {name for e in entries for name, *_ in e["files"]}
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir()
        for path in sorted(self.staging.iterdir()):  # never through a symlink (resume refuses them first)
            if path.name.startswith((STEPS_BASENAME + ".", EPISODES_BASENAME + ".")):
                if stat.S_ISDIR(path.lstat().st_mode):
                    for sub in path.iterdir():
                        if f"{path.name}/{sub.name}" not in keep or not self.parquet:
                            sub.unlink()
                    if not self.parquet:
                        path.rmdir()
                elif path.name not in keep:
                    path.unlink()
        for e in entries:
            for name, size, rows, sha in e["files"]:
                if name.endswith(".parquet") and not self.parquet:
                    continue
                self.files[name] = {"bytes": size, "rows": rows, "sha256": sha}
                if not name.endswith(".parquet"):
                    self.parts[name.split(".")[0]] += 1
            if self.parquet and not any(n.endswith(".parquet") for n, *_ in e["files"]):
                self._parquet_from_jsonl(e)
            self.next_shard = e["shard"] + 1
            self.steps_written, self.episodes_written = e["steps"], e["episodes"]
        self.resumed = True

    def _parquet_from_jsonl(self, entry: dict) -> None:
        """The Parquet files of a committed shard, from its JSON Lines parts (``parquet`` turned
        on when resuming)."""
        import pyarrow as pa

        from plume_capture.io.files import write_new
        from plume_capture.io.jsonl_decode import Layout, iter_jsonl_batches
        from plume_capture.io.shardfiles import encode_parquet

        meta = {"schema_version": SCHEMA_VERSION, "run_id": self._run_id, "config_hash": self._config_hash}
        for base, schema in ((STEPS_BASENAME, STEP_SCHEMA), (EPISODES_BASENAME, EPISODE_SCHEMA)):
            layout, batches = Layout(schema), []
            for name, *_ in entry["files"]:
                if name.split(".")[0] != base or name.endswith(".parquet"):
                    continue
                for batch, problems in iter_jsonl_batches(self.staging / name, layout):
                    if problems:
                        line, code, msg = problems[0]
                        raise ValueError(f"{name}:{line}: {code}: {msg}")
                    batches.append(batch.to_arrow())
            table = pa.Table.from_batches(batches, schema=schema)
            name = self._name(f"{base}.parquet", entry["shard"])
            size, sha = write_new(self.staging / name, [encode_parquet(table, meta)])
            self.files[name] = {"bytes": size, "rows": table.num_rows, "sha256": sha}

    def close(self) -> dict:
        """Finish the run's files; returns ``{file name: {bytes, rows, sha256}}`` in order."""
        import shutil

        from plume_capture.io.shardfiles import PROBE

        shutil.rmtree(self.tmp, ignore_errors=True)
        (self.staging / PROBE).unlink(missing_ok=True)
        self._sync_dirs()
        self.journal.close()
        order = {STEPS_BASENAME: 0, EPISODES_BASENAME: 1}
        return {n: self.files[n] for n in sorted(self.files, key=lambda n: (
            n.endswith(".parquet"), order[n.split(".")[0]], n))}

    def abort(self) -> None:
        try:
            self.journal.close()
        except Exception:
            pass


def publish(staging: Path, run_dir: Path) -> None:
    """Atomically move the finished staging directory to its final name (never onto an existing one);
    ``run.json`` is written there next."""
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
