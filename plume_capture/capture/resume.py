"""Resuming an interrupted run (``--resume RUN_DIR``): a layer on the sink's public API.

An interrupted run leaves its staging directory (``.<run_id>.partial``) with ``capture.json``
(config, config hash, run id) and ``journal.jsonl`` (one line per shard committed). Resuming takes
the run's lock, reads both through one strict parser (damage is one clear error; the directory is
left as it was), builds the run from its own stored config (only execution settings may change) and
goes back to the last journaled shard whose files are on disk as recorded — a run of one shard by
truncating its files, a multi-shard run by deleting every file no journal line lists (a shard that
was being written when the run stopped is discarded, never merged); Parquet turned on at resume is
made from the JSON Lines already written. Then only the missing shards run and the run is
published as usual.
"""
from __future__ import annotations

import re
from pathlib import Path

from plume_capture.capture.lock import RunLock
from plume_capture.capture.sink import JOURNAL, MANIFEST, staging_path
from plume_capture.errors import ConfigError

#: keys a resume may change: how the rest of the run executes, and whether it also gets Parquet
#: (rebuilt from the JSON Lines already written)
RESUMABLE_CHANGES = ("engine", "parquet")
#: keys a resume may not change although no record depends on them, and why
FIXED_ON_RESUME = {
    "rotate_size": "it shaped the files already written",
    "output": "the run is resumed where it is",
    "experiment": "the run is resumed where it is",
}


def locate(run_dir) -> Path:
    """The staging directory of the interrupted run ``run_dir`` (its staging or its final path)."""
    p = Path(run_dir)
    if p.name.startswith(".") and p.name.endswith(".partial"):
        staging = p
        final = p.with_name(p.name[1:-len(".partial")])
    else:
        staging, final = staging_path(p), p
    if (final / "run.json").exists():
        raise ConfigError(f"cannot resume {str(run_dir)!r}: the run is already complete ({final})")
    if not (staging / MANIFEST).is_file():
        raise ConfigError(f"cannot resume {str(run_dir)!r}: no interrupted run there (no {MANIFEST})")
    return staging


def _strict(path: Path, raw: bytes, where: str):
    from plume_capture.io.jsonl_decode import StrictJSONError, strict_loads

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot resume: {path}{where} is damaged: not UTF-8 at byte {exc.start}") from None
    try:
        return strict_loads(text)
    except (StrictJSONError, ValueError) as exc:
        raise ConfigError(f"cannot resume: {path}{where} is damaged: {exc}") from None


_HEX64 = re.compile(r"[0-9a-f]{64}\Z")


def read_manifest(run_dir) -> dict:
    """The interrupted run's ``capture.json``, checked; ConfigError naming the damage."""
    path = locate(run_dir) / MANIFEST
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot resume: cannot read {path}: {exc.strerror or exc}") from None
    doc = _strict(path, raw, "")
    problems = []
    if not isinstance(doc, dict):
        problems.append("not a JSON object")
    else:
        if not isinstance(doc.get("run_id"), str) or not doc["run_id"].startswith("run-"):
            problems.append("run_id is missing or not a run id")
        if not isinstance(doc.get("config_hash"), str) or not _HEX64.match(doc["config_hash"]):
            problems.append("config_hash is missing or not a sha256")
        if not isinstance(doc.get("config"), dict):
            problems.append("config is missing or not an object")
        if not isinstance(doc.get("start_time"), (int, float)) or isinstance(doc.get("start_time"), bool):
            problems.append("start_time is missing or not a number")
        se = doc.get("shard_episodes")
        if se is not None and (not isinstance(se, int) or isinstance(se, bool) or se < 1):
            problems.append("shard_episodes is not a positive integer")
        if "env" in doc and not isinstance(doc["env"], dict):
            problems.append("env is not an object")
        if not isinstance(doc.get("overrides", []), list):
            problems.append("overrides is not a list")
    if problems:
        raise ConfigError(f"cannot resume: {path} is damaged: {problems[0]}")
    return doc


def _entry_ok(e, index: int) -> bool:
    def count(v):
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    def files(v):
        return isinstance(v, list) and all(
            isinstance(f, list) and len(f) == 3 and isinstance(f[0], str) and "/" not in f[0]
            and count(f[1]) and count(f[2]) for f in v)

    def shard_files(v):  # a multi-shard run's entry: the files of this shard, committed
        return isinstance(v, list) and all(
            isinstance(f, list) and len(f) == 4 and isinstance(f[0], str) and _FILE.match(f[0])
            and count(f[1]) and count(f[2]) and isinstance(f[3], str) and _HEX64.match(f[3]) for f in v)

    head = (isinstance(e, dict) and e.get("shard") == index and count(e.get("steps"))
            and count(e.get("episodes")))
    if head and "files" in e:
        return shard_files(e["files"])
    return head and files(e.get("steps_files")) and files(e.get("episodes_files"))


_FILE = re.compile(r"(steps|episodes)(\.jsonl\.gz|\.part\d{4}\.jsonl\.gz|\.parquet/part-\d{5}\.parquet)\Z")


def read_journal(staging: Path) -> list[dict]:
    """The journal's entries, checked: one per shard, in order. A last line without its newline
    was cut by the interruption and is not an entry; any other damage is a ConfigError."""
    path = staging / JOURNAL
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"cannot resume: cannot read {path}: {exc.strerror or exc}") from None
    lines = raw.split(b"\n")
    lines.pop()  # after the last newline: empty, or a line cut by the interruption
    entries = []
    for i, line in enumerate(lines):
        e = _strict(path, line, f" line {i + 1}")
        if not _entry_ok(e, i):
            raise ConfigError(f"cannot resume: {path} line {i + 1} is damaged: not the entry of shard {i}")
        entries.append(e)
    return entries


def last_checkpoint(staging: Path) -> dict | None:
    """The last journal entry whose files hold at least what it records. (After a power loss,
    lines written since the last fsync may survive while the data they describe did not.)"""
    def on_disk(entry) -> bool:
        for name, size, _ in entry["steps_files"] + entry["episodes_files"]:
            try:
                if (staging / name).stat().st_size < size:
                    return False
            except FileNotFoundError:
                return False
        return True

    return next((e for e in reversed(read_journal(staging)) if on_disk(e)), None)


def committed_shards(staging: Path) -> list[dict]:
    """A multi-shard run's journal entries up to the first whose files are not all on disk as
    recorded. (After a power loss, lines written since the last fsync may survive while the
    renames they describe did not.)"""
    out = []
    for e in read_journal(staging):
        for name, size, *_ in e["files"]:
            try:
                if (staging / name).stat().st_size != size:
                    return out
            except FileNotFoundError:
                return out
        out.append(e)
    return out


def _leaves(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield prefix + k, v


def _check_changes(run_dir, stored: dict, cfg: dict) -> None:
    from plume_capture.config import complete_config, effective_config

    try:
        a, b = dict(_leaves(effective_config(stored))), dict(_leaves(effective_config(complete_config(cfg))))
    except ConfigError:
        a, b = dict(_leaves(stored)), dict(_leaves(cfg))
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k)
                     and k.split(".")[0] not in RESUMABLE_CHANGES)
    for key in changed:
        if key in FIXED_ON_RESUME:
            raise ConfigError(f"cannot resume {str(run_dir)!r}: {key} cannot change on resume "
                              f"({FIXED_ON_RESUME[key]}): {a.get(key)!r} -> {b.get(key)!r}")
    if changed:
        shown = ", ".join(f"{k} ({a.get(k)!r} -> {b.get(k)!r})" for k in changed[:3])
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise ConfigError(f"cannot resume {str(run_dir)!r}: the config differs from the interrupted run's in "
                          f"{shown}{more}; only engine settings and parquet may change on resume")


def resume_run(run_dir, cfg: dict | None, *, progress: bool = False):
    """Finish the interrupted run ``run_dir`` from its own stored config. ``cfg`` (the stored config
    with the operator's changes, or None) may differ from it only in :data:`RESUMABLE_CHANGES`."""
    from plume_capture.capture.run import execute, new_sink, prepare, session
    from plume_capture.config import resolve

    staging = locate(run_dir)
    lock = RunLock(staging)
    try:
        manifest = read_manifest(run_dir)
        stored = manifest["config"]
        if cfg is not None:
            _check_changes(run_dir, stored, cfg)
            stored = {**stored, **{k: cfg[k] for k in RESUMABLE_CHANGES if k in cfg}}
        spec = resolve(stored, manifest.get("overrides", ()))
        if spec.config_hash != manifest["config_hash"]:
            raise ConfigError(f"cannot resume {str(run_dir)!r}: its stored config no longer hashes to its "
                              f"config_hash (config_hash {spec.config_hash[:12]} != {manifest['config_hash'][:12]})")
        # A run begun by an earlier version (journal lines without "files") keeps its one-file layout.
        one_file = any("files" not in e for e in read_journal(staging))
        p = prepare(spec, run_id=manifest["run_id"], run_dir=staging.with_name(staging.name[1:-len(".partial")]),
                    start_time=manifest["start_time"], shard_episodes=manifest.get("shard_episodes"),
                    one_file=one_file)
        if "env" in manifest and p.physics.effective() != manifest["env"]:
            raise ConfigError(f"cannot resume {str(run_dir)!r}: the environment that would run differs from the "
                              "interrupted run's (e.g. the movie file changed)")
        checkpoint = committed_shards(staging) if p.sharded else last_checkpoint(staging)
    except BaseException:
        lock.release()
        raise
    with session([p]):
        for name in ("run.json", "run.json.tmp") + (() if p.sharded else ("steps.parquet", "episodes.parquet")):
            (staging / name).unlink(missing_ok=True)
        sink = new_sink(p)
        try:
            sink.restore(checkpoint)
        except (ValueError, OSError) as exc:
            sink.abort()
            lock.release()
            raise ConfigError(f"cannot resume {str(run_dir)!r}: {exc}") from None
        return execute(p, sink, lock, progress)
