"""The files of a run directory as readers see them (docs/spec.md §9): JSON Lines parts in order, Parquet
(one file, or a directory of parts), gaps and strays.

Layout (docs/format.md, "Layout of a multi-shard run"): a run of one shard has one file per artifact (``steps.jsonl.gz``,
``steps.parquet``); a run of several shards has one JSON Lines part per shard (more where
``rotate_size`` cuts a shard) and a Parquet dataset directory ``steps.parquet/`` holding
``part-NNNNN.parquet`` per shard — what pandas, pyarrow, polars and duckdb read in one call.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

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
    return RunFiles(jsonl, parquet, missing, stray, other)
