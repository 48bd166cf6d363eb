"""Resuming an interrupted run (``--resume RUN_DIR``): a layer on the sink's public API.

An interrupted run leaves its staging directory (``.<run_id>.partial``) with ``capture.json``
(config, config hash, run id, shard size) and ``journal.jsonl`` (one line per shard committed).
Resuming takes the run's lock, reads both through one strict parser (damage is one clear error; the
directory is left as it was), builds the run from its own stored config (only execution settings
may change) and checks what it would keep: ``capture.json``'s shard size against the shard plan of
that config, every journal entry against the plan (episodes, steps, rows, file names) and every
file it keeps against the sha256 the journal holds (one read of each). The longest run of entries
that passes is kept, the journal is cut there and the rest is run again — a run of one shard by
truncating its files, a multi-shard run by deleting every file no kept entry lists (a shard that
was being written when the run stopped is discarded, never merged). Anything in the directory that
is not a file of a run (a symlink, an unknown name) is refused before anything is deleted. Parquet
turned on at resume is made from the JSON Lines already written. Then only the missing shards run
and the run is published as usual.
"""
from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

from plume_capture.capture.lock import LOCK, RunLock
from plume_capture.capture.sink import JOURNAL, MANIFEST, staging_path
from plume_capture.errors import ConfigError, OperationalError
from plume_capture.spec import EPISODES_BASENAME, STEPS_BASENAME, part_name

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
    if staging.is_symlink():
        raise ConfigError(f"cannot resume {str(run_dir)!r}: {staging} is a symbolic link, not a run's directory")
    if not staging.exists() and (final / MANIFEST).is_file() and not final.is_symlink():
        return final  # the commit stopped between its rename and run.json: resumed from the final place
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


def _read_own(path: Path) -> bytes:
    """The bytes of the run's own bookkeeping file ``path``: a regular file, never through a
    symlink (a FIFO would block, ``/dev/zero`` never end); FileNotFoundError if it is missing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        why = "is a symbolic link" if exc.errno == errno.ELOOP else f"cannot be read: {exc.strerror or exc}"
        raise ConfigError(f"cannot resume: {path} {why}, not a file of the run") from None
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(f"cannot resume: {path} is not a regular file, not a file of the run")
        return f.read()


def read_manifest(run_dir) -> dict:
    """The interrupted run's ``capture.json``, checked; ConfigError naming the damage."""
    path = locate(run_dir) / MANIFEST
    try:
        raw = _read_own(path)
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

    def files(v):  # [name, bytes, rows, sha256 of the first bytes] (without the sha256: an earlier version)
        return isinstance(v, list) and all(
            isinstance(f, list) and len(f) in (3, 4) and isinstance(f[0], str) and "/" not in f[0]
            and count(f[1]) and count(f[2]) and (len(f) == 3 or isinstance(f[3], str) and _HEX64.match(f[3]))
            for f in v)

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
        raw = _read_own(path)
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


def kept_entries(staging: Path, entries: list[dict], shards: list, max_steps: int, parquet: bool) -> list[dict]:
    """The longest prefix of ``entries`` that agrees with the shard plan ``shards`` (episodes,
    steps within ``max_steps`` per episode, rows, file names) and whose files on disk hold what
    it records: each file's first ``bytes`` bytes hash to its sha256 (one read per file; a
    multi-shard run's files are exactly that long), or, in an earlier version's journal without
    sha256s, are whole gzip members (CRCs checked) holding its ``rows`` lines. Parquet files count
    only with ``parquet`` (else they are not kept)."""
    planned, wanted = [], {}
    parts = {STEPS_BASENAME: 0, EPISODES_BASENAME: 0}
    steps_before = 0
    for i, e in enumerate(entries):
        files = _planned_files(e, i, shards, max_steps, steps_before, parts)
        if files is None:
            break
        files = [f for f in files if parquet or not f[0].endswith(".parquet")]
        planned.append((e, files))
        for name, size, *_ in files:
            wanted.setdefault(name, set()).add(size)
        steps_before = e["steps"]
    unhashed = {f[0] for _, files in planned for f in files if len(f) == 3}  # an earlier version's journal
    on_disk = {}  # name -> (its size, {prefix size: sha256}, {prefix size: lines}); (-1, {}, {}) if missing
    for name, sizes in wanted.items():
        try:
            st = os.lstat(staging / name)
        except FileNotFoundError:
            on_disk[name] = (-1, {}, {})
            continue
        regular = stat.S_ISREG(st.st_mode)
        on_disk[name] = (st.st_size, _digests(staging / name, sizes) if regular else {},
                         _member_rows(staging / name, max(sizes)) if regular and name in unhashed else {})
    out = []
    for e, files in planned:
        exact = "files" in e  # a committed shard's file never grows; a one-file part does
        for name, size, rows, *sha in files:
            have, digest, lines = on_disk[name]
            if (have != size if exact else have < size) or (sha and digest.get(size) != sha[0]) \
                    or (not sha and lines.get(size) != rows):  # no sha256: whole members, CRCs, rows
                return out
        out.append(e)
    return out


def _member_rows(path: Path, upto: int) -> dict:
    from plume_capture.io.files import gzip_member_rows

    try:
        return gzip_member_rows(path, upto)
    except OSError as exc:  # the machine refused (exit 3): the run stays as it was, resumable later
        raise OperationalError(f"cannot resume: cannot read {path}: {exc.strerror or exc}") from None


def _digests(path: Path, sizes) -> dict:
    from plume_capture.io.files import prefix_digests

    try:
        return prefix_digests(path, sizes)
    except OSError as exc:  # the machine refused (exit 3): the run stays as it was, resumable later
        raise OperationalError(f"cannot resume: cannot read {path}: {exc.strerror or exc}") from None


def _planned_files(e: dict, i: int, shards: list, max_steps: int, steps_before: int, parts: dict):
    """Entry ``e`` of shard ``i`` checked against the plan: -> its files ``[[name, bytes, rows,
    (sha256)], ...]``, or None if it disagrees. ``parts`` counts the JSON Lines parts so far."""
    from plume_capture.io.rundir import parquet_part_name

    if i >= len(shards) or e["episodes"] != shards[i].stop:
        return None
    n, steps = shards[i].episodes, e["steps"] - steps_before
    if not 0 <= steps <= n * max_steps:
        return None
    want_rows = {STEPS_BASENAME: e["steps"], EPISODES_BASENAME: e["episodes"]}
    if "files" not in e:  # one file per artifact: every part so far, the last one growing
        for base in (STEPS_BASENAME, EPISODES_BASENAME):
            listed = e[f"{base}_files"]
            if [f[0] for f in listed] != [part_name(base, k) for k in range(len(listed))] \
                    or sum(f[2] for f in listed) != want_rows[base]:
                return None
        return e["steps_files"] + e["episodes_files"]
    want_rows = {STEPS_BASENAME: steps, EPISODES_BASENAME: n}
    rows = {STEPS_BASENAME: 0, EPISODES_BASENAME: 0}
    pq_rows = {}
    for name, _, r, _ in e["files"]:
        base = name.split(".")[0]
        if name.endswith(".parquet"):
            if name != parquet_part_name(base, i) or base in pq_rows:
                return None
            pq_rows[base] = r
        else:
            if name != part_name(base, parts[base]):
                return None
            parts[base] += 1
            rows[base] += r
    if rows != want_rows or (pq_rows and pq_rows != want_rows):
        return None
    return e["files"]


_JSONL_NAME = re.compile(r"(steps|episodes)(\.jsonl\.gz|\.part\d{4}\.jsonl\.gz)\Z")
_PQ_PART = re.compile(r"part-\d{5}\.parquet\Z")


def foreign_entry(staging: Path, sharded: bool) -> str | None:
    """What in ``staging`` is not a file of a run in its layout (a symlink anywhere, a name the
    layout does not have, a file where a directory belongs), as ``"NAME (why)"``; None if nothing."""
    from plume_capture.io.shardfiles import PROBE, TMP_DIR

    files = {MANIFEST, JOURNAL, LOCK, "run.json", "run.json.tmp"} | ({PROBE, PROBE + ".tmp"} if sharded else set())
    for entry in sorted(os.scandir(staging), key=lambda d: d.name):
        name = entry.name
        if entry.is_symlink():
            return f"{name} (a symbolic link)"
        if name in files or _JSONL_NAME.match(name):
            if not entry.is_file(follow_symlinks=False):
                return f"{name} (not a regular file)"
        elif name in (f"{STEPS_BASENAME}.parquet", f"{EPISODES_BASENAME}.parquet"):
            if not sharded:
                if not entry.is_file(follow_symlinks=False):
                    return f"{name} (not a regular file)"
                continue
            if not entry.is_dir(follow_symlinks=False):
                return f"{name} (not a directory)"
            for sub in sorted(os.scandir(entry.path), key=lambda d: d.name):
                if sub.is_symlink():
                    return f"{name}/{sub.name} (a symbolic link)"
                if not sub.is_file(follow_symlinks=False) or not _PQ_PART.match(sub.name):
                    return f"{name}/{sub.name} (not a Parquet part of a run)"
        elif sharded and name == TMP_DIR:
            if not entry.is_dir(follow_symlinks=False):
                return f"{name} (not a directory)"
        else:
            return f"{name} (not a file of a run)"
    return None


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


def _resumed_spec(run_dir, manifest: dict, spec):
    """The spec the rest of the run executes: ``spec`` (the operator's, resolved once; None: the
    stored config's) checked against the interrupted run's -- the same ``config_hash`` and the same
    unhashed settings but for :data:`RESUMABLE_CHANGES` -- with the stored config and overrides
    (what ``run.json`` records)."""
    import dataclasses

    from plume_capture import defaults
    from plume_capture.config import EXECUTION_ONLY_KEYS, resolve

    stored, overrides = manifest["config"], tuple(manifest.get("overrides", ()))
    given = spec is not None
    if not given:
        spec = resolve(stored, overrides)
    known = defaults.tree()
    unhashed = {k for k in set(stored) | set(spec.config) if k in EXECUTION_ONLY_KEYS or k not in known}
    if spec.config_hash != manifest["config_hash"] or given and any(
            stored.get(k) != spec.config.get(k) for k in unhashed - set(RESUMABLE_CHANGES)):
        if given:
            _check_changes(run_dir, stored, spec.config)  # names what the operator changed
        raise ConfigError(f"cannot resume {str(run_dir)!r}: its stored config no longer hashes to its "
                          f"config_hash (config_hash {spec.config_hash[:12]} != {manifest['config_hash'][:12]})")
    config = {**stored, **{k: spec.config[k] for k in RESUMABLE_CHANGES if k in spec.config}}
    return dataclasses.replace(spec, config=config, overrides=overrides)


def resume_run(run_dir, spec=None, *, progress: bool = False):
    """Finish the interrupted run ``run_dir`` from its own stored config. ``spec`` (a RunSpec of the
    stored config with the operator's changes, or None) may differ from it only in
    :data:`RESUMABLE_CHANGES`."""
    import dataclasses

    from plume_capture.capture.run import execute, new_sink, planned_shard_episodes, prepare, session
    from plume_capture.sim.plan import plan

    staging = locate(run_dir)
    if not staging.name.endswith(".partial"):  # before a lock file is made in a directory maybe not a run's
        _check_run_id(run_dir, staging, read_manifest(staging), staging.name)
    lock = RunLock(staging)
    try:
        if not staging.name.endswith(".partial"):  # stopped inside the commit: back to its staging name
            if (staging / "run.json").exists() or not (staging / MANIFEST).is_file():
                (staging / LOCK).unlink()  # ours: the commit it raced had already dropped its own
                raise ConfigError(f"cannot resume {str(run_dir)!r}: the run is already complete ({staging})")
            final, staging = staging, staging_path(staging)
            os.rename(final, staging)
        manifest = read_manifest(staging)
        _check_run_id(run_dir, staging, manifest, staging.name[1:-len(".partial")])
        spec_now = _resumed_spec(run_dir, manifest, spec)
        stored_engine = manifest["config"].get("engine")
        stored_shards = stored_engine.get("shard_episodes") if isinstance(stored_engine, dict) else None
        if stored_shards is not None and (not isinstance(stored_shards, int) or isinstance(stored_shards, bool)
                                          or stored_shards < 1):
            raise ConfigError(f"cannot resume {str(run_dir)!r}: {staging / MANIFEST} is damaged: "
                              f"engine.shard_episodes {stored_shards!r} is not a positive integer")
        # the shard plan of the run as it began (engine settings may change on resume)
        spec = dataclasses.replace(spec_now, engine=dataclasses.replace(spec_now.engine, shard_episodes=stored_shards))
        entries = read_journal(staging)
        # A run begun by an earlier version (journal lines without "files") keeps its one-file layout.
        one_file = any("files" not in e for e in entries)
        p = prepare(spec_now, run_id=manifest["run_id"], run_dir=staging.with_name(staging.name[1:-len(".partial")]),
                    start_time=manifest["start_time"], shard_episodes=manifest.get("shard_episodes"),
                    one_file=one_file)
        max_steps = p.physics.params.max_steps
        planned = planned_shard_episodes(spec, max_steps)
        if manifest.get("shard_episodes", planned) != planned:
            raise ConfigError(f"cannot resume {str(run_dir)!r}: {staging / MANIFEST} is damaged: shard_episodes "
                              f"{manifest['shard_episodes']} is not the run's shard plan ({planned})")
        diff = p.physics.differs_from(manifest["env"]) if "env" in manifest else None
        if diff is not None:
            what = "the movie file changed since the run began; " if diff.startswith("movie.") else ""
            raise ConfigError(f"cannot resume {str(run_dir)!r}: the environment that would run differs from the "
                              f"interrupted run's ({what}{diff})")
        foreign = foreign_entry(staging, p.sharded)
        if foreign is not None:
            raise ConfigError(f"cannot resume {str(run_dir)!r}: {staging} holds {foreign}, which is not part of "
                              "the run; move it away (nothing was changed)")
        shards = plan(p.episodes, p.shard_episodes)
        kept = kept_entries(staging, entries, shards, max_steps, parquet=p.sharded and p.spec.parquet)
    except BaseException:
        lock.release()
        raise
    with session([p]):
        _cut_journal(staging, len(kept))
        for name in ("run.json", "run.json.tmp") + (() if p.sharded else ("steps.parquet", "episodes.parquet")):
            (staging / name).unlink(missing_ok=True)
        sink = new_sink(p)
        try:
            sink.restore(kept if p.sharded else (kept[-1] if kept else None))
        except (ValueError, OSError) as exc:
            sink.abort()
            lock.release()
            raise ConfigError(f"cannot resume {str(run_dir)!r}: {exc}") from None
        return execute(p, sink, lock, progress)


def _check_run_id(run_dir, where: Path, manifest: dict, name: str) -> None:
    """``capture.json`` must name the run of its directory: every record written holds the run id."""
    if manifest["run_id"] != name:
        raise ConfigError(f"cannot resume {str(run_dir)!r}: {where / MANIFEST} names run {manifest['run_id']!r}, "
                          f"not {name} (damaged, or the directory was renamed)")


def _cut_journal(staging: Path, keep: int) -> None:
    """Cut the journal after its first ``keep`` lines (what follows is run again), on disk."""
    path = staging / JOURNAL
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return
    end = 0
    for _ in range(keep):
        end = raw.index(b"\n", end) + 1
    if end != len(raw):
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
        try:
            os.ftruncate(fd, end)
            os.fsync(fd)
        finally:
            os.close(fd)
