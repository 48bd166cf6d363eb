"""load_run and the JSON Lines reader underneath it (also used by the validator)."""
from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from plume_capture import spec as records
from plume_capture.io.jsonl_decode import EPISODE_LAYOUT, STEP_LAYOUT, GzipLines, check_line, episode_index, iter_jsonl_batches, parse_fast, parse_slow
from plume_capture.io.rundir import list_run_files
from plume_capture.readback.load import load_run
from runfactory import make_run, read_lines, simulate, write_lines

REFERENCE_RUNS = Path(__file__).resolve().parents[1] / "fixtures" / "reference_runs"


def json_table(paths, schema) -> pa.Table:
    """What plain json + pyarrow make of JSON Lines files (the reference for the fast reader)."""
    rows = [json.loads(line) for p in paths for line in gzip.open(p, "rt")]
    return pa.Table.from_pylist(rows, schema=schema)


def bits(a) -> np.ndarray:
    return np.asarray(a).view(np.uint64)


# ------------------------------------------------------------------------------------------------
# load_run


def test_load_reference_jsonl_run():
    run = load_run(REFERENCE_RUNS / "config_mode_64x64")
    assert run.meta["run_id"] == "run-20261127-102521"
    assert run.steps.schema.equals(records.STEP_SCHEMA)
    assert run.episodes.schema.equals(records.EPISODE_SCHEMA)
    assert run.steps.num_rows == 1250 and run.episodes.num_rows == 5
    assert run.steps.equals(json_table([REFERENCE_RUNS / "config_mode_64x64/steps.jsonl.gz"],
                                       records.STEP_SCHEMA))
    assert run.sources == {"steps": ["steps.jsonl.gz"], "episodes": ["episodes.jsonl.gz"]}


def test_load_reference_parquet_equals_its_jsonl():
    d = REFERENCE_RUNS / "legacy_8x8_parquet"
    from_pq, from_jsonl = load_run(d), load_run(d, prefer="jsonl")
    assert from_pq.sources["steps"] == ["steps.parquet"]
    assert from_jsonl.sources["steps"] == ["steps.jsonl.gz"]
    assert from_pq.steps.equals(from_jsonl.steps)
    assert from_pq.episodes.equals(from_jsonl.episodes)


def test_load_reference_wrongly_named_part_reads_what_readers_see():
    run = load_run(REFERENCE_RUNS / "rotated_parts_named_wrongly", prefer="jsonl")
    assert run.steps.num_rows == 1694


def test_load_good_run_all_parts_in_order(tmp_path):
    d = make_run(tmp_path / "r", episodes=4, steps_per_episode=25, rotate=20)
    names = list_run_files(d).jsonl["steps"]
    assert names == ["steps.jsonl.gz"] + [records.part_name("steps", k) for k in range(1, 5)]
    from_jsonl = load_run(d, prefer="jsonl")
    assert from_jsonl.steps.equals(json_table([Path(d) / n for n in names], records.STEP_SCHEMA))
    from_pq = load_run(d)
    assert from_pq.steps.equals(from_jsonl.steps) and from_pq.episodes.equals(from_jsonl.episodes)
    assert from_pq.steps.schema.metadata[b"run_id"] == from_pq.meta["run_id"].encode()
    steps_df, episodes_df = from_pq.to_pandas()
    assert len(steps_df) == 100 and list(episodes_df["episode_id"]) == [
        records.episode_id(i) for i in range(4)]
    assert steps_df["agent_position"].iloc[0].keys() == {"x", "y"}


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_run(tmp_path / "missing")
    d = Path(make_run(tmp_path / "r", episodes=2, steps_per_episode=5, parquet=False))
    with pytest.raises(ValueError, match="prefer"):
        load_run(d, prefer="csv")
    lines = read_lines(d / "steps.jsonl.gz")
    lines[3] = b'{"step": 1}\n'
    write_lines(d / "steps.jsonl.gz", lines)
    with pytest.raises(ValueError, match=r"steps.jsonl.gz:4: RECORD_KEYS"):
        load_run(d)
    os.remove(d / "episodes.jsonl.gz")
    with pytest.raises(FileNotFoundError, match="episodes.jsonl.gz"):
        load_run(d, prefer="jsonl")


def test_small_chunks_split_at_line_ends(tmp_path):
    d = Path(make_run(tmp_path / "r", episodes=3, steps_per_episode=30, parquet=False))
    path = d / "steps.jsonl.gz"
    whole = gzip.open(path).read()
    chunks = [bytes(c) for c in GzipLines(path, 1000)]
    assert len(chunks) > 10 and b"".join(chunks) == whole
    assert all(c.endswith(b"\n") and len(c) < 2000 for c in chunks)
    firsts, arrow = [], []
    for b, problems in iter_jsonl_batches(path, STEP_LAYOUT, chunk_bytes=1000):
        firsts.append((b.first, b.n))
        arrow.append(b.to_arrow())  # a batch's strings are valid until the next batch
    assert all(f + n == f2 for (f, n), (f2, _) in zip(firsts, firsts[1:])) and firsts[0][0] == 1
    table = pa.Table.from_batches(arrow)
    assert table.equals(json_table([path], records.STEP_SCHEMA))


def test_gzip_problems(tmp_path):
    d = Path(make_run(tmp_path / "r", episodes=2, steps_per_episode=30, parquet=False))
    path = d / "steps.jsonl.gz"
    data = path.read_bytes()
    cases = {
        "trunc": (data[:-9], "GZIP_TRUNCATED"),
        "junk": (data + b"garbage!", "GZIP_CORRUPT"),
        "empty": (b"", "GZIP_TRUNCATED"),
        "unterminated": (gzip.compress(b'{"a": 1}\n{"b": 2}'), "RECORD_JSON"),
    }
    for name, (raw, code) in cases.items():
        p = tmp_path / f"{name}.gz"
        p.write_bytes(raw)
        g = GzipLines(p, 1000)
        text = b"".join(bytes(c) for c in g)
        assert g.problem and g.problem[0] == code, name
        assert g.bytes_read == len(raw)
        assert text.endswith(b"\n") or not text
    assert gzip.decompress(data).startswith(b"".join(bytes(c) for c in GzipLines(
        tmp_path / "trunc.gz", 1000)))


# ------------------------------------------------------------------------------------------------
# The scanner: exact, and never more lenient than json.loads


def _chunk(recs) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in recs).encode()


def test_scanner_matches_json_exactly_for_awkward_floats():
    rng = np.random.default_rng(7)
    steps, _ = simulate(2, 50)
    specials = [0.0, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 0.1, 1e22,
                1e23, 9007199254740993.0, 123456789012345678.0, 1e-7, 3.0e-5, 0.3]
    scale = 10.0 ** rng.integers(-300, 300, 300)
    vals = specials + [float(v) for v in rng.standard_normal(300) * scale]
    vals += [float(np.float32(v)) for v in rng.random(200)]
    recs = []
    for i, v in enumerate(vals):
        r = dict(steps[i % len(steps)])
        r["distance_to_goal"], r["ts"] = abs(v), v
        r["observation_summary"] = [v, -v, 1.0] if i % 3 else []
        recs.append(r)
    chunk = _chunk(recs)
    exp = STEP_LAYOUT.expected({"run_id": recs[0]["run_id"], "schema_version": "0.1"})
    fast = parse_fast(STEP_LAYOUT, chunk, exp)
    slow, problems = parse_slow(STEP_LAYOUT, chunk, 1, {"run_id": recs[0]["run_id"],
                                                        "schema_version": "0.1"})
    assert fast is not None and problems == []
    assert fast.to_arrow().equals(slow.to_arrow())
    for k in fast.cols:
        a, b = fast.cols[k], slow.cols[k]
        assert np.array_equal(bits(a) if a.dtype == np.float64 else a,
                              bits(b) if b.dtype == np.float64 else b), k
    assert np.array_equal(bits(fast.cols["ts"]), bits(np.array(vals)))
    assert fast.cols["run_id"].all() and fast.cols["schema_version"].all()


def test_scanner_number_forms():
    steps, _ = simulate(1, 1)
    base = json.dumps(steps[0])
    forms = {"1": 1.0, "-1": -1.0, "1.5e3": 1500.0, "1E-2": 0.01, "2e+2": 200.0,
             "0.000001": 1e-6, "123456789.123456789": 123456789.123456789,
             "-0.0": -0.0, "-0": 0.0, "1.0000000000000002": 1.0000000000000002}
    for text, want in forms.items():
        line = base.replace('"ts": ' + json.dumps(steps[0]["ts"]), '"ts": ' + text)
        b = parse_fast(STEP_LAYOUT, (line + "\n").encode(), STEP_LAYOUT.expected({}))
        assert b is not None, text
        assert bits(b.cols["ts"])[0] == bits(np.array([want]))[0], text


BAD_LINES = [
    # (edit of a good step line, expected code of the exact path)
    (lambda s: s.replace('"step": 1', '"step": 01'), "RECORD_JSON"),
    (lambda s: s.replace('"step": 1', '"step": 1.0'), "RECORD_TYPE"),
    (lambda s: s.replace('"step": 1', '"step": true'), "RECORD_TYPE"),
    (lambda s: s.replace('"step": 1', '"step": null'), "RECORD_TYPE"),
    (lambda s: s.replace('"step": 1', '"step": 99999999999999999999'), "RECORD_TYPE"),
    (lambda s: s.replace('"step": 1', '"step": +1'), "RECORD_JSON"),
    (lambda s: s.replace('"reward": -0.01', '"reward": -.5'), "RECORD_JSON"),
    (lambda s: s.replace('"reward": -0.01', '"reward": 1.'), "RECORD_JSON"),
    (lambda s: s.replace('"reward": -0.01', '"reward": 1e'), "RECORD_JSON"),
    (lambda s: s.replace('"reward": -0.01', '"reward": NaN'), "RECORD_JSON"),
    (lambda s: s.replace('"reward": -0.01', '"reward": -Infinity'), "RECORD_JSON"),
    (lambda s: s.replace('"reward": -0.01', '"reward": 1e400'), "RECORD_TYPE"),
    (lambda s: s.replace('"reward": -0.01', '"reward": "-0.01"'), "RECORD_TYPE"),
    (lambda s: s.replace('"terminated": false', '"terminated": fals'), "RECORD_JSON"),
    (lambda s: s.replace('"terminated": false', '"terminated": 0'), "RECORD_TYPE"),
    (lambda s: s.replace('"seed": 123', '"seed": 123, "seed": 123'), "RECORD_KEYS"),
    (lambda s: s.replace(', "seed": 123', ''), "RECORD_KEYS"),
    (lambda s: s.replace('"seed": 123', '"seed": 123, "extra": 1'), "RECORD_KEYS"),
    (lambda s: s.replace('{"x": ', '{"z": 0, "x": '), "RECORD_TYPE"),
    (lambda s: s.replace('{"x": ', '{"x": 1, "x": '), "RECORD_KEYS"),
    (lambda s: s.replace('"observation_summary": [', '"observation_summary": [null, '),
     "RECORD_TYPE"),
    (lambda s: s.replace('"observation_summary": [', '"observation_summary": {'), "RECORD_JSON"),
    (lambda s: s + " x", "RECORD_JSON"),
    (lambda s: s[:-1], "RECORD_JSON"),
    (lambda s: "[" + s + "]", "RECORD_JSON"),
    (lambda s: "", "RECORD_JSON"),
    (lambda s: s.replace('"run_id": "', '"run_id": "\x01'), "RECORD_JSON"),
    (lambda s: s.replace('"run_id": "', '"run_id": 5, "x": "'), "RECORD_KEYS"),
]


@pytest.mark.parametrize("edit,code", BAD_LINES, ids=[str(i) for i in range(len(BAD_LINES))])
def test_scanner_rejects_what_json_rejects(edit, code):
    steps, _ = simulate(1, 1, seed=123)
    good = json.dumps(steps[0])
    assert '"step": 1' in good and '"seed": 123' in good and '"terminated": false' in good
    bad = edit(good)
    exp = STEP_LAYOUT.expected({"run_id": steps[0]["run_id"], "schema_version": "0.1"})
    chunk = (good + "\n" + bad + "\n" + good + "\n").encode()
    assert parse_fast(STEP_LAYOUT, chunk, exp) is None
    batch, problems = parse_slow(STEP_LAYOUT, chunk, 10, {})
    assert [(line, c) for line, c, _ in problems] == [(11, code)]
    assert batch.n == 2 and list(batch.lines) == [10, 12]


def test_check_line_messages():
    steps, _ = simulate(1, 1)
    line = json.dumps(steps[0])
    assert check_line(STEP_LAYOUT, line.encode())[0] == steps[0]
    _, code, msg = check_line(STEP_LAYOUT, line.replace('"step": 1', '"step": "1"').encode())
    assert (code, msg) == ("RECORD_TYPE", 'step must be an integer, got "1"')
    _, code, msg = check_line(STEP_LAYOUT, b'{"a": 1}')
    assert code == "RECORD_KEYS" and msg.startswith("missing key(s) action, agent_position")
    assert msg.endswith("unknown key(s) 'a'")


def test_episode_index():
    assert episode_index("ep-000001") == 0 and episode_index("ep-1000000") == 999999
    for bad in ("ep-1", "ep-0000001", "ep-000000", "ep-00001a", "EP-000001", 5, None):
        assert episode_index(bad) == -1
    _, eps = simulate(3, 2)
    b = parse_fast(EPISODE_LAYOUT, _chunk(eps), EPISODE_LAYOUT.expected({}))
    assert list(b.cols["episode_id"]) == [0, 1, 2]


# ------------------------------------------------------------------------------------------------
# Issue 31: load_run opens regular files only and reads no more text than run.json's records hold

from hostile import HOSTILE, run_python  # noqa: E402


@pytest.mark.parametrize("kind,name", [(k, n) for k in sorted(HOSTILE) for n in (
    ["steps.part0001.jsonl.gz"] if "bomb" in k else ["steps.part0001.jsonl.gz", "run.json"])])
@pytest.mark.parametrize("check", [True, False])
def test_load_run_neither_hangs_nor_reads_forever(tmp_path, kind, name, check):
    run = Path(make_run(tmp_path / "run", episodes=4, steps_per_episode=30, rotate=45, parquet=False))
    HOSTILE[kind](run / name)
    code, err, secs = run_python(
        "import sys\nfrom plume_capture.readback.load import load_run\n"
        f"try:\n    load_run({str(run)!r}, check={check})\n"
        "except ValueError as e:\n    print(e, file=sys.stderr); sys.exit(2)\n", deadline=60)
    assert code == 2 and len(err) == 1 and name in err[0], (code, err)
    assert ("decompresses to more than" in err[0]) if "bomb" in kind else ("not a regular file" in err[0])
    assert secs < 15, secs
