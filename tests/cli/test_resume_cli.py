"""The operator's view of reliability (issue 6), with real subprocesses: SIGINT/SIGTERM leave a
resumable, visibly incomplete run (exit 130); ``--resume`` finishes it with a clean run's records
or refuses a changed config (exit 2); 20 runs started together get 20 run directories; experiment
names cannot escape the output root and unicode names are written correctly."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import stop_processes  # noqa: E402
from capture_helpers import assert_same_records, complete_runs, config, jsonl_files, run_json  # noqa: E402

PROG = "plume-nav-capture"
CHILD_MARK = "PLUME_CAPTURE_TEST_CHILD"

# ~300k steps in 300 shards: a signal sent after the third journaled shard lands mid-run.
LONG_ARGS = ["--episodes", "1200", "--max-steps", "250", "--grid", "128x128", "--seed", "77", "--parquet",
             "--rotate-size", "100000", "--quiet", "--output", "out", "engine.shard_episodes=4"]
LONG_CFG = dict(episodes=1200, seed=77, env={"grid_size": [128, 128], "max_steps": 250}, parquet=True)


def _env(mark: str) -> dict:
    env = dict(os.environ)
    env.pop("PLUME_CAPTURE_DEBUG", None)
    env[CHILD_MARK] = mark
    return env


def _cli(args, cwd, mark=None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "plume_capture", *args], cwd=cwd, env=_env(mark or uuid.uuid4().hex),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _run(args, cwd, timeout=240) -> subprocess.CompletedProcess:
    p = _cli(args, cwd)
    out, err = p.communicate(timeout=timeout)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def _children(mark: str):
    import psutil

    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get(CHILD_MARK) == mark:
                found.append(proc)
        except (psutil.Error, OSError):
            pass
    return found


def _assert_no_leftovers(mark: str, wait: float = 60.0) -> None:
    """Every process the CLI started (Ray's included) is gone; stragglers are stopped by PID."""
    deadline = time.monotonic() + wait
    left = _children(mark)
    while left and time.monotonic() < deadline:
        time.sleep(0.25)
        left = _children(mark)
    if left:
        names = [p.name() for p in left]
        stop_processes(left)
        pytest.fail(f"processes left running after the CLI exited: {names}")


def _interrupt_mid_run(tmp_path, sig, extra_args=()):
    """Start the long run, wait for 3 journaled shards, send ``sig``; -> (returncode, stderr, staging)."""
    mark = uuid.uuid4().hex
    proc = _cli([*LONG_ARGS, *extra_args], tmp_path, mark)
    exp = tmp_path / "out" / "default"
    deadline = time.monotonic() + 300  # process start (and Ray) on a loaded 2-core box
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            journals = list(exp.glob(".*.partial/journal.jsonl"))
            if journals and journals[0].read_text().count("\n") >= 3:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"the run ended before it could be interrupted: {proc.communicate()}"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _assert_no_leftovers(mark)
    stagings = [p for p in exp.iterdir() if p.name.endswith(".partial")]
    assert len(stagings) == 1, list(exp.iterdir())
    return proc.returncode, err, stagings[0]


def _check_interrupted(code, err, staging, tmp_path):
    from plume_capture.readback.validate import validate_run_artifacts

    assert code == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "interrupted" in lines[0] and f"--resume {staging.relative_to(tmp_path)}" in lines[0], err
    assert "Traceback" not in err
    assert complete_runs(tmp_path / "out") == []
    assert not staging.with_name(staging.name[1:-len(".partial")]).exists()
    rep = validate_run_artifacts(staging)
    assert not rep["ok"]
    assert len(jsonl_files(staging, "steps")) >= 1


@pytest.fixture(scope="module")
def clean_long(tmp_path_factory):
    """The same run without interruption (in-process, no rotation)."""
    from plume_capture.capture import capture

    out = tmp_path_factory.mktemp("clean")
    return capture(config(output=str(out), engine={"kind": "local"}, **LONG_CFG)).run_dir


def test_sigint_then_resume_same_records(tmp_path, clean_long):
    code, err, staging = _interrupt_mid_run(tmp_path, signal.SIGINT, ["--engine", "local"])
    _check_interrupted(code, err, staging, tmp_path)
    rel = str(staging.relative_to(tmp_path))
    before = {p.name: p.stat().st_size for p in staging.iterdir()}

    # A changed data config is refused: exit 2, one line, the staging directory untouched.
    changed = [a if a != "250" else "249" for a in LONG_ARGS]
    bad = _run(["--resume", rel, *changed], tmp_path)
    assert bad.returncode == 2, bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "config" in bad.stderr and "resume" in bad.stderr
    assert {p.name: p.stat().st_size for p in staging.iterdir()} == before
    # So is a changed rotation (outside the hash, but it shaped the files already written).
    bad = _run(["--resume", rel, *[a if a != "100000" else "200000" for a in LONG_ARGS]], tmp_path)
    assert bad.returncode == 2 and "rotate_size" in bad.stderr, bad.stderr
    assert {p.name: p.stat().st_size for p in staging.iterdir()} == before

    # The same arguments: only the missing shards run, the run is published.
    ok = _run(["--resume", rel, *LONG_ARGS, "--engine", "local"], tmp_path)
    assert ok.returncode == 0, ok.stderr
    final = staging.with_name(staging.name[1:-len(".partial")])
    assert not staging.exists() and final.is_dir()
    meta = run_json(final)
    assert meta["extra"]["status"] == "complete" and meta["extra"]["engine"]["resumed_from_shard"] >= 3
    assert meta["config_hash"] == run_json(clean_long)["config_hash"]
    assert len(jsonl_files(final, "steps")) > 1
    assert_same_records(clean_long, final, parquet=True)
    again = _run(["--resume", str(final.relative_to(tmp_path))], tmp_path)
    assert again.returncode == 2 and "already complete" in again.stderr


def test_sigterm_on_ray_then_resume_without_repeating_the_config(tmp_path, clean_long):
    """SIGTERM behaves like SIGINT (here on the Ray engine: actors and Ray stop too); ``--resume DIR``
    alone takes the stored config; an execution flag (``--engine local``) may still be given."""
    code, err, staging = _interrupt_mid_run(tmp_path, signal.SIGTERM, ["--engine", "ray", "--num-actors", "2"])
    _check_interrupted(code, err, staging, tmp_path)
    rel = str(staging.relative_to(tmp_path))
    ok = _run(["--resume", rel, "--engine", "local"], tmp_path)
    assert ok.returncode == 0, ok.stderr
    final = staging.with_name(staging.name[1:-len(".partial")])
    meta = run_json(final)
    assert meta["extra"]["status"] == "complete" and meta["extra"]["engine"]["kind"] == "local"
    assert meta["extra"]["config"]["engine"]["kind"] == "local"
    assert_same_records(clean_long, final, parquet=True)


def test_twenty_concurrent_runs_get_distinct_directories(tmp_path):
    args = ["--episodes", "2", "--max-steps", "20", "--grid", "16x16", "--engine", "local", "--quiet",
            "--output", "out", "experiment=same"]
    mark = uuid.uuid4().hex
    procs = [_cli(args, tmp_path, mark) for _ in range(20)]
    results = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0] * 20, [r[1] for r in results if r[1]]
    exp = tmp_path / "out" / "same"
    dirs = sorted(exp.iterdir())
    assert len(dirs) == 20 and not [d for d in dirs if d.name.startswith(".")]
    assert len({run_json(d)["run_id"] for d in dirs}) == 20
    assert sorted(complete_runs(tmp_path / "out")) == dirs
    _assert_no_leftovers(mark)


@pytest.mark.parametrize("name", ["../x", "..", "/tmp/abs", "a/b", ".hidden", "a\\b"])
def test_experiment_cannot_escape_output_root(tmp_path, name):
    from plume_capture.capture import capture
    from plume_capture.errors import ConfigError

    root = tmp_path / "root"
    with pytest.raises(ConfigError, match="experiment"):
        capture(config(output=str(root / "out"), experiment=name, episodes=1, env={"max_steps": 5}))
    assert not any(root.rglob("*")) if root.exists() else True
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["root"])


def test_experiment_escape_on_the_command_line(tmp_path):
    res = _run(["--output", "out", "--engine", "local", "experiment=../x"], tmp_path)
    assert res.returncode == 2 and "experiment" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_never_runs_into_an_existing_run(tmp_path, monkeypatch):
    from plume_capture.capture import capture, run as engine
    from plume_capture.errors import CaptureError

    cfg = config(output=str(tmp_path), episodes=1, env={"max_steps": 5}, engine={"kind": "local"})
    first = capture(cfg).run_dir
    before = {p.name: p.read_bytes() for p in first.iterdir()}
    monkeypatch.setattr(engine.runmeta, "new_run_id", lambda now=None: first.name)
    with pytest.raises(CaptureError, match="already exists"):
        capture(cfg)
    assert {p.name: p.read_bytes() for p in first.iterdir()} == before
    assert [p.name for p in first.parent.iterdir()] == [first.name]


def test_unicode_experiment_names(tmp_path):
    name = "ödör-実験"
    for spelling in (["--experiment", name], [f"experiment='{name}'"]):  # Hydra needs quotes for non-ASCII
        out = tmp_path / "out" / spelling[0][:2]
        res = _run(["--output", str(out), "--engine", "local", "--episodes", "2", "--max-steps", "10", "--quiet",
                    *spelling], tmp_path)
        assert res.returncode == 0, res.stderr
        (run,) = (out / name).iterdir()
        raw = (run / "run.json").read_bytes()
        assert json.loads(raw)["experiment"] == name
        assert name.encode("utf-8") in raw  # written as UTF-8, not mangled

    from plume_capture.capture import capture
    from plume_capture.readback.validate import validate_run_artifacts

    odd = 'q"uote 😀 \u2028 end'  # JSON must escape the quote; U+2028 stays valid JSON
    r = capture(config(output=str(tmp_path / "api"), experiment=odd, episodes=2, env={"max_steps": 10},
                       engine={"kind": "local"}))
    assert r.run_dir.parent.name == odd
    meta = json.loads((r.run_dir / "run.json").read_text(encoding="utf-8"))
    assert meta["experiment"] == odd and meta["extra"]["config"]["experiment"] == odd
    assert validate_run_artifacts(r.run_dir)["ok"]


# ----------------------------------------------------------------------------- one writer per run

def _wait_for_shards(proc, exp: Path, shards: int = 3) -> Path:
    deadline = time.monotonic() + 300  # process start (and Ray) on a loaded 2-core box
    while time.monotonic() < deadline and proc.poll() is None:
        journals = list(exp.glob(".*.partial/journal.jsonl"))
        if journals and journals[0].read_text().count("\n") >= shards:
            return journals[0].parent
        time.sleep(0.02)
    pytest.fail(f"the run ended or stalled before {shards} shards: {proc.poll()}")


def _published_and_clean(tmp_path, clean_long):
    from plume_capture.readback.validate import validate_run_artifacts

    (final,) = complete_runs(tmp_path / "out")
    assert validate_run_artifacts(final)["ok"]
    assert_same_records(clean_long, final, parquet=True)
    assert not [p for p in (tmp_path / "out" / "default").iterdir() if p.name.endswith(".partial")]


def test_two_concurrent_resumes_one_writes_the_other_touches_nothing(tmp_path, clean_long):
    code, err, staging = _interrupt_mid_run(tmp_path, signal.SIGINT, ["--engine", "local"])
    assert code == 130, err
    rel = str(staging.relative_to(tmp_path))
    procs = [_cli(["--resume", rel, "--engine", "local", "--quiet"], tmp_path) for _ in range(2)]
    results = [(p.returncode, err) for p in procs for _, err in [p.communicate(timeout=240)]]
    assert sorted(rc for rc, _ in results) == [0, 2], results
    loser = next(err for rc, err in results if rc == 2)
    assert len(loser.strip().splitlines()) == 1
    assert "being written by another process (pid" in loser or "already complete" in loser, loser  # or published first
    _published_and_clean(tmp_path, clean_long)


def test_resume_while_the_original_runs_is_refused(tmp_path, clean_long):
    mark = uuid.uuid4().hex
    proc = _cli([*LONG_ARGS, "--engine", "local"], tmp_path, mark)
    try:
        staging = _wait_for_shards(proc, tmp_path / "out" / "default")
        res = _run(["--resume", str(staging.relative_to(tmp_path)), "--engine", "local"], tmp_path)
        assert res.returncode == 2 and f"(pid {proc.pid})" in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _assert_no_leftovers(mark)
    _published_and_clean(tmp_path, clean_long)


def _sigkilled_long_run(cwd: Path, shards: int = 3) -> tuple[Path, str]:
    """The long run (in-process) SIGKILLed by PID once ``shards`` shards are journaled: (its
    staging directory, the mark of its processes)."""
    mark = uuid.uuid4().hex
    proc = _cli([*LONG_ARGS, "--engine", "local"], cwd, mark)
    try:
        staging = _wait_for_shards(proc, cwd / "out" / "default", shards)
        os.kill(proc.pid, signal.SIGKILL)  # our own child, by PID
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return staging, mark


def test_a_sigkilled_holder_releases_the_lock(tmp_path, clean_long):
    staging, _ = _sigkilled_long_run(tmp_path)
    assert (staging / "lock").is_file()  # left behind, but no longer held
    ok = _run(["--resume", str(staging.relative_to(tmp_path)), "--engine", "local", "--quiet"], tmp_path)
    assert ok.returncode == 0, ok.stderr
    _published_and_clean(tmp_path, clean_long)
    (final,) = complete_runs(tmp_path / "out")
    assert not (final / "lock").exists()


def test_an_interrupted_sweep_names_every_incomplete_point_and_each_resumes(tmp_path):
    from plume_capture.readback.validate import validate_run_artifacts

    mark = uuid.uuid4().hex
    args = ["--episodes", "2400", "--max-steps", "250", "--grid", "128x128", "--quiet", "--output", "out",
            "--engine", "local", "engine.shard_episodes=4", "-m", "seed=77,78,79"]
    proc = _cli(args, tmp_path, mark)
    try:
        _wait_for_shards(proc, tmp_path / "out" / "default")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _assert_no_leftovers(mark)
    assert proc.returncode == 130, err
    stagings = sorted(p for p in (tmp_path / "out" / "default").iterdir() if p.name.endswith(".partial"))
    # How many points were still running depends on the machine's load; every one is named.
    assert len(stagings) >= 1 and len(err.strip().splitlines()) == 1
    assert all(str(s.relative_to(tmp_path)) in err for s in stagings), err
    assert (f"{len(stagings)} incomplete runs" in err) if len(stagings) > 1 else ("the incomplete run is in" in err)
    for s in stagings:
        ok = _run(["--resume", str(s.relative_to(tmp_path)), "--quiet"], tmp_path)
        assert ok.returncode == 0, ok.stderr
    runs = complete_runs(tmp_path / "out")
    assert len(runs) == 3 and all(validate_run_artifacts(r)["ok"] for r in runs)
    assert sorted(run_json(r)["base_seed"] for r in runs) == [77, 78, 79]


# ----------------------------------------------------------------------------- what resume keeps (issue 31)

@pytest.fixture(scope="module")
def killed_late(tmp_path_factory) -> Path:
    """The long run (in-process), SIGKILLed by PID after 200 of its 300 shards: its staging dir
    (each test works on its own copy, see ``_copy``)."""
    staging, mark = _sigkilled_long_run(tmp_path_factory.mktemp("killed"), 200)
    _assert_no_leftovers(mark)
    return staging


def _copy(staging: Path, cwd: Path) -> Path:
    """A copy of the interrupted run at the same relative place under ``cwd``."""
    import shutil

    copy = cwd / "out" / "default" / staging.name
    shutil.copytree(staging, copy, symlinks=True)
    return copy


def _journal(staging: Path) -> list[dict]:
    return [json.loads(ln) for ln in (staging / "journal.jsonl").read_bytes().split(b"\n")[:-1]]


def _flip_bit(path: Path, offset: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def _edit_entry(staging: Path, index: int, edit) -> None:
    lines = (staging / "journal.jsonl").read_bytes().split(b"\n")
    e = json.loads(lines[index])
    edit(e)
    lines[index] = json.dumps(e).encode()
    (staging / "journal.jsonl").write_bytes(b"\n".join(lines))


def _first(e, kind):  # an entry's first file of a kind: "steps" (JSON Lines), "steps.parquet", ...
    return next(f for f in e["files"]
                if f[0].startswith(kind + "/") or f[0].startswith(kind + ".") and f[0].endswith(".jsonl.gz"))


def _damage_jsonl_bit(staging, e):
    name, size, *_ = _first(e, "steps")
    _flip_bit(staging / name, size // 2, 3)


def _damage_parquet_bit(staging, e):
    name, size, *_ = _first(e, "steps.parquet")
    _flip_bit(staging / name, size // 2, 5)


def _damage_zero_block(staging, e):  # what a file system can leave after a crash
    name, size, *_ = _first(e, "steps")
    start = 4096 if size >= 8192 else 0  # a 4 KiB block (or all of a smaller file)
    with open(staging / name, "r+b") as f:
        f.seek(start)
        f.write(b"\0" * min(4096, size - start))


def _damage_sha(staging, e):
    _edit_entry(staging, e["shard"], lambda x: x["files"][0].__setitem__(3, "0" * 64))


def _damage_rows(staging, e):
    _edit_entry(staging, e["shard"], lambda x: x["files"][0].__setitem__(2, x["files"][0][2] + 1))


def _damage_steps(staging, e):
    _edit_entry(staging, e["shard"], lambda x: x.__setitem__("steps", x["steps"] + 1))


@pytest.mark.parametrize("damage", [_damage_jsonl_bit, _damage_parquet_bit, _damage_zero_block, _damage_sha,
                                    _damage_rows, _damage_steps],
                         ids=["jsonl-bit-flip", "parquet-bit-flip", "zeroed-4k-block", "journal-sha256",
                              "journal-rows", "journal-steps"])
def test_damage_while_interrupted_goes_back_to_the_last_good_shard(tmp_path, clean_long, killed_late, damage):
    """Damage to a committed shard (or to its journal line) while the run sits interrupted: resume
    keeps only the shards before it, runs the rest again, and publishes the clean run's records."""
    from plume_capture.readback.validate import validate_run_artifacts

    staging = _copy(killed_late, tmp_path)
    entries = _journal(staging)
    assert len(entries) >= 200
    k = len(entries) - 3
    damage(staging, entries[k])
    ok = _run(["--resume", str(staging.relative_to(tmp_path)), "--quiet"], tmp_path)
    assert ok.returncode == 0, ok.stderr
    (final,) = complete_runs(tmp_path / "out")
    assert run_json(final)["extra"]["engine"]["resumed_from_shard"] == k
    assert validate_run_artifacts(final)["ok"]
    assert_same_records(clean_long, final, parquet=True)


def test_a_bit_flipped_in_any_digit_of_the_last_journal_line_is_never_published_damaged(tmp_path, clean_long,
                                                                                       killed_late):
    """A single-bit flip in a digit of the last journal line (a digit stays a digit): its shard
    index, steps, a size or a sha256, each on its own copy of one interrupted run. Resume either
    refuses in one line, touching nothing, or publishes the clean run's records."""
    from plume_capture.readback.validate import validate_run_artifacts

    staging = killed_late
    lines = (staging / "journal.jsonl").read_bytes().split(b"\n")
    last = len(lines) - 2  # the last whole line
    offset = len(b"\n".join(lines[:last])) + 1
    line = lines[last]
    digits = [i for i, c in enumerate(line) if 0x30 <= c <= 0x39]
    size_at = line.index(b'.jsonl.gz", ') + 12
    steps_at = line.index(b'"steps": ') + 9
    picks = {"shard": line.index(b'"shard": ') + 9,  # a wrong index, or a leading 0 (not JSON)
             "steps": line.index(b",", steps_at) - 1,  # last digits: a leading 0 would not be JSON
             "a size": line.index(b",", size_at) - 1, "a sha256": digits[-1]}
    outcomes = {}
    for k, (what, i) in enumerate(picks.items()):
        assert 0x30 <= line[i] <= 0x39, (what, line[i:i + 5])
        cwd = tmp_path / f"flip{k}"
        copy = _copy(staging, cwd)
        _flip_bit(copy / "journal.jsonl", offset + i, 0)
        snapshot = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file() and p.name != "lock"}
        res = _run(["--resume", str(copy.relative_to(cwd)), "--quiet"], cwd)
        outcomes[what] = res.returncode
        if res.returncode == 0:
            (final,) = complete_runs(cwd / "out")
            assert validate_run_artifacts(final)["ok"], what
            assert_same_records(clean_long, final, parquet=True)
            continue
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, (what, res.stderr)
        assert complete_runs(cwd / "out") == []
        assert {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file() and p.name != "lock"} == snapshot
    # the index of a shard is the journal's structure (refused); a count or a hash goes back a shard
    assert outcomes == {"shard": 2, "steps": 0, "a size": 0, "a sha256": 0}, outcomes


def _halve_shards(manifest):
    manifest["shard_episodes"] //= 2
    return "shard_episodes 2 is not the run's shard plan (4)"


def _flip_run_id(manifest):  # one bit of its last hex digit: every record written holds the old one
    rid = manifest["run_id"]
    manifest["run_id"] = rid[:-1] + chr(ord(rid[-1]) ^ 1)
    return f"names run {manifest['run_id']!r}, not {rid}"


@pytest.mark.parametrize("edit", [_halve_shards, _flip_run_id], ids=["shard-size-halved", "run-id-bit-flip"])
def test_capture_json_damage_is_refused(tmp_path, killed_late, edit):
    staging = _copy(killed_late, tmp_path)
    manifest = json.loads((staging / "capture.json").read_text())
    said = edit(manifest)
    (staging / "capture.json").write_text(json.dumps(manifest))
    before = {p.name: p.read_bytes() for p in staging.iterdir() if p.is_file() and p.name != "lock"}
    res = _run(["--resume", str(staging.relative_to(tmp_path)), "--quiet"], tmp_path)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert said in res.stderr, res.stderr
    assert {p.name: p.read_bytes() for p in staging.iterdir() if p.is_file() and p.name != "lock"} == before
    assert complete_runs(tmp_path / "out") == []


def test_a_directory_that_is_not_the_run_of_its_capture_json_is_never_renamed(tmp_path, killed_late):
    """``--resume mine/`` where ``mine`` holds some run's capture.json (not ``.partial``, no
    run.json: what a commit stopped after its rename looks like): one line, exit 2, and ``mine``
    keeps its name and its files, with no lock file added (it used to be renamed ``.mine.partial``
    and left so)."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "capture.json").write_bytes((killed_late / "capture.json").read_bytes())
    (mine / "notes.txt").write_text("mine")
    res = _run(["--resume", "mine", "--quiet"], tmp_path)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "not mine" in res.stderr, res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    assert sorted(p.name for p in mine.iterdir()) == ["capture.json", "notes.txt"]


@pytest.mark.parametrize("where", ["steps.backup", "steps.parquet/part-09999.parquet", "lock"])
def test_resume_never_deletes_through_a_symlink(tmp_path, killed_late, where):
    """A symlink in the staging directory (to a directory, a file, or in place of the lock) is
    refused in one line; nothing it points to is touched, and the run stays as it was."""
    staging = _copy(killed_late, tmp_path)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "a.txt").write_text("keep me")
    (precious / "steps.part0042.jsonl.gz").write_bytes(b"also mine")
    target = precious if where == "steps.backup" else precious / "a.txt"
    (staging / where).unlink(missing_ok=True)
    (staging / where).symlink_to(target)
    before = sorted(str(p.relative_to(staging)) for p in staging.rglob("*"))
    res = _run(["--resume", str(staging.relative_to(tmp_path)), "--quiet"], tmp_path)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "symbolic link" in res.stderr and where.split("/")[0] in res.stderr, res.stderr
    assert (precious / "a.txt").read_text() == "keep me" and (precious / "steps.part0042.jsonl.gz").exists()
    assert sorted(str(p.relative_to(staging)) for p in staging.rglob("*")) == before


@pytest.mark.parametrize("name,make", [
    ("journal.jsonl", "fifo"), ("journal.jsonl", "devzero"), ("lock", "fifo"), ("lock", "dir")])
def test_bookkeeping_that_is_not_a_regular_file_is_refused_in_one_line(tmp_path, killed_late, name, make):
    """The journal or the lock replaced by a FIFO (reading it blocked forever), a
    symlink to /dev/zero (read until the OOM killer came) or a directory (an internal error):
    one line, exit 2, in seconds, and the run stays as it was."""
    staging = _copy(killed_late, tmp_path)
    (staging / name).unlink()
    if make == "fifo":
        os.mkfifo(staging / name)
    elif make == "dir":
        (staging / name).mkdir()
    else:
        (staging / name).symlink_to("/dev/zero")
    before = sorted(str(p.relative_to(staging)) for p in staging.rglob("*"))
    # the old code read /dev/zero into memory: a cap on the child's memory keeps the machine safe
    limit = "import resource; resource.setrlimit(resource.RLIMIT_DATA, (6 << 30, 6 << 30)); "
    proc = subprocess.Popen([sys.executable, "-c", limit + "import runpy; runpy.run_module('plume_capture', "
                             "run_name='__main__')", "--resume", str(staging.relative_to(tmp_path)), "--quiet"],
                            cwd=tmp_path, env=_env(uuid.uuid4().hex), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 2 and len(err.strip().splitlines()) == 1, err
    assert name in err and "Traceback" not in err, err
    assert sorted(str(p.relative_to(staging)) for p in staging.rglob("*")) == before
    assert complete_runs(tmp_path / "out") == []


def test_an_unknown_name_in_the_staging_directory_is_refused_not_deleted(tmp_path, killed_late):
    staging = _copy(killed_late, tmp_path)
    (staging / "notes.txt").write_text("mine")
    (staging / "steps.old").mkdir()
    res = _run(["--resume", str(staging.relative_to(tmp_path)), "--quiet"], tmp_path)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "notes.txt" in res.stderr or "steps.old" in res.stderr, res.stderr
    assert (staging / "notes.txt").read_text() == "mine" and (staging / "steps.old").is_dir()


def test_a_rotate_size_that_would_need_more_than_10000_files_is_refused_up_front(tmp_path):
    """rotate_size=1 on a 3M-step run used to fail at run time, leaving a .partial that no resume
    could finish (rotate_size cannot change on resume). Now: exit 2 before anything is written,
    naming the smallest rotate_size that works, which the check then accepts."""
    import re

    from plume_capture.capture.run import prepare
    from plume_capture.config import resolve

    args = ["--episodes", "3000", "--max-steps", "1000", "--grid", "64x64", "--engine", "local", "--quiet",
            "--output", "out"]
    res = _run([*args, "rotate_size=1"], tmp_path, timeout=120)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    m = re.search(r"use rotate_size >= ([\d,]+) bytes", res.stderr)
    assert m and "more than 10,000 JSON Lines files" in res.stderr, res.stderr
    assert not (tmp_path / "out").exists()
    least = int(m.group(1).replace(",", ""))
    cfg = config(output=str(tmp_path / "out"), episodes=3000, env={"grid_size": [64, 64], "max_steps": 1000})
    prepare(resolve({**cfg, "rotate_size": least}))  # accepted
    with pytest.raises(Exception, match="rotate_size"):
        prepare(resolve({**cfg, "rotate_size": least - 1}))
