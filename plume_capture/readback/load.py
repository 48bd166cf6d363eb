"""Reading run directories (docs/spec.md §9, §11): ``load_run``, through the decoder of
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


def _read_jsonl_table(run_dir, files: list, layout: Layout, rows: dict) -> pa.Table:
    batches = []
    for name in files:
        rows[name] = 0
        for batch, problems in iter_jsonl_batches(os.path.join(run_dir, name), layout):
            if problems:
                line, code, msg = problems[0]
                raise ValueError(f"{name}:{line}: {code}: {msg} "
                                 "(run plume-nav-validate for a full report)")
            rows[name] += batch.n
            batches.append(batch.to_arrow())
    return pa.Table.from_batches(batches, schema=layout.schema)


def _read_meta(path: str):
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 at byte {exc.start}") from None
    if text.startswith("\ufeff"):
        raise ValueError(f"{path}: starts with a byte order mark (the format is plain UTF-8)")
    return strict_loads(text)


def _recorded(meta, run_dir: str) -> tuple[dict | None, dict | None]:
    """``extra.files`` and ``extra.counts`` of a run.json written by plume-capture (else None)."""
    if not isinstance(meta, dict):
        raise ValueError(f"{run_dir}: run.json is not a JSON object")
    extra = meta.get("extra")
    if not isinstance(extra, dict):
        return None, None
    files, counts = extra.get("files"), extra.get("counts")
    return (files if isinstance(files, dict) else None), (counts if isinstance(counts, dict) else None)


def _check_against_meta(run_dir: str, found, recorded: dict | None, counts: dict | None, sources: dict,
                        tables: dict, rows: dict) -> None:
    where = f"{run_dir}: "
    hint = " (run plume-nav-validate for a full report; load_run(..., check=False) reads it anyway)"
    for base in (records.STEPS_BASENAME, records.EPISODES_BASENAME):
        if found.missing_parts:
            raise ValueError(where + f"{found.missing_parts[0][1]} is missing (parts must be numbered without gaps)"
                             + hint)
        if recorded is not None:
            listed = sorted(n for n in recorded if n.startswith(base + ".") and n.endswith(".jsonl.gz"))
            on_disk = sorted(found.jsonl[base])
            if listed != on_disk:
                extra_parts = sorted(set(on_disk) - set(listed))
                missing = sorted(set(listed) - set(on_disk))
                what = f"{missing[0]} is missing" if missing else f"{extra_parts[0]} is not listed in run.json"
                raise ValueError(where + what + hint)
            for name in sources[base]:
                want = (recorded.get(name) or {}).get("rows")
                got = rows.get(name)
                if isinstance(want, int) and got is not None and got != want:
                    raise ValueError(where + f"{name} holds {got} records but run.json says {want}" + hint)
        if counts is not None:
            want = counts.get(base)
            if isinstance(want, int) and tables[base].num_rows != want:
                raise ValueError(where + f"{tables[base].num_rows} {base} records but run.json counts {want}" + hint)


def _read_parquet_table(path, schema: pa.Schema) -> pa.Table:
    t = pq.read_table(path)
    meta = t.schema.metadata
    if not t.schema.remove_metadata().equals(schema):
        t = t.select(schema.names).cast(schema)
    return t.replace_schema_metadata(meta)


def _read_parquet_tables(run_dir: str, names: list, schema: pa.Schema, rows: dict) -> pa.Table:
    """The Parquet file, or the parts of a Parquet directory in order, as one table."""
    tables = []
    for name in names:
        tables.append(_read_parquet_table(os.path.join(run_dir, name), schema))
        rows[name] = tables[-1].num_rows
    meta = tables[0].schema.metadata
    return pa.concat_tables([t.replace_schema_metadata(None) for t in tables]).replace_schema_metadata(meta)


def load_run(run_dir, *, prefer: str = "parquet", check: bool = True) -> LoadedRun:
    """Load a run directory: ``meta`` from run.json, steps and episodes as Arrow tables.

    ``prefer="parquet"`` reads ``<base>.parquet`` (a file, or a directory of parts) when present, else all JSON Lines parts in
    order; ``prefer="jsonl"`` always reads the JSON Lines. With ``check`` (the default) what is read
    must agree with run.json: the run is complete (it has a run.json, a JSON object), no part is
    missing or unlisted, and the record counts are those recorded. Raises FileNotFoundError for a
    missing directory or steps/episodes file and ValueError for an incomplete or inconsistent run
    or unreadable records (the loader does not validate every record; use
    ``validate_run_artifacts`` for that). ``check=False`` reads whatever is there.
    """
    if prefer not in ("parquet", "jsonl"):
        raise ValueError(f"prefer must be 'parquet' or 'jsonl', not {prefer!r}")
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"not a run directory: {run_dir}")
    meta = None
    meta_path = os.path.join(run_dir, "run.json")
    if os.path.exists(meta_path):
        meta = _read_meta(meta_path)
    elif check:
        raise ValueError(f"{run_dir}: no run.json: an incomplete run (load_run(..., check=False) reads it anyway)")
    recorded, counts = _recorded(meta, run_dir) if check else (None, None)
    files = list_run_files(run_dir)
    sources = {}
    for base in (records.STEPS_BASENAME, records.EPISODES_BASENAME):
        if prefer == "parquet" and files.parquet[base]:
            sources[base] = list(files.parquet[base])
        elif files.jsonl[base]:
            sources[base] = list(files.jsonl[base])
        else:
            raise FileNotFoundError(f"{run_dir}: no {records.part_name(base, 0)}")
    tables, rows = {}, {}
    for base, layout in ((records.STEPS_BASENAME, STEP_LAYOUT),
                         (records.EPISODES_BASENAME, EPISODE_LAYOUT)):
        if sources[base][0].endswith(".parquet"):
            tables[base] = _read_parquet_tables(run_dir, sources[base], layout.schema, rows)
        else:
            tables[base] = _read_jsonl_table(run_dir, sources[base], layout, rows)
    if check:
        _check_against_meta(run_dir, files, recorded, counts, sources, tables, rows)
    return LoadedRun(run_dir, meta, tables[records.STEPS_BASENAME],
                     tables[records.EPISODES_BASENAME], sources)
