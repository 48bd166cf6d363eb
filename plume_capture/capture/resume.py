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

import json
from pathlib import Path

from plume_capture.capture.sink import JOURNAL, MANIFEST, staging_path
from plume_capture.errors import ConfigError


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


def resume_run(run_dir, cfg: dict | None, *, progress: bool = False):
    """Finish the interrupted run ``run_dir`` from its own stored config. A given ``cfg`` must hash
    the same and keep ``parquet``/``rotate_size``; only its ``engine`` settings are taken."""
    from plume_capture.capture.run import execute, new_sink, prepare, session
    from plume_capture.config import config_hash, resolve

    staging = locate(run_dir)
    manifest = read_manifest(run_dir)
    stored = manifest["config"]
    if cfg is not None:
        if config_hash(cfg) != manifest["config_hash"]:
            raise ConfigError(
                f"cannot resume {str(run_dir)!r}: the config differs from the interrupted run's "
                f"(config_hash {config_hash(cfg)[:12]} != {manifest['config_hash'][:12]})")
        for key in ("parquet", "rotate_size"):  # outside the hash, but they shape the artifacts
            if cfg.get(key) != stored.get(key):
                raise ConfigError(f"cannot resume {str(run_dir)!r}: {key} is {cfg.get(key)!r} but the "
                                  f"interrupted run used {stored.get(key)!r}")
        stored = {**stored, "engine": cfg.get("engine", stored.get("engine"))}
    p = prepare(resolve(stored, manifest.get("overrides", ())), run_id=manifest["run_id"],
                run_dir=staging.with_name(staging.name[1:-len(".partial")]),
                start_time=manifest.get("start_time"), shard_episodes=manifest.get("shard_episodes"))
    if "env" in manifest and p.physics.effective() != manifest["env"]:
        raise ConfigError(f"cannot resume {str(run_dir)!r}: the environment that would run differs from the "
                          "interrupted run's (e.g. the movie file changed)")
    with session([p]):
        for name in ("steps.parquet", "episodes.parquet", "run.json", "run.json.tmp"):
            (staging / name).unlink(missing_ok=True)
        sink = new_sink(p)
        try:
            sink.restore(last_checkpoint(staging))
        except ValueError as exc:
            sink.abort()
            raise ConfigError(f"cannot resume {str(run_dir)!r}: {exc}") from None
        return execute(p, sink, progress)
