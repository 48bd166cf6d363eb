"""validate_run_artifacts and plume-nav-validate: reference runs, a good run, and a table of
damage kinds each detected with its own error code (issue 5)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from plume_capture import spec as records
from plume_capture.cli.validate import main
from plume_capture.readback.validate import CODES, WARNING_CODES, validate_run_artifacts
from hostile import HOSTILE, fifo, gzip_bomb, run_cli
from runfactory import (make_run, read_lines, read_meta, refresh_manifest, write_lines,
                        write_meta, write_parquet)

REFERENCE_RUNS = Path(__file__).resolve().parents[1] / "fixtures" / "reference_runs"


def codes(res) -> set:
    return {e.split(":", 1)[0] for e in res["errors"]}


def wcodes(res) -> set:
    return {w.split(":", 1)[0] for w in res["warnings"]}


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    """5 episodes, steps rotated into 5 files of 45 records (episodes span parts), Parquet."""
    return make_run(tmp_path_factory.mktemp("good") / "run", episodes=5, steps_per_episode=40,
                    rotate=45)


@pytest.fixture
def run(good_run, tmp_path):
    """A fresh copy of the good run to damage."""
    return Path(shutil.copytree(good_run, tmp_path / "run"))


# ------------------------------------------------------------------------------------------------
# Reference runs


def test_reference_config_mode_passes_with_warnings():
    res = validate_run_artifacts(REFERENCE_RUNS / "config_mode_64x64")
    assert res["ok"], res["errors"]
    assert res["kind"] == "reference"
    assert res["counts"] == {"steps": 1250, "episodes": 5}
    assert "REFERENCE_RUN" in wcodes(res)


def test_reference_legacy_parquet_passes_and_parquet_is_compared():
    res = validate_run_artifacts(REFERENCE_RUNS / "legacy_8x8_parquet")
    assert res["ok"], res["errors"]
    assert {"steps.parquet", "episodes.parquet"} <= set(res["files_checked"])
    assert any(w.startswith("UNCHECKED: steps.parquet") for w in res["warnings"])


def test_reference_wrongly_named_part_is_reported():
    res = validate_run_artifacts(REFERENCE_RUNS / "rotated_parts_named_wrongly")
    assert not res["ok"]
    stray = [e for e in res["errors"] if e.startswith("STRAY_PART: steps.jsonl.part1.gz:")]
    assert stray and "806 lines not read" in stray[0] and "steps.part0001.jsonl.gz" in stray[0]
    # What the readers see lacks the stray rows: episode 4 is cut short, episode 5 has no steps.
    assert any(e.startswith("EPISODE_MISMATCH") and "ep-000004" in e for e in res["errors"])
    assert any(e.startswith("EPISODE_MISSING") and "ep-000005" in e for e in res["errors"])


def test_reference_part_renamed_is_whole(tmp_path):
    run = Path(shutil.copytree(REFERENCE_RUNS / "rotated_parts_named_wrongly", tmp_path / "r"))
    os.chmod(run, 0o755)
    os.rename(run / "steps.jsonl.part1.gz", run / "steps.part0001.jsonl.gz")
    res = validate_run_artifacts(run, check_parquet=False)
    assert res["ok"], res["errors"]
    assert res["counts"]["steps"] == 2500
    # The reference's steps.parquet holds only the rows of the first file.
    res = validate_run_artifacts(run)
    assert codes(res) == {"PARQUET_MISMATCH"}


# ------------------------------------------------------------------------------------------------
# Good runs


def test_good_run_is_ok(good_run):
    res = validate_run_artifacts(good_run)
    assert res["ok"] and res["errors"] == [] and res["warnings"] == []
    assert res["kind"] == "plume-capture"
    assert res["counts"] == {"steps": 200, "episodes": 5}
    assert res["files_checked"] == (
        ["run.json", "steps.jsonl.gz"] + [records.part_name("steps", k) for k in range(1, 5)]
        + ["episodes.jsonl.gz", "steps.parquet", "episodes.parquet"])


def test_good_run_tiny_chunks(good_run):
    """State carried across many chunk boundaries gives the same verdict."""
    res = validate_run_artifacts(good_run, chunk_bytes=700)
    assert res["ok"], res["errors"]


@pytest.mark.parametrize("kw", [dict(rotate=None, parquet=False), dict(rotate=1, parquet=True),
                                dict(episodes=1, steps_per_episode=1),
                                dict(episodes=30, steps_per_episode=3, goal_radius=30.0)])
def test_other_good_runs(tmp_path, kw):
    res = validate_run_artifacts(make_run(tmp_path / "r", **kw))
    assert res["ok"], res["errors"]


def test_key_order_and_whitespace_are_free(run):
    for name in ("steps.jsonl.gz", "episodes.jsonl.gz"):
        lines = []
        for i, line in enumerate(read_lines(run / name)):
            rec = json.loads(line)
            if i % 2:
                rec = dict(sorted(rec.items(), reverse=True))
                lines.append((json.dumps(rec, separators=(",", ":")) + "\n").encode())
            else:
                lines.append((" " + json.dumps(rec, indent=None, separators=(" , ", " : "))
                              + " \r\n").encode())
        write_lines(run / name, lines)
    refresh_manifest(run)
    res = validate_run_artifacts(run)
    assert res["ok"], res["errors"]


def test_valid_but_unusual_json_goes_through_the_exact_path(run):
    """String escapes and long number forms are valid JSON; the scanner declines, json accepts."""
    lines = read_lines(run / "steps.jsonl.gz")
    rec = json.loads(lines[3])
    text = json.dumps(rec).replace('"run_id": "run-', '"run_id": "\\u0072un-')
    text = text.replace(f'"step": {rec["step"]}', f'"step": {rec["step"]}')
    lines[3] = (text + "\n").encode()
    lines[4] = lines[4].replace(b'"reward": -0.01', b'"reward": -1.000000000000000000000e-2')
    write_lines(run / "steps.jsonl.gz", lines)
    refresh_manifest(run)
    res = validate_run_artifacts(run)
    assert res["ok"], res["errors"]


# ------------------------------------------------------------------------------------------------
# The corruption table: each kind of damage, on a fresh copy of the good run, is detected with
# its own code. "refresh" rewrites extra.files so that sizes/checksums cannot be what catches it.


def _edit_line(path, index, fn):
    lines = read_lines(path)
    lines[index] = fn(lines[index])
    write_lines(path, lines)


def _edit_record(path, index, fn):
    def edit(line):
        rec = json.loads(line)
        fn(rec)
        return (json.dumps(rec) + "\n").encode()
    _edit_line(path, index, edit)


def _edit_meta(run, fn):
    meta = read_meta(run)
    fn(meta)
    write_meta(run, meta)


def truncate_gzip(run):
    p = run / "steps.part0002.jsonl.gz"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 25])


def flip_byte_in_member(run):
    p = run / "steps.part0001.jsonl.gz"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x55
    p.write_bytes(bytes(data))


def remove_middle_part(run):
    os.remove(run / "steps.part0002.jsonl.gz")


def remove_last_part(run):
    os.remove(run / "steps.part0004.jsonl.gz")


def drop_line(run):
    p = run / "steps.part0001.jsonl.gz"
    lines = read_lines(p)
    del lines[10]
    write_lines(p, lines)


def duplicate_line(run):
    p = run / "steps.part0001.jsonl.gz"
    lines = read_lines(p)
    lines.insert(10, lines[10])
    write_lines(p, lines)


def swap_lines_across_episodes(run):
    # steps.jsonl.gz holds ep-000001 (lines 0..39) and the start of ep-000002.
    p = run / "steps.jsonl.gz"
    lines = read_lines(p)
    lines[20], lines[42] = lines[42], lines[20]
    write_lines(p, lines)


def wrong_run_id(run):
    _edit_record(run / "steps.part0003.jsonl.gz", 5, lambda r: r.update(run_id="run-x"))


def wrong_schema_version(run):
    _edit_record(run / "steps.jsonl.gz", 7, lambda r: r.update(schema_version="0.2"))


def missing_key(run):
    _edit_record(run / "steps.jsonl.gz", 7, lambda r: r.pop("distance_to_goal"))


def wrong_type(run):
    _edit_record(run / "steps.jsonl.gz", 7, lambda r: r.update(step=str(r["step"])))


def step_not_contiguous(run):
    _edit_record(run / "steps.jsonl.gz", 7, lambda r: r.update(step=3))


def episode_total_steps(run):
    _edit_record(run / "episodes.jsonl.gz", 2, lambda r: r.update(total_steps=r["total_steps"] - 1))


def episode_total_reward(run):
    _edit_record(run / "episodes.jsonl.gz", 2,
                 lambda r: r.update(total_reward=r["total_reward"] + 1e-12))


def episode_record_missing(run):
    p = run / "episodes.jsonl.gz"
    lines = read_lines(p)
    del lines[2]
    write_lines(p, lines)


def episode_seeds(run):
    _edit_meta(run, lambda m: m["episode_seeds"].__setitem__(3, 999))


def step_seed(run):
    _edit_record(run / "steps.part0002.jsonl.gz", 3, lambda r: r.update(seed=r["seed"] + 1))


def sha256_mismatch(run):
    # Same content, different bytes: the gzip header's MTIME field.
    p = run / "episodes.jsonl.gz"
    data = bytearray(p.read_bytes())
    data[4] ^= 0x01
    p.write_bytes(bytes(data))


def size_mismatch(run):
    _edit_meta(run, lambda m: m["extra"]["files"]["steps.jsonl.gz"].update(
        bytes=m["extra"]["files"]["steps.jsonl.gz"]["bytes"] + 1))


def rows_mismatch(run):
    _edit_meta(run, lambda m: m["extra"]["files"]["steps.part0001.jsonl.gz"].update(rows=44))


def counts_mismatch(run):
    _edit_meta(run, lambda m: m["extra"]["counts"].update(steps=199))


def parquet_differs(run):
    t = pq.read_table(run / "steps.parquet")
    rows = t.to_pylist()
    rows[77]["reward"] = -0.02
    write_parquet(run / "steps.parquet", rows, records.STEP_SCHEMA,
                  config_hash=read_meta(run)["config_hash"])


def parquet_metadata(run):
    t = pq.read_table(run / "episodes.parquet")
    write_parquet(run / "episodes.parquet", t.to_pylist(), records.EPISODE_SCHEMA,
                  run_id="run-20990101-000000-zzz", config_hash=read_meta(run)["config_hash"])


def parquet_schema(run):
    t = pq.read_table(run / "episodes.parquet").drop_columns(["duration_ms"])
    pq.write_table(t, run / "episodes.parquet")


def run_json_missing(run):
    os.remove(run / "run.json")


def run_json_invalid(run):
    (run / "run.json").write_text('{"run_id": "run-20260101-120000-abc123", ')


def run_json_not_complete(run):
    _edit_meta(run, lambda m: m["extra"].update(status="running"))


def run_json_no_status(run):
    _edit_meta(run, lambda m: m["extra"].pop("status"))


def run_json_unknown_key(run):
    _edit_meta(run, lambda m: m.update(notes="x"))


def run_json_bad_type(run):
    _edit_meta(run, lambda m: m.update(base_seed="123"))


def stray_part(run):
    shutil.copy(run / "steps.part0001.jsonl.gz", run / "steps.jsonl.part1.gz")


def nan_token(run):
    _edit_line(run / "steps.jsonl.gz", 9,
               lambda line: line.replace(b'"ts": ', b'"ts": NaN, "x_ts": '))


def position_outside_grid(run):
    _edit_record(run / "steps.jsonl.gz", 9, lambda r: r["agent_position"].update(x=16))


def distance_wrong(run):
    _edit_record(run / "steps.jsonl.gz", 9,
                 lambda r: r.update(distance_to_goal=r["distance_to_goal"] + 0.5))


def step_after_end(run):
    p = run / "steps.part0004.jsonl.gz"
    lines = read_lines(p)
    rec = json.loads(lines[-1])
    rec.update(step=rec["step"] + 1, truncated=False)
    lines.append((json.dumps(rec) + "\n").encode())
    write_lines(p, lines)


def malformed_episode_id(run):
    _edit_record(run / "steps.jsonl.gz", 9, lambda r: r.update(episode_id="episode-1"))


def parquet_corrupt(run):
    (run / "steps.parquet").write_bytes(b"PAR1 this is not parquet PAR1")


def file_unlisted(run):
    _edit_meta(run, lambda m: m["extra"]["files"].pop("episodes.parquet"))


def steps_file_missing(run):
    os.remove(run / "steps.jsonl.gz")


def rendering_enabled(run):
    _edit_meta(run, lambda m: m["env_config"].update(enable_rendering=True))


def observation_length(run):
    _edit_record(run / "steps.part0001.jsonl.gz", 3,
                 lambda r: r["observation_summary"].append(0.5))


def observation_range(run):
    _edit_record(run / "steps.part0001.jsonl.gz", 3,
                 lambda r: r.update(observation_summary=[1.5]))


def reward_wrong(run):
    _edit_record(run / "steps.part0001.jsonl.gz", 3, lambda r: r.update(reward=0.0))


def action_out_of_space(run):
    _edit_record(run / "steps.part0001.jsonl.gz", 3, lambda r: r.update(action=4))


def terminated_flag_wrong(run):
    _edit_record(run / "steps.part0001.jsonl.gz", 3, lambda r: r.update(terminated=True))


def part_is_a_fifo(run):
    fifo(run / "steps.part0002.jsonl.gz")


def part_is_a_gzip_bomb(run):
    gzip_bomb(run / "steps.part0002.jsonl.gz", total=64 << 20)


def avg_step_time_wrong(run):
    _edit_record(run / "episodes.jsonl.gz", 1,
                 lambda r: r.update(avg_step_time_ms=r["avg_step_time_ms"] * 2))


DAMAGE = [
    # (damage, refresh extra.files afterwards, expected code)
    (truncate_gzip, False, "GZIP_TRUNCATED"),
    (flip_byte_in_member, False, "GZIP_CORRUPT"),
    (remove_middle_part, True, "PART_MISSING"),
    (remove_last_part, False, "PART_MISSING"),
    (drop_line, True, "STEP_GAP"),
    (duplicate_line, True, "DUPLICATE"),
    (swap_lines_across_episodes, True, "EPISODE_ORDER"),
    (wrong_run_id, True, "RUN_ID_MISMATCH"),
    (wrong_schema_version, True, "SCHEMA_VERSION"),
    (missing_key, True, "RECORD_KEYS"),
    (wrong_type, True, "RECORD_TYPE"),
    (step_not_contiguous, True, "STEP_SEQUENCE"),
    (episode_total_steps, True, "EPISODE_MISMATCH"),
    (episode_total_reward, True, "EPISODE_MISMATCH"),
    (episode_record_missing, True, "EPISODE_MISSING"),
    (episode_seeds, False, "SEEDS_MISMATCH"),
    (step_seed, True, "SEED_MISMATCH"),
    (sha256_mismatch, False, "SHA256_MISMATCH"),
    (size_mismatch, False, "SIZE_MISMATCH"),
    (rows_mismatch, False, "ROWS_MISMATCH"),
    (counts_mismatch, False, "COUNTS_MISMATCH"),
    (parquet_differs, True, "PARQUET_MISMATCH"),
    (parquet_metadata, True, "PARQUET_METADATA"),
    (parquet_schema, True, "PARQUET_SCHEMA"),
    (run_json_missing, False, "RUN_JSON_MISSING"),
    (run_json_invalid, False, "RUN_JSON_INVALID"),
    (run_json_not_complete, False, "RUN_INCOMPLETE"),
    (run_json_no_status, False, "RUN_INCOMPLETE"),
    (run_json_unknown_key, False, "RUN_JSON_KEYS"),
    (run_json_bad_type, False, "RUN_JSON_TYPE"),
    (stray_part, True, "STRAY_PART"),
    (nan_token, True, "RECORD_JSON"),
    (position_outside_grid, True, "POSITION_RANGE"),
    (distance_wrong, True, "DISTANCE_MISMATCH"),
    (step_after_end, True, "STEP_AFTER_END"),
    (malformed_episode_id, True, "EPISODE_ID"),
    (parquet_corrupt, False, "PARQUET_CORRUPT"),
    (file_unlisted, False, "FILE_UNLISTED"),
    (steps_file_missing, False, "FILE_MISSING"),
    (rendering_enabled, False, "RUN_JSON_VALUE"),
    (observation_length, True, "OBS_SHAPE"),
    (observation_range, True, "OBS_VALUE"),
    (reward_wrong, True, "REWARD_MISMATCH"),
    (action_out_of_space, True, "ACTION_RANGE"),
    (terminated_flag_wrong, True, "FLAG_MISMATCH"),
    (avg_step_time_wrong, True, "RECORD_VALUE"),
    (part_is_a_fifo, False, "FILE_NOT_REGULAR"),
    (part_is_a_gzip_bomb, False, "GZIP_TOO_LARGE"),
]


@pytest.mark.parametrize("damage,refresh,code", DAMAGE, ids=[d[0].__name__ for d in DAMAGE])
def test_damage_is_detected(run, damage, refresh, code):
    damage(run)
    if refresh:
        refresh_manifest(run)
    res = validate_run_artifacts(run)
    assert not res["ok"]
    assert code in codes(res), res["errors"]
    assert all(e.split(":", 1)[0] in CODES for e in res["errors"])
    assert all(w.split(":", 1)[0] in WARNING_CODES for w in res["warnings"])
    if refresh:  # not caught by the manifest
        assert not codes(res) & {"SHA256_MISMATCH", "SIZE_MISMATCH", "ROWS_MISMATCH"}


def test_a_published_runs_manifest_is_not_an_unknown_file(run):
    (run / "manifest.json").write_text("{}")
    (run / "notes.txt").write_text("hello")
    res = validate_run_artifacts(run)
    assert res["ok"] and res["warnings"] == ["UNKNOWN_FILE: notes.txt: not part of the run format"]


def test_human_report_summarises_the_files_checked(tmp_path):
    from plume_capture.capture import capture
    from plume_capture.config import complete_config
    from plume_capture.readback.validate import format_report

    cfg = complete_config(dict(output=str(tmp_path), episodes=12, seed=2, parquet=True,
                               env={"grid_size": [16, 16], "max_steps": 30},
                               engine={"kind": "local", "shard_episodes": 3}))
    res = validate_run_artifacts(capture(cfg).run_dir)
    assert res["ok"] and len(res["files_checked"]) == 1 + 4 * 4
    lines = format_report(res).splitlines()
    assert lines[2] == ("files checked: run.json; steps.jsonl.gz + 3 parts; episodes.jsonl.gz + 3 parts; "
                        "steps.parquet/ (4 files); episodes.parquet/ (4 files)")
    assert max(map(len, lines)) < 200


def test_damage_table_covers_many_codes():
    covered = {code for _, _, code in DAMAGE}
    assert len(covered) >= 40
    # Every error code but these is produced by some damage above.
    assert set(CODES) - covered == {"RUN_DIR_MISSING", "ERRORS_SUPPRESSED", "FILE_UNREADABLE"}


def test_unknown_file_is_a_warning(run):
    (run / "notes.txt").write_text("hello")
    res = validate_run_artifacts(run)
    assert res["ok"] and res["warnings"] == ["UNKNOWN_FILE: notes.txt: not part of the run format"]
    refresh_manifest(run)  # listed: no warning, and its checksum is checked
    assert validate_run_artifacts(run)["warnings"] == []
    (run / "notes.txt").write_text("hellO")
    res = validate_run_artifacts(run)
    assert [e.split(":")[0] for e in res["errors"]] == ["SHA256_MISMATCH"]


def test_damage_is_detected_across_tiny_chunks(run):
    step_not_contiguous(run)
    refresh_manifest(run)
    small = validate_run_artifacts(run, chunk_bytes=500)
    big = validate_run_artifacts(run)
    assert small["errors"] == big["errors"]


# ------------------------------------------------------------------------------------------------
# Where, how many, and the cap


def test_errors_name_file_line_episode_and_step(run):
    drop_line(run)
    refresh_manifest(run)
    res = validate_run_artifacts(run)
    gap = next(e for e in res["errors"] if e.startswith("STEP_GAP"))
    # Line 11 of part 1 (record 56: ep-000001 has 40 steps) held step 16 of ep-000002.
    assert gap == ("STEP_GAP: steps.part0001.jsonl.gz:11: ep-000002 step 17 follows step 15 "
                   "(step 16 missing)")
    mism = next(e for e in res["errors"] if e.startswith("EPISODE_MISMATCH"))
    assert mism.startswith("EPISODE_MISMATCH: episodes.jsonl.gz:2: ep-000002: total_steps 40 "
                           "but 39 step records")


def test_gzip_damage_message(run):
    truncate_gzip(run)
    res = validate_run_artifacts(run)
    err = next(e for e in res["errors"] if e.startswith("GZIP_TRUNCATED"))
    assert err.startswith("GZIP_TRUNCATED: steps.part0002.jsonl.gz: ")
    assert "complete lines before it" in err


def test_row_errors_are_counted_once_per_file(run):
    p = run / "steps.part0001.jsonl.gz"
    lines = [line.replace(b'"run_id": "run-', b'"run_id": "xrun-') for line in read_lines(p)]
    write_lines(p, lines)
    refresh_manifest(run)
    res = validate_run_artifacts(run)
    rid = [e for e in res["errors"] if e.startswith("RUN_ID_MISMATCH")]
    assert rid == ["RUN_ID_MISMATCH: steps.part0001.jsonl.gz:1: run_id "
                   "'xrun-20260101-120000-abc123', run.json has 'run-20260101-120000-abc123' "
                   "(45 rows in this file)"]


def test_max_errors_caps_and_counts_the_rest(run):
    for i in range(5):
        _edit_record(run / "episodes.jsonl.gz", i, lambda r: r.update(total_reward=5.0))
    refresh_manifest(run)
    res = validate_run_artifacts(run, max_errors=2, check_parquet=False)
    assert not res["ok"]
    assert [e.split(":")[0] for e in res["errors"]] == ["EPISODE_MISMATCH"] * 2 + [
        "ERRORS_SUPPRESSED"]
    assert res["errors_suppressed"] == 3


def test_bad_lines_are_named_and_the_rest_still_checked(run):
    p = run / "steps.jsonl.gz"
    lines = read_lines(p)
    lines[4] = b'{"broken": \n'
    lines[5] = b"\n"
    lines[30] = lines[30].replace(b'"run_id": "run-', b'"run_id": "bad-')
    write_lines(p, lines)
    refresh_manifest(run)
    errs = validate_run_artifacts(run)["errors"]
    assert any(e.startswith("RECORD_JSON: steps.jsonl.gz:5: invalid JSON") for e in errs)
    assert any(e.startswith("RECORD_JSON: steps.jsonl.gz:6: blank line") for e in errs)
    assert any(e.startswith("RUN_ID_MISMATCH: steps.jsonl.gz:31:") for e in errs)


def test_long_episode_seeds_list(run):
    """A run.json above 4 MB has its episode_seeds parsed by numpy; a wrong one is still found."""
    from plume_capture.readback.validate.run_json import load_run_json
    meta = read_meta(run)
    n = 700_000
    meta["episode_seeds"] = list(range(123, 123 + n))
    meta["episode_seeds"][n - 2] = 7
    write_meta(run, meta)
    assert os.path.getsize(run / "run.json") > 4 << 20
    obj, err = load_run_json(run / "run.json")
    assert err is None and obj["episode_seeds"].dtype.kind == "i" and len(obj["episode_seeds"]) == n
    res = validate_run_artifacts(run)
    assert any(e.startswith(f"SEEDS_MISMATCH: run.json: episode_seeds[{n - 2}] is 7") for e in
               res["errors"])


def test_missing_run_dir():
    res = validate_run_artifacts("/nonexistent/run")
    assert not res["ok"] and codes(res) == {"RUN_DIR_MISSING"}


# ------------------------------------------------------------------------------------------------
# CLI


def test_cli_exit_codes(good_run, run, tmp_path, capsys):
    assert main([str(good_run)]) == 0
    out = capsys.readouterr().out
    assert "OK (0 warnings)" in out and "steps: 200" in out
    run_json_not_complete(run)
    assert main([str(run)]) == 1
    out = capsys.readouterr().out
    assert "NOT OK: 1 error\n" in out and "RUN_INCOMPLETE: run.json: " in out
    assert main([str(tmp_path / "nope")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert main([]) == 2
    assert main([str(good_run), "--bogus"]) == 2


def test_cli_json(good_run, capsys):
    assert main([str(good_run), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["ok"] is True and res["counts"]["episodes"] == 5


def test_cli_replay_before_the_run_dir_and_a_closed_pipe(tmp_path):
    import subprocess
    import sys

    from plume_capture.capture import capture
    from capture_helpers import config

    run_dir = capture(config(output=str(tmp_path), episodes=3, seed=1, env={"grid_size": [16, 16], "max_steps": 40},
                             engine={"kind": "local"})).run_dir
    ok = subprocess.run([sys.executable, "-m", "plume_capture.cli.validate", "--replay", str(run_dir)],
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0 and "replay (policy): 3 episodes" in ok.stdout, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "plume_capture.cli.validate", str(run_dir), "--replay", "x"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--replay K" in bad.stderr
    # The reader goes away before anything is written (as `| head -1` does after one line).
    proc = subprocess.Popen([sys.executable, "-m", "plume_capture.cli.validate", "--json", str(run_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 0 and err == "", err


def test_a_byte_order_mark_in_run_json_is_an_error(tmp_path):
    d = make_run(tmp_path / "r", episodes=2, steps_per_episode=5)
    path = os.path.join(d, "run.json")
    raw = open(path, "rb").read()
    open(path, "wb").write(b"\xef\xbb\xbf" + raw)
    res = validate_run_artifacts(d)
    assert not res["ok"] and any(e.startswith("RUN_JSON_INVALID") and "byte order mark" in e for e in res["errors"])


def test_an_episode_removed_everywhere_disagrees_with_the_config_that_ran(tmp_path):
    from plume_capture.capture import capture
    from capture_helpers import config

    run_dir = capture(config(output=str(tmp_path), episodes=6, seed=1, env={"grid_size": [16, 16], "max_steps": 40},
                             engine={"kind": "local"})).run_dir
    # Drop the last episode consistently: its steps, its episode record, its seed and the counts.
    steps = [ln for ln in read_lines(run_dir / "steps.jsonl.gz") if b'"ep-000006"' not in ln]
    episodes = read_lines(run_dir / "episodes.jsonl.gz")[:-1]
    write_lines(run_dir / "steps.jsonl.gz", steps)
    write_lines(run_dir / "episodes.jsonl.gz", episodes)
    meta = read_meta(run_dir)
    meta["episode_seeds"] = meta["episode_seeds"][:-1]
    meta["extra"]["counts"] = {"steps": len(steps), "episodes": 5}
    write_meta(run_dir, meta)
    refresh_manifest(run_dir)
    res = validate_run_artifacts(run_dir)
    assert not res["ok"], res
    assert any("extra.config.episodes is 6 but episode_seeds lists 5" in e for e in res["errors"]), res["errors"]


def test_what_could_not_be_checked_is_in_the_summary(tmp_path):
    from plume_capture.readback.validate import format_report

    d = make_run(tmp_path / "r", episodes=2, steps_per_episode=5)
    meta = read_meta(d)
    meta["extra"] = {}
    write_meta(d, meta)
    lines = read_lines(os.path.join(d, "steps.jsonl.gz"))
    rec = json.loads(lines[0])
    rec["action"] = (rec["action"] + 1) % 3  # a changed action nothing else records
    lines[0] = (json.dumps(rec, separators=(",", ":")) + "\n").encode()
    write_lines(os.path.join(d, "steps.jsonl.gz"), lines)
    os.remove(os.path.join(d, "steps.parquet"))
    os.remove(os.path.join(d, "episodes.parquet"))
    res = validate_run_artifacts(d)
    summary = format_report(res).splitlines()[3]
    assert res["unchecked"] and "NOT CHECKED" in summary and "checksums" in summary, summary


def test_parquet_source_only_where_it_can_stand_for_the_full_check(tmp_path):
    """``source="parquet"`` needs Parquet for both bases and run.json's sha256 of every JSON Lines
    file: the reference tool's runs (no extra.files) and runs without Parquet are validated in full;
    on a good run of ours both sources agree."""
    from plume_capture.capture import capture
    from plume_capture.config import complete_config
    from plume_capture.readback.validate import parquet_source_usable

    for run in sorted(p for p in REFERENCE_RUNS.iterdir() if p.is_dir()):
        assert not parquet_source_usable(run), run
    for parquet in (False, True):
        cfg = complete_config({"output": str(tmp_path / str(parquet)), "episodes": 9, "seed": 2, "parquet": parquet,
                               "env": {"grid_size": [16, 16], "max_steps": 30}, "engine": {"kind": "local", "shard_episodes": 4}})
        run = capture(cfg).run_dir
        assert parquet_source_usable(run) is parquet
        if parquet:
            full, fast = validate_run_artifacts(run), validate_run_artifacts(run, source="parquet")
            assert full["ok"] and fast["ok"] and full["counts"] == fast["counts"]
            assert set(fast["files_checked"]) == set(full["files_checked"])


# ------------------------------------------------------------------------------------------------
# Issue 31: readers open regular files only and read no more text than run.json's records can hold



@pytest.mark.parametrize("kind,name", [(k, n) for k in sorted(HOSTILE) for n in (
    ["steps.part0002.jsonl.gz"] if "bomb" in k else ["steps.part0002.jsonl.gz", "run.json", "steps.parquet"])])
def test_cli_neither_hangs_nor_reads_forever(run, kind, name):
    HOSTILE[kind](run / name)
    code, err, secs = run_cli("plume_capture.cli.validate", run, deadline=60)
    if "bomb" in kind:  # read (bounded): a damaged part of an invalid run
        assert code == 1 and secs < 20, (code, err, secs)
    else:  # nothing of the run read: refused in one line
        assert code == 2 and len(err) == 1 and "FILE_NOT_REGULAR" in err[0] and name in err[0], err
        assert ("a FIFO" if kind == "fifo" else "a character device") in err[0]


@pytest.mark.parametrize("unit", [b"\0", b"\n"], ids=["zeros", "newlines"])
def test_a_gzip_bomb_stops_at_what_run_json_lists(run, unit):
    gzip_bomb(run / "steps.part0002.jsonl.gz", unit)
    res = validate_run_artifacts(run, max_errors=5)
    from plume_capture.io.rundir import jsonl_text_limit

    bomb = next(e for e in res["errors"] if e.startswith("GZIP_TOO_LARGE"))
    limit = jsonl_text_limit(read_meta(run), "steps.part0002.jsonl.gz")
    assert bomb.startswith(f"GZIP_TOO_LARGE: steps.part0002.jsonl.gz: decompresses to more than {limit} bytes")
    assert limit < (1 << 20)  # 45 listed records of at most ~1.2 KB, and the margin


def test_a_stray_bomb_is_counted_no_further_than_a_bound(run):
    gzip_bomb(run / "steps.jsonl.part9.gz", b"\n")
    res = validate_run_artifacts(run)
    stray = next(e for e in res["errors"] if e.startswith("STRAY_PART"))
    assert "more than" in stray and "lines not read" in stray


@pytest.mark.parametrize("edit", [
    lambda m: m["extra"]["env"].update(sigma=3.5),
    lambda m: m["env_config"]["plume_params"].update(sigma=3.5),
    lambda m: m["env_config"]["plume_params"].pop("sigma"),
    lambda m: m["extra"]["env"].update(goal_location=[0, 0]),
    lambda m: m["extra"]["env"].update(source_location=[0, 0]),
    lambda m: m["env_config"]["plume_params"].update(source_location=[0, 0]),
], ids=["env.sigma", "plume_params.sigma", "plume_params.sigma missing", "env.goal_location",
        "env.source_location", "plume_params.source_location"])
def test_every_setting_stated_twice_is_cross_checked(run, edit):
    _edit_meta(run, edit)
    res = validate_run_artifacts(run)
    assert codes(res) == {"RUN_JSON_VALUE"}, res["errors"]
    assert "differs from" in res["errors"][0] or "one is missing" in res["errors"][0]


def test_a_reader_thread_slow_to_exit_does_not_end_the_next_file(good_run, monkeypatch):
    """The thread that decompresses a file may still be alive when its last chunk has been taken
    (a loaded machine): that file is done, and the next one (the buffer pool is shared) is read,
    not ended with an internal ``_Closed`` (seen once in seven validations under load)."""
    import threading
    import time

    from plume_capture.readback.validate import streams

    class Lingering(threading.Thread):
        def run(self):
            super().run()
            time.sleep(0.2)  # what a descheduled thread does between its last put and its exit

    monkeypatch.setattr(streams.threading, "Thread", Lingering)
    assert len([n for n in os.listdir(good_run) if n.startswith("steps")]) > 2
    res = validate_run_artifacts(good_run)
    assert res["ok"], res["errors"]
