"""The files of a run directory as readers see them (SPEC §9): JSON Lines parts in order, Parquet,
gaps and strays."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from plume_capture import spec as records

_PART_RE = re.compile(r"(steps|episodes)\.part(\d+)\.jsonl\.gz\Z")


@dataclass
class RunFiles:
    """The artifact files of a run directory, as the readers see them."""

    jsonl: dict  # base -> [file names in order]
    parquet: dict  # base -> file name or None
    missing_parts: list  # (base, expected name) for gaps in the part numbering
    stray: list  # names that look like artifacts of a base but are not read by any reader
    other: list  # other names


def list_run_files(run_dir) -> RunFiles:
    names = sorted(os.listdir(run_dir))
    jsonl, parquet, missing, stray, other = {}, {}, [], [], []
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
        parquet[base] = f"{base}.parquet" if f"{base}.parquet" in names else None
    known = {n for fs in jsonl.values() for n in fs} | {p for p in parquet.values() if p}
    known.add("run.json")
    for n in names:
        if n in known:
            continue
        if n.startswith((f"{records.STEPS_BASENAME}.", f"{records.EPISODES_BASENAME}.")):
            stray.append(n)
        else:
            other.append(n)
    return RunFiles(jsonl, parquet, missing, stray, other)


