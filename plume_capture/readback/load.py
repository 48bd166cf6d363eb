"""Reading run directories (SPEC §9, §11): ``load_run``, through the decoder of
:mod:`plume_capture.io.jsonl_decode` (or Parquet).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from plume_capture import spec as records
from plume_capture.io.jsonl_decode import EPISODE_LAYOUT, STEP_LAYOUT, Layout, iter_jsonl_batches, strict_loads
from plume_capture.io.rundir import list_run_files

# ------------------------------------------------------------------------------------------------
# load_run


@dataclass
class LoadedRun:
    """A run directory in memory: ``meta`` (run.json), ``steps`` and ``episodes`` Arrow tables."""

    run_dir: str
    meta: dict | None
    steps: pa.Table
    episodes: pa.Table
    sources: dict = field(default_factory=dict)

    def to_pandas(self):
        """(steps, episodes) as pandas DataFrames."""
        return self.steps.to_pandas(), self.episodes.to_pandas()


def _read_jsonl_table(run_dir, files: list, layout: Layout) -> pa.Table:
    batches = []
    for name in files:
        for batch, problems in iter_jsonl_batches(os.path.join(run_dir, name), layout):
            if problems:
                line, code, msg = problems[0]
                raise ValueError(f"{name}:{line}: {code}: {msg} "
                                 "(run plume-nav-validate for a full report)")
            batches.append(batch.to_arrow())
    return pa.Table.from_batches(batches, schema=layout.schema)


def _read_parquet_table(path, schema: pa.Schema) -> pa.Table:
    t = pq.read_table(path)
    meta = t.schema.metadata
    if not t.schema.remove_metadata().equals(schema):
        t = t.select(schema.names).cast(schema)
    return t.replace_schema_metadata(meta)


def load_run(run_dir, *, prefer: str = "parquet") -> LoadedRun:
    """Load a run directory: ``meta`` from run.json, steps and episodes as Arrow tables.

    ``prefer="parquet"`` reads ``<base>.parquet`` when present, else all JSON Lines parts in
    order; ``prefer="jsonl"`` always reads the JSON Lines. Raises FileNotFoundError for a missing
    directory or steps/episodes file and ValueError for unreadable records (the loader does not
    validate; use ``validate_run_artifacts`` for that).
    """
    if prefer not in ("parquet", "jsonl"):
        raise ValueError(f"prefer must be 'parquet' or 'jsonl', not {prefer!r}")
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"not a run directory: {run_dir}")
    meta = None
    meta_path = os.path.join(run_dir, "run.json")
    if os.path.exists(meta_path):
        with open(meta_path, "rb") as f:
            meta = strict_loads(f.read())
    files = list_run_files(run_dir)
    sources = {}
    for base in (records.STEPS_BASENAME, records.EPISODES_BASENAME):
        if prefer == "parquet" and files.parquet[base]:
            sources[base] = [files.parquet[base]]
        elif files.jsonl[base]:
            sources[base] = list(files.jsonl[base])
        else:
            raise FileNotFoundError(f"{run_dir}: no {records.part_name(base, 0)}")
    tables = {}
    for base, layout in ((records.STEPS_BASENAME, STEP_LAYOUT),
                         (records.EPISODES_BASENAME, EPISODE_LAYOUT)):
        if sources[base][0].endswith(".parquet"):
            tables[base] = _read_parquet_table(os.path.join(run_dir, sources[base][0]),
                                               layout.schema)
        else:
            tables[base] = _read_jsonl_table(run_dir, sources[base], layout)
    return LoadedRun(run_dir, meta, tables[records.STEPS_BASENAME],
                     tables[records.EPISODES_BASENAME], sources)
