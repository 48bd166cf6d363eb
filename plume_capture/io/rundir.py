"""The files of a run directory as readers see them (docs/spec.md §9): JSON Lines parts in order, Parquet
(one file, or a directory of parts), gaps and strays.

Layout (docs/format.md, "Layout of a multi-shard run"): a run of one shard has one file per artifact (``steps.jsonl.gz``,
``steps.parquet``); a run of several shards has one JSON Lines part per shard (more where
``rotate_size`` cuts a shard) and a Parquet dataset directory ``steps.parquet/`` holding
``part-NNNNN.parquet`` per shard — what pandas, pyarrow, polars and duckdb read in one call.
"""
from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass, field

from plume_capture import spec as records

_PART_RE = re.compile(r"(steps|episodes)\.part(\d+)\.jsonl\.gz\Z")
_PQ_PART_RE = re.compile(r"part-(\d{5})\.parquet\Z")


def parquet_part_name(base: str, shard: int) -> str:
    """Path (in the run directory) of shard ``shard``'s Parquet file in a multi-shard run."""
    return f"{base}.parquet/part-{shard:05d}.parquet"


@dataclass
class RunFiles:
    """The artifact files of a run directory, as the readers see them."""

    jsonl: dict  # base -> [file names in order]
    parquet: dict  # base -> [Parquet file paths (relative to the run directory) in order]; [] if none
    missing_parts: list  # (base, expected name) for gaps in the part numbering
    stray: list  # names that look like artifacts of a base but are not read by any reader
    other: list  # other names
    irregular: list = field(default_factory=list)  # (name, what it is) of run.json, artifacts and
    # strays that are not regular files (a FIFO, a device, ...): no reader opens them


def list_run_files(run_dir) -> RunFiles:
    names = sorted(os.listdir(run_dir))
    jsonl, parquet, missing, stray, other = {}, {}, [], [], []
    known = {"run.json"}
    for base in (records.STEPS_BASENAME, records.EPISODES_BASENAME):
        parts = {}
        for n in names:
            m = _PART_RE.match(n)
            if m and m.group(1) == base and int(m.group(2)) >= 1 and \
                    records.part_name(base, int(m.group(2))) == n:
                parts[int(m.group(2))] = n
        files = []
        base_name = records.part_name(base, 0)
        if base_name in names:
            files.append(base_name)
        if parts:
            for k in range(1, max(parts) + 1):
                if k in parts:
                    files.append(parts[k])
                else:
                    missing.append((base, records.part_name(base, k)))
        jsonl[base] = files
        known.update(files)
        pq_name = f"{base}.parquet"
        pq_files = []
        if pq_name in names:
            known.add(pq_name)
            path = os.path.join(run_dir, pq_name)
            if os.path.isdir(path):
                pq_parts = {}
                for n in sorted(os.listdir(path)):
                    m = _PQ_PART_RE.match(n)
                    if m:
                        pq_parts[int(m.group(1))] = n
                    else:
                        stray.append(f"{pq_name}/{n}")
                for k in range(max(pq_parts) + 1 if pq_parts else 0):
                    if k in pq_parts:
                        pq_files.append(parquet_part_name(base, k))
                    else:
                        missing.append((base, parquet_part_name(base, k)))
            else:
                pq_files.append(pq_name)
        parquet[base] = pq_files
    for n in names:
        if n in known:
            continue
        if n.startswith((f"{records.STEPS_BASENAME}.", f"{records.EPISODES_BASENAME}.")):
            stray.append(n)
        else:
            other.append(n)
    irregular = []
    for n in ["run.json"] * ("run.json" in names) + [n for fs in jsonl.values() for n in fs] + \
            [n for fs in parquet.values() for n in fs] + stray:
        what = not_regular(os.path.join(run_dir, n))
        if what:
            irregular.append((n, what))
    return RunFiles(jsonl, parquet, missing, stray, other, irregular)


def is_staging(run_dir) -> bool:
    """Whether ``run_dir`` is a capture's staging directory (``.<run_id>.partial``): never a finished
    run, whatever its run.json says."""
    name = os.path.basename(os.path.normpath(os.fspath(run_dir)))
    return name.startswith(".") and name.endswith(".partial")


STAGING_NOTE = "a capture's staging directory (.<run_id>.partial): the capture did not finish " \
    "(plume-nav-capture --resume finishes it)"


# ------------------------------------------------------------------------------------------------
# Regular files only: a FIFO would block a reader forever, a device (/dev/zero) feed it forever.

_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


class NotRegularFile(OSError):
    """A run file that is not a regular file; readers refuse it instead of opening it."""


def _what(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    return next((what for test, what in _KINDS if test(mode)), "not a regular file")


def not_regular(path) -> str | None:
    """None when ``path`` is a regular file (symlinks followed, nothing opened) or does not exist,
    else what it is ("a FIFO", "a character device", ...)."""
    try:
        return _what(os.stat(path).st_mode)
    except FileNotFoundError:
        return None
    except OSError as exc:  # e.g. a symlink loop
        return f"unreadable ({exc.strerror})"


def open_regular(path):
    """``open(path, "rb")`` for a regular file only (symlinks followed); NotRegularFile for anything
    else, without blocking: the file is checked before it is opened, and opened non-blocking and
    checked again (it may have been swapped in between)."""
    what = not_regular(path)
    if what is None:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            what = _what(os.fstat(fd).st_mode)
            if what is None:
                os.set_blocking(fd, True)
                return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise NotRegularFile(errno.EINVAL, f"{os.fspath(path)} is {what}, not a regular file")


# ------------------------------------------------------------------------------------------------
# How much text a JSON Lines file can hold, by what run.json says

TEXT_MARGIN = 64 << 10  # bytes of decompressed text allowed beyond the bound


def _obs_len(env: dict) -> int:
    t, n = env.get("observation_type"), env.get("n_sensors")
    if t == "concentration":
        return 1
    if t == "wind_vector":
        return 2
    return n if type(n) is int and 1 <= n <= 1 << 16 else 256  # the config's largest n_sensors


def jsonl_text_limit(meta, name: str) -> int | None:
    """Most decompressed bytes the JSON Lines file ``name`` can hold by what ``meta`` (run.json)
    says, plus ``TEXT_MARGIN``: its listed rows (else every record of the run: the episodes, times
    ``max_steps`` for the steps) times the longest record its settings allow (the fixed fields, the
    run id, 32 bytes per observation value). None when run.json gives no count."""
    if not isinstance(meta, dict):
        return None
    extra = meta.get("extra") if isinstance(meta.get("extra"), dict) else {}
    env = extra.get("env") if isinstance(extra.get("env"), dict) else {}
    steps = name.startswith(records.STEPS_BASENAME + ".")
    entry = (extra.get("files") or {}).get(name) if isinstance(extra.get("files"), dict) else None
    rows = entry.get("rows") if isinstance(entry, dict) else None
    if type(rows) is not int or rows < 0:
        seeds = meta.get("episode_seeds")
        max_steps = (meta.get("env_config") or {}).get("max_steps") if isinstance(meta.get("env_config"), dict) \
            else None
        if not hasattr(seeds, "__len__") or (steps and (type(max_steps) is not int or max_steps < 1)):
            return None
        rows = len(seeds) * (max_steps if steps else 1)
    run_id = meta.get("run_id")
    record = 1024 + 6 * (len(run_id) if isinstance(run_id, str) else 64) + (32 * _obs_len(env) if steps else 0)
    return rows * record + TEXT_MARGIN
