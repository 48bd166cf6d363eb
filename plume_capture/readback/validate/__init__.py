"""Validation of run directories (docs/spec.md §11): ``validate_run_artifacts`` and the
command-line entry point in ``plume_capture.cli.validate``. The package: ``report`` (codes, the
report), ``run_json`` (run.json and what the records are checked against), ``streams`` (JSON Lines
chunk by chunk, record and per-episode checks), ``parquet`` (Parquet against the JSON Lines), and
here the file set and the entry point.

What is checked: run.json (keys and their order, types, seeds, ``extra.status``/``counts``/
``files``); the file set (rotated parts in order and without gaps, stray or unlisted files);
gzip integrity, sizes, sha256 and row counts against ``extra.files``; every record (keys, JSON
types, ``schema_version``, one ``run_id``, episode ids and seeds, positions in the grid,
distance to the goal, the terminated/truncated flags, rewards and actions against
``extra.env``, observation length); per episode: steps ``1..n`` contiguous and in order, and the
episode record agreeing with its steps (count, sequential float64 reward sum, final position
and distance, flags); Parquet against the JSON Lines value for value (floats bit for bit) and its
key-value metadata.

Everything is streamed: JSON Lines chunk by chunk (``load``), Parquet batch by batch, with the
per-episode state carried across chunk and file boundaries, so memory does not grow with the
run. Decompression, parsing and Parquet decoding run in worker threads (the kernels release the
GIL).

Each problem is one string ``CODE: where: message`` (codes in ``CODES``, warnings in
``WARNING_CODES``); ``where`` is ``run.json``, a file name or ``file:line``. Row-level problems
of one kind are reported once per file with the first line and the number of rows. A run is
``kind == "reference"`` (the reference tool's) when run.json's ``extra`` has none of our keys
(``status``, ``files``, ``counts``, ``engine``, ``policy``); what cannot be checked for it
becomes a warning. For our runs a missing ``extra.status`` means the run is incomplete.
"""
from __future__ import annotations

import gzip
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor

import pyarrow.parquet as pq

from plume_capture import spec as records
from plume_capture.io.jsonl_decode import EPISODE_LAYOUT, STEP_LAYOUT, GzipLines, episode_index, sha256_file
from plume_capture.io.rundir import STAGING_NOTE, is_staging, list_run_files, not_regular, open_regular
from plume_capture.kernels.jsonl_scan import count_lines
from plume_capture.readback.validate.parquet import ParquetSide, ParquetStream
from plume_capture.readback.validate.report import CODES, WARNING_CODES, Report, eid, eid_range
from plume_capture.readback.validate.run_json import Context, EPISODES, STEPS, check_run_json, load_run_json
from plume_capture.readback.validate.streams import (EpisodeState, Joiner, StepState, Stream, check_episodes,
                                                    check_steps)

__all__ = ["CODES", "WARNING_CODES", "format_report", "validate_run_artifacts", "verify_files"]


def _check_files(run_dir, files, ctx: Context, rep: Report):
    for base, name in files.missing_parts:
        rep.error("PART_MISSING", name, f"rotated part of {base} missing (numbering has a gap)")
    for base in (STEPS, EPISODES):
        if not files.jsonl[base]:
            rep.error("FILE_MISSING", records.part_name(base, 0), "no such file")
        elif files.jsonl[base][0] != records.part_name(base, 0):
            rep.error("FILE_MISSING", records.part_name(base, 0),
                      f"no such file, but {files.jsonl[base][0]} exists")
    for name in files.stray:
        path = os.path.join(run_dir, name)
        if "/" in name:  # in a Parquet directory
            rep.error("STRAY_PART", name, "in a Parquet directory but not named part-NNNNN.parquet, "
                      "so no reader of this project loads it (pandas, pyarrow, duckdb would)")
            continue
        what = f"{os.path.getsize(path)} bytes"
        if name.endswith(".gz") and os.path.getsize(path) <= (64 << 20):
            reader = GzipLines(path, max_bytes=_STRAY_TEXT)
            n = sum(count_lines(chunk) for chunk in reader)
            what = f"{'more than ' if reader.problem and reader.problem[0] == 'GZIP_TOO_LARGE' else ''}{n} lines"
        base = STEPS if name.startswith(STEPS + ".") else EPISODES
        m = re.fullmatch(r"(steps|episodes)\.jsonl\.part(\d+)\.gz", name)
        hint = (f"; the reference tool's naming, the part is "
                f"{records.part_name(base, int(m.group(2)))}" if m and int(m.group(2)) else "")
        rep.error("STRAY_PART", name,
                  f"looks like part of {base} but is not named {base}.jsonl.gz or "
                  f"{base}.partNNNN.jsonl.gz, so no reader loads it ({what} not read){hint}")
    for name in files.other:
        if (ctx.files and name in ctx.files) or name == records.MANIFEST_NAME:
            continue
        rep.warn("UNKNOWN_FILE", name, "not part of the run format")
    if ctx.files is not None:
        for name in ctx.files:
            if not os.path.isfile(os.path.join(run_dir, name)):
                is_part = bool(re.match(r"(steps|episodes)\.part\d+\.jsonl\.gz\Z", name))
                rep.error("PART_MISSING" if is_part else "FILE_MISSING", name,
                          "listed in extra.files but missing")
        artifacts = [n for fs in files.jsonl.values() for n in fs] + \
            [n for fs in files.parquet.values() for n in fs]
        for name in artifacts:
            if name not in ctx.files:
                rep.error("FILE_UNLISTED", name, "not listed in extra.files")


_STRAY_TEXT = 256 << 20  # decompressed bytes of a stray part counted at most


def _check_manifest_entry(run_dir, name, ctx: Context, rep: Report, rows: int | None, sha=None,
                          size=None):
    if ctx.files is None or name not in ctx.files:
        return
    ent = ctx.files[name]
    path = os.path.join(run_dir, name)
    if size is None:
        size = os.path.getsize(path)
    if size != ent["bytes"]:
        rep.error("SIZE_MISMATCH", name, f"{size} bytes, extra.files says {ent['bytes']}")
    if sha is None:
        sha = sha256_file(path)
    if sha != ent["sha256"]:
        rep.error("SHA256_MISMATCH", name, f"sha256 {sha[:16]}…, extra.files says "
                  f"{str(ent['sha256'])[:16]}…")
    if rows is not None and rows != ent["rows"]:
        rep.error("ROWS_MISMATCH", name, f"{rows} rows, extra.files says {ent['rows']}")


def _first_record(path):
    """run_id, seed and episode index of the first step record (when run.json gives none)."""
    try:
        with open_regular(path) as raw, gzip.open(raw, "rt", encoding="utf-8") as f:
            rec = json.loads(f.readline(1 << 20))
        return rec.get("run_id"), rec.get("seed"), episode_index(rec.get("episode_id"))
    except (OSError, ValueError, AttributeError, EOFError):
        return None, None, -1


def _fill_from_records(run_dir, files, ctx: Context, rep: Report):
    if (ctx.run_id is not None and ctx.base_seed is not None) or not files.jsonl[STEPS]:
        return
    rid, seed, idx = _first_record(os.path.join(run_dir, files.jsonl[STEPS][0]))
    if ctx.run_id is None and isinstance(rid, str):
        ctx.run_id = rid
        rep.warn("UNCHECKED", "run.json", f"no usable run_id: records are checked against the "
                 f"first record's ({rid!r})")
    if ctx.base_seed is None and type(seed) is int and idx >= 0:
        ctx.base_seed = seed - idx
        rep.warn("UNCHECKED", "run.json", "no usable base_seed: seeds are checked against the "
                 "first record's")


def _check_records(steps: Stream, episodes: Stream, ctx: Context, rep: Report, progress=None):
    """Stream the steps, pulling episode records along as far as the steps have got;
    ``progress(steps, total or None)`` after each batch of steps."""
    total = ctx.counts.get("steps") if isinstance(ctx.counts, dict) else None
    ep_iter = episodes.batches()
    ep_done = False
    sstate, estate = StepState(), EpisodeState()
    joiner = Joiner(rep)

    def pull_episodes(everything: bool):
        nonlocal ep_done
        while not ep_done and (everything or joiner.wants_episodes()):
            try:
                fname, eb = next(ep_iter)
            except StopIteration:
                ep_done = True
                return
            check_episodes(rep, ctx, fname, eb)
            joiner.E.append(estate.run(eb, rep, fname))

    for fname, sb in steps.batches():
        check_steps(rep, ctx, fname, sb)
        joiner.S.append(sstate.run(sb, rep, fname))
        pull_episodes(False)
        joiner.match(final=False)
        if progress is not None:
            progress(sb.nlines, total)
    joiner.S.append(sstate.close())
    pull_episodes(True)
    joiner.match(final=True)

    n_ep = ctx.n_episodes
    for stream, label, last in ((steps, "steps", int(sstate.st[1])),
                                (episodes, "episode records", estate.max_ep)):
        if n_ep is None or not stream.files:
            continue
        if last + 1 < n_ep and not stream.damaged:
            rep.error("EPISODE_MISSING", stream.files[-1], f"no {label} for "
                      f"{eid_range(last + 1, n_ep - 1)} (run.json lists {n_ep} episodes)")
        elif last + 1 > n_ep:
            rep.error("COUNTS_MISMATCH", stream.files[-1],
                      f"{label} go up to {eid(last)}, run.json lists {n_ep} episodes")
    if ctx.counts is not None:
        for key, stream in (("steps", steps), ("episodes", episodes)):
            if ctx.counts[key] != stream.lines:
                rep.error("COUNTS_MISMATCH", "run.json", f"extra.counts.{key} is "
                          f"{ctx.counts[key]}, the files hold {stream.lines} records")


def _check_from_parquet(run_dir, files, ctx, rep, checked) -> dict:
    """``source="parquet"``: every record check on the Parquet records; each JSON Lines file
    checked by its size and sha256 against run.json (the capture wrote both from the same
    records), not parsed."""
    streams = {base: ParquetStream(run_dir, files.parquet[base], layout, ctx, rep)
               for base, layout in ((STEPS, STEP_LAYOUT), (EPISODES, EPISODE_LAYOUT))}
    _check_records(streams[STEPS], streams[EPISODES], ctx, rep)
    for base, stream in streams.items():
        for name, (rows, _, _) in zip(stream.files, stream.file_info):
            checked.append(name)
            _check_manifest_entry(run_dir, name, ctx, rep, rows)
        lines = 0
        for name in files.jsonl[base]:
            checked.append(name)
            ent = (ctx.files or {}).get(name) or {}
            lines += ent.get("rows") or 0
            _check_manifest_entry(run_dir, name, ctx, rep, ent.get("rows"), sha256_file(os.path.join(run_dir, name)))
        if lines != stream.lines:
            rep.error("PARQUET_MISMATCH", base, f"the Parquet files hold {stream.lines} records, run.json "
                      f"lists {lines} in the JSON Lines")
    return {"steps": streams[STEPS].lines, "episodes": streams[EPISODES].lines}


def parquet_source_usable(run_dir) -> bool:
    """Whether ``source="parquet"`` can stand for the full check: a run of ours (run.json lists
    every file with its sha256) with Parquet for both bases."""
    try:
        files = list_run_files(run_dir)
        meta, err = load_run_json(os.path.join(run_dir, "run.json"))
    except OSError:
        return False
    if files.irregular:
        return False
    listed = (meta.get("extra") or {}).get("files") if isinstance(meta, dict) and err is None else None
    return bool(isinstance(listed, dict) and all(files.parquet[b] for b in (STEPS, EPISODES))
                and all(isinstance(listed.get(n), dict) and "sha256" in listed[n]
                        for b in (STEPS, EPISODES) for n in files.jsonl[b]))


def verify_files(run_dir, *, max_errors: int = 1) -> list[str]:
    """The problems (``CODE: where: message``, at most ``max_errors``) of the file set and of each
    file's size and sha256 against run.json's ``extra.files``, no record read: what
    ``source="parquet"`` checks of the JSON Lines, for every file. [] for a run that lists no files
    (the reference tool's); a file that is not a regular file is a problem, never opened."""
    run_dir = os.fspath(run_dir)
    rep, ctx = Report(max_errors), Context()
    files = list_run_files(run_dir)
    for name, what in files.irregular:
        rep.error("FILE_NOT_REGULAR", name, f"is {what}, not a regular file")
    if not files.irregular:
        meta, err = load_run_json(os.path.join(run_dir, "run.json"))
        if err is None and isinstance(meta, dict):
            ctx.meta_ok, ctx.meta = True, meta
            check_run_json(meta, ctx, Report(1))  # fills ctx.files; run.json's own problems are not these
        else:
            rep.error("RUN_JSON_INVALID", "run.json", f"not a JSON object: {err or type(meta).__name__}")
    if ctx.meta_ok and ctx.ours and ctx.files is None:
        rep.error("RUN_JSON_TYPE", "run.json", "extra.files (every file's size and sha256) is missing or malformed")
    elif ctx.files is not None:
        _check_files(run_dir, files, ctx, rep)
        for name in ctx.files:
            if rep.entries:
                break
            if os.path.isfile(os.path.join(run_dir, name)):
                _check_manifest_entry(run_dir, name, ctx, rep, None)
    return rep.error_strings()


# ------------------------------------------------------------------------------------------------
# Entry points


def validate_run_artifacts(run_dir, *, check_parquet: bool = True, max_errors: int = 100,
                           chunk_bytes: int = 4 << 20, source: str = "jsonl", progress=None) -> dict:
    """Validate a run directory (ours or the reference tool's); see the module docstring.

    Returns ``{"run_dir", "ok", "kind", "errors", "warnings", "errors_suppressed", "counts":
    {"steps", "episodes"}, "files_checked", "unchecked"}``; ``ok`` is true when there are no
    errors; ``unchecked`` names what could not be checked (e.g. checksums of a run whose run.json
    has no ``extra.files``), also shown in the report's summary line.
    ``chunk_bytes`` is the JSON Lines text parsed per batch (memory vs. per-batch overhead).
    ``source="parquet"`` (where :func:`parquet_source_usable`) runs the record checks on the
    Parquet records and checks the JSON Lines by size and sha256 against run.json instead of
    parsing them (what ``plume-nav-export`` does: it converts from the Parquet).
    ``progress(steps, total)`` is called as step records are checked (JSON Lines source).
    """
    if source not in ("jsonl", "parquet"):
        raise ValueError(f"source must be 'jsonl' or 'parquet', not {source!r}")
    run_dir = os.fspath(run_dir)
    rep, ctx, checked = Report(max_errors), Context(), []
    counts = {"steps": 0, "episodes": 0}
    if os.path.isdir(run_dir) and is_staging(run_dir):  # whatever its run.json says
        rep.error("RUN_INCOMPLETE", os.path.basename(os.path.normpath(run_dir)), STAGING_NOTE)
    if not os.path.isdir(run_dir):
        rep.error("RUN_DIR_MISSING", run_dir, "not a directory")
    elif not os.path.exists(os.path.join(run_dir, "run.json")):
        rep.error("RUN_JSON_MISSING", "run.json", "no run.json: the run is incomplete or this "
                  "is not a run directory")
    elif not_regular(os.path.join(run_dir, "run.json")):
        pass  # reported with the other files that are not regular files
    else:
        checked.append("run.json")
        meta, err = load_run_json(os.path.join(run_dir, "run.json"))
        if err is not None:
            rep.error("RUN_JSON_INVALID", "run.json", f"not valid JSON: {err}")
        elif not isinstance(meta, dict):
            rep.error("RUN_JSON_INVALID", "run.json", f"not a JSON object ({type(meta).__name__})")
        else:
            ctx.meta_ok, ctx.meta = True, meta
            check_run_json(meta, ctx, rep)
    if os.path.isdir(run_dir):
        counts = _check_run_dir(run_dir, ctx, rep, checked, check_parquet, chunk_bytes, source, progress)
    unchecked = []
    if source == "parquet":
        unchecked.append("JSON Lines records (checked by size and sha256 against run.json, not parsed)")
    if ctx.meta_ok and not ctx.ours:
        unchecked.append("completeness, counts, sizes and checksums (run.json has no extra.status/counts/files)")
    if any(w.startswith("UNCHECKED") for w in rep.warnings):
        unchecked.append("what the UNCHECKED warnings name")
    return {"run_dir": run_dir, "ok": not rep.entries and not rep.suppressed, "kind": ctx.kind,
            "errors": rep.error_strings(), "warnings": rep.warnings,
            "errors_suppressed": rep.suppressed, "counts": counts, "files_checked": checked,
            "unchecked": unchecked}


def _check_run_dir(run_dir, ctx, rep, checked, check_parquet, chunk_bytes, source="jsonl",
                   progress=None) -> dict:
    files = list_run_files(run_dir)
    if files.irregular:  # a FIFO would block the readers, a device feed them forever
        for name, what in files.irregular:
            rep.error("FILE_NOT_REGULAR", name, f"is {what}, not a regular file: nothing in the run was read")
        return {"steps": 0, "episodes": 0}
    _check_files(run_dir, files, ctx, rep)
    _fill_from_records(run_dir, files, ctx, rep)
    if source == "parquet":
        return _check_from_parquet(run_dir, files, ctx, rep, checked)
    pool = ThreadPoolExecutor(max_workers=2)  # parsing; decompression has its own thread
    sides = {}
    try:
        for base, layout in ((STEPS, STEP_LAYOUT), (EPISODES, EPISODE_LAYOUT)):
            names = files.parquet[base]
            if names and check_parquet:
                sides[base] = ParquetSide(run_dir, names, layout, ctx, rep)
            elif names:
                rep.warn("PARQUET_SKIPPED", names[0].split("/")[0], "not compared (check_parquet=False)")
        streams = {base: Stream(run_dir, files.jsonl[base], layout, ctx, rep, sides.get(base),
                                 pool, chunk_bytes)
                   for base, layout in ((STEPS, STEP_LAYOUT), (EPISODES, EPISODE_LAYOUT))}
        _check_records(streams[STEPS], streams[EPISODES], ctx, rep, progress)
        for stream in streams.values():
            for name, (nlines, size, sha) in zip(stream.files, stream.file_info):
                checked.append(name)
                _check_manifest_entry(run_dir, name, ctx, rep, nlines, sha, size)
        for base, stream in streams.items():
            names, side = files.parquet[base], sides.get(base)
            if side is not None:
                side.finish(stream.lines)
            for name in names:
                checked.append(name)
                rows = None
                try:
                    rows = pq.ParquetFile(os.path.join(run_dir, name)).metadata.num_rows
                except Exception:  # noqa: BLE001 - reported by the Parquet side
                    pass
                _check_manifest_entry(run_dir, name, ctx, rep, rows)
        for name in sorted(set(ctx.files or ()) - set(checked)):  # other files listed
            if os.path.isfile(os.path.join(run_dir, name)):
                checked.append(name)
                _check_manifest_entry(run_dir, name, ctx, rep, None)
        return {"steps": streams[STEPS].lines, "episodes": streams[EPISODES].lines}
    finally:
        for side in sides.values():
            side.close()
        pool.shutdown(wait=True)


def _files_summary(names: list[str]) -> str:
    """``run.json; steps.jsonl.gz + 9 parts; steps.parquet/ (10 files); ...``: one entry per artifact."""
    groups: dict[str, list[str]] = {}
    for name in names:
        m = re.fullmatch(r"(\w+)\.part\d+\.jsonl\.gz", name)
        key = name.split("/")[0] + "/" if "/" in name else (f"{m.group(1)}.jsonl.gz" if m else name)
        groups.setdefault(key, []).append(name)
    out = []
    for key, members in groups.items():
        if key.endswith("/"):
            out.append(f"{key} ({len(members)} file{'s' if len(members) != 1 else ''})")
        elif len(members) > 1:
            out.append(f"{key} + {len(members) - 1} part{'s' if len(members) != 2 else ''}")
        else:
            out.append(key)
    return "; ".join(out) or "-"


def format_report(res: dict) -> str:
    """A readable multi-line report of ``validate_run_artifacts``' result."""
    lines = [f"run: {res['run_dir']}",
             f"kind: {res['kind']}   steps: {res['counts']['steps']}   "
             f"episodes: {res['counts']['episodes']}",
             f"files checked: {_files_summary(res['files_checked'])}"]
    n = len(res["errors"]) - (1 if res["errors_suppressed"] else 0) + res["errors_suppressed"]
    nw = len(res["warnings"])
    if res["ok"]:
        not_checked = f"; NOT CHECKED: {'; '.join(res['unchecked'])}" if res.get("unchecked") else ""
        lines.append(f"OK ({nw} warning{'s' if nw != 1 else ''}{not_checked})")
    else:
        lines.append(f"NOT OK: {n} error{'s' if n != 1 else ''}")
    if res["errors"]:
        lines.append("errors:")
        lines += [f"  {e}" for e in res["errors"]]
    if res["warnings"]:
        lines.append("warnings:")
        lines += [f"  {w}" for w in res["warnings"]]
    return "\n".join(lines)
