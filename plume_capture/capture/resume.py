"""Resuming an interrupted run (``--resume RUN_DIR``).

An interrupted run leaves its staging directory (``.<run_id>.partial``) with ``capture.json``
(config, config hash, run id) and ``journal.jsonl`` (one line per shard appended, with the size and
row count of every JSON Lines part at that point). Resuming checks that the config hash matches,
truncates the artifacts back to the last journaled shard (a shard that was being appended when the
run stopped is discarded, never merged), rebuilds the Parquet files from the JSON Lines already
written (a Parquet file cannot be appended to after a crash), reruns only the missing shards and
publishes the run as usual.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pyarrow as pa

from plume_capture.errors import ConfigError
from plume_capture.spec import EPISODE_SCHEMA, STEP_SCHEMA
from plume_capture.capture.sink import JOURNAL, MANIFEST, staging_path


def checkpoint(writer, sync: bool = False) -> list:
    """Flush ``writer`` (a JsonlPartWriter; with ``sync``, to the disk) and return
    ``[[name, bytes, rows], ...]`` of all its parts. (Finished parts were fsynced when closed.)"""
    parts = [[f.name, f.bytes, f.rows] for f in writer._files]
    cur = writer._f
    if cur is not None:
        cur.sync() if sync else cur.flush()
        parts.append([cur.path.name, cur.size, writer._rows])
    return parts


def _sha256_prefix(path: Path, size: int):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        left = size
        while left:
            b = f.read(min(left, 4 << 20))
            if not b:
                raise ConfigError(f"cannot resume: {path.name} is shorter than its journal says")
            h.update(b)
            left -= len(b)
    return h


def reopen(writer, parts: list) -> None:
    """Put a fresh JsonlPartWriter back at a checkpoint: truncate, drop later parts, rehash."""
    from plume_capture.io.files import FileInfo, _HashingFile

    directory, base = writer.directory, writer.base
    keep = {name for name, _, _ in parts}
    for p in directory.glob(f"{base}.*jsonl.gz"):
        if p.name not in keep:
            p.unlink()
    for name, size, rows in parts[:-1]:
        path = directory / name
        os.truncate(path, size)
        writer._files.append(FileInfo(name, size, rows, _sha256_prefix(path, size).hexdigest()))
    if parts:
        name, size, rows = parts[-1]
        path = directory / name
        os.truncate(path, size)
        writer._f, writer._rows = _HashingFile.reopen(path, size, _sha256_prefix(path, size)), rows


def locate(run_dir) -> Path:
    """The staging directory of the interrupted run ``run_dir`` (its staging or its final path)."""
    p = Path(run_dir)
    if p.name.startswith(".") and p.name.endswith(".partial"):
        staging = p
        final = p.with_name(p.name[1:-len(".partial")])
    else:
        staging, final = staging_path(p), p
    if (final / "run.json").exists():
        raise ConfigError(f"cannot resume {str(run_dir)!r}: the run is already complete")
    if not (staging / MANIFEST).is_file():
        raise ConfigError(f"cannot resume {str(run_dir)!r}: no interrupted run there (no {MANIFEST})")
    return staging


def read_manifest(run_dir) -> dict:
    staging = locate(run_dir)
    try:
        return json.loads((staging / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot resume {str(run_dir)!r}: unreadable {MANIFEST}: {exc}") from exc


def last_checkpoint(staging: Path) -> dict | None:
    """The last journal entry whose files hold at least what it records. (After a power loss,
    lines written since the last fsync may survive while the data they describe did not.)"""
    entries = []
    try:
        with open(staging / JOURNAL, encoding="utf-8") as f:
            for line in f:
                try:
                    entries.append(json.loads(line))
                except ValueError:
                    break  # a line cut by the interruption: everything after it is unjournaled
    except FileNotFoundError:
        pass

    def on_disk(entry) -> bool:
        for name, size, _ in entry["steps_files"] + entry["episodes_files"]:
            try:
                if (staging / name).stat().st_size < size:
                    return False
            except FileNotFoundError:
                return False
        return True

    return next((e for e in reversed(entries) if on_disk(e)), None)


def rebuild_parquet(sink) -> None:
    """Write the Parquet files again from the JSON Lines already in the staging directory."""
    from plume_capture.io.jsonl_decode import Layout, iter_jsonl_batches

    for writer, jsonl, schema in ((sink.parquet[0], sink.steps, STEP_SCHEMA),
                                  (sink.parquet[1], sink.episodes, EPISODE_SCHEMA)):
        layout = Layout(schema)
        for name, _, _ in checkpoint(jsonl):
            for batch, problems in iter_jsonl_batches(sink.staging / name, layout):
                if problems:
                    line, code, msg = problems[0]
                    raise ConfigError(f"cannot resume: {name}:{line}: {code}: {msg}")
                writer.write(pa.Table.from_batches([batch.to_arrow()], schema=schema))


def resume_run(run_dir, cfg: dict | None, *, overrides=(), progress: bool = False):
    from plume_capture.capture import engine

    staging = locate(run_dir)
    manifest = read_manifest(run_dir)
    stored = manifest["config"]
    if cfg is not None:
        from plume_capture.config import config_hash

        if config_hash(cfg) != manifest["config_hash"]:
            raise ConfigError(
                f"cannot resume {str(run_dir)!r}: the config differs from the interrupted run's "
                f"(config_hash {config_hash(cfg)[:12]} != {manifest['config_hash'][:12]})")
        for key in ("parquet", "rotate_size"):  # outside the hash, but they shape the artifacts
            if cfg.get(key) != stored.get(key):
                raise ConfigError(f"cannot resume {str(run_dir)!r}: {key} is {cfg.get(key)!r} but the "
                                  f"interrupted run used {stored.get(key)!r}")
        stored = {**stored, "engine": cfg.get("engine", stored.get("engine"))}
    p = engine.prepare(stored, manifest.get("overrides", ()))
    if manifest.get("shard_episodes"):  # the journal counts shards of the original plan
        p.shard_episodes = manifest["shard_episodes"]
    if "env" in manifest and p.physics.effective() != manifest["env"]:
        raise ConfigError(f"cannot resume {str(run_dir)!r}: the environment that would run differs from the "
                          "interrupted run's (e.g. the movie file changed)")
    p.run_id = manifest["run_id"]
    p.staging = staging
    p.run_dir = staging.with_name(staging.name[1:-len(".partial")])
    p.start_time = manifest.get("start_time", p.start_time)
    return engine.execute_resumed(p, progress, last_checkpoint(staging))
