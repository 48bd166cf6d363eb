"""Faults: an actor's worker process SIGKILLed mid-run (the run completes with the clean run's
records) and crashes inside the finalizer (nothing looks complete; the run can be resumed)."""
from __future__ import annotations

import os
import signal

import pytest

from capture_helpers import assert_same_records, capture_in_thread, complete_runs, config, run_json
from plume_capture.capture import capture
from plume_capture.capture.sink import JOURNAL, MANIFEST

SLOW = dict(episodes=120, seed=21, env={"grid_size": [128, 128], "max_steps": 1000})
SMALL = dict(episodes=30, seed=4, env={"grid_size": [32, 32], "max_steps": 100})


def _own_process(pid: int) -> bool:
    """``pid`` was started by this test session (it carries the session's mark)."""
    import psutil

    from conftest import SESSION_MARK_VAR

    try:
        return psutil.Process(pid).environ().get(SESSION_MARK_VAR) == os.environ[SESSION_MARK_VAR]
    except psutil.Error:
        return False


def _runner_pids() -> list[int]:
    import ray

    return [a["Pid"] for a in ray._private.state.actors().values()
            if a["ActorClassName"] == "RunnerHost" and a["State"] == "ALIVE" and a["Pid"]]


def test_sigkill_actor_mid_run_same_records(tmp_path, ray_session):
    clean = capture(config(output=str(tmp_path / "clean"), parquet=True, engine={"kind": "local"}, **SLOW)).run_dir
    cfg = config(output=str(tmp_path / "faulty"), parquet=True,
                 engine={"kind": "ray", "num_actors": 2, "shard_episodes": 3}, **SLOW)
    th, out, deadline = capture_in_thread(cfg, tmp_path / "faulty" / "default")
    assert th.is_alive(), f"the run ended before an actor could be killed: {out}"
    pids = _runner_pids()
    assert len(pids) == 2, pids
    victim = pids[0]
    assert _own_process(victim)
    os.kill(victim, signal.SIGKILL)
    th.join(timeout=180)
    assert not th.is_alive(), "the run did not finish after the actor was killed"
    assert "error" not in out, out.get("error")
    run_dir = out["result"].run_dir
    meta = run_json(run_dir)
    info = meta["extra"]["engine"]
    assert info["shard_retries"] >= 1, info
    assert info["layout"] == "per_shard" and info["shards_written_by_workers"] == info["shards"] == 40, info
    # whatever the killed worker had half-written is gone: exactly the listed files remain
    on_disk = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file())
    assert on_disk == sorted([*meta["extra"]["files"], "run.json"])
    assert_same_records(clean, run_dir, parquet=True)


class Boom(RuntimeError):
    pass


def _crash_run_json(monkeypatch):
    from plume_capture.capture import run as engine

    real = engine.runmeta.write_json_atomic

    def write(path, doc):
        if path.name == "run.json":
            raise Boom("crash while writing run.json")
        return real(path, doc)

    monkeypatch.setattr(engine.runmeta, "write_json_atomic", write)


def _crash_closing(monkeypatch):
    """Every shard is committed, then closing the run's files fails."""
    from plume_capture.capture.sink import ShardedSink

    def close(self):
        raise Boom("crash closing the files")

    monkeypatch.setattr(ShardedSink, "close", close)


def _crash_publish(monkeypatch):
    """Every file is closed, then the rename fails (run.json is never in the staging directory)."""
    from plume_capture.capture import run as engine

    def publish(staging, run_dir):
        assert not (staging / "run.json").exists()
        raise Boom("crash at the rename")

    monkeypatch.setattr(engine, "publish", publish)


@pytest.mark.parametrize("inject", [_crash_closing, _crash_run_json, _crash_publish],
                         ids=["closing-files", "writing-run-json", "at-publish"])
def test_finalizer_crash_leaves_nothing_complete_and_resumes(tmp_path, monkeypatch, inject):
    clean = capture(config(output=str(tmp_path / "clean"), parquet=True, engine={"kind": "local"}, **SMALL)).run_dir
    cfg = config(output=str(tmp_path / "out"), parquet=True, rotate_size=5000,
                 engine={"kind": "local", "shard_episodes": 4}, **SMALL)
    with monkeypatch.context() as m:
        inject(m)
        with pytest.raises(Boom) as info:
            capture(cfg)
    out = tmp_path / "out" / "default"
    assert complete_runs(tmp_path / "out") == []
    entries = list(out.iterdir())
    assert len(entries) == 1 and entries[0].name.startswith(".") and entries[0].name.endswith(".partial"), entries
    staging = entries[0]
    assert info.value.staging == staging
    assert not staging.with_name(staging.name[1:-len(".partial")]).exists()
    assert (staging / MANIFEST).is_file() and (staging / JOURNAL).is_file()

    from plume_capture.readback.validate import validate_run_artifacts

    assert not validate_run_artifacts(staging)["ok"]

    result = capture(cfg, resume=str(staging))  # the finished shards are kept, the run is published
    assert not staging.exists() and result.run_dir.name == staging.name[1:-len(".partial")]
    meta = run_json(result.run_dir)
    assert meta["extra"]["status"] == "complete" and meta["extra"]["engine"]["resumed_from_shard"] == 8
    assert not (result.run_dir / MANIFEST).exists() and not (result.run_dir / JOURNAL).exists()
    assert validate_run_artifacts(result.run_dir)["ok"]
    assert_same_records(clean, result.run_dir, parquet=True)


def test_power_loss_resume_goes_back_to_the_last_journal_line_on_disk(tmp_path, monkeypatch):
    """Journal lines are flushed per shard but fsynced only every DURABLE_EVERY_S: after a power
    loss a line may survive while the data it describes did not. Resume must take the last line
    whose files hold what it records, and still give the clean run's records."""
    import json

    clean = capture(config(output=str(tmp_path / "clean"), parquet=True, engine={"kind": "local"}, **SMALL)).run_dir
    cfg = config(output=str(tmp_path / "out"), parquet=True, engine={"kind": "local", "shard_episodes": 4}, **SMALL)
    with monkeypatch.context() as m:
        _crash_publish(m)
        with pytest.raises(Boom) as info:
            capture(cfg)
    staging = info.value.staging
    entries = [json.loads(ln) for ln in (staging / JOURNAL).read_text().splitlines()]
    assert len(entries) == 8
    name, size, _, _ = entries[3]["files"][0]  # shard 3's first file: a rename lost, or torn
    os.truncate(staging / name, size - 7)
    (staging / entries[5]["files"][1][0]).unlink()  # and a later one gone
    (staging / ".shards").mkdir(exist_ok=True)
    (staging / ".shards" / "00004-0123456789ab.0.steps").write_bytes(b"\x1f\x8b torn")  # a writer killed mid-file
    (staging / "steps.part0099.jsonl.gz").write_bytes(b"never committed")

    result = capture(cfg, resume=str(staging))
    assert run_json(result.run_dir)["extra"]["engine"]["resumed_from_shard"] == 3
    assert_same_records(clean, result.run_dir, parquet=True)
    assert not (result.run_dir / ".shards").exists() and not (result.run_dir / "steps.part0099.jsonl.gz").exists()
    from plume_capture.readback.validate import validate_run_artifacts

    assert validate_run_artifacts(result.run_dir)["ok"]


def test_fsync_at_most_every_interval_and_every_artifact_before_run_json(tmp_path, monkeypatch):
    """One durable checkpoint for a run shorter than DURABLE_EVERY_S (not one per shard), a
    journal line per shard, and every artifact (written and fsynced by its worker under a
    temporary name) and the directories that got the renames fsynced before run.json is written."""
    import re

    from plume_capture.capture import run as engine, sink as sink_mod

    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    real_write = engine.runmeta.write_json_atomic

    def write_json(path, doc):
        if path.name == "run.json":
            synced.append("<run.json>")
        return real_write(path, doc)

    monkeypatch.setattr(sink_mod, "DURABLE_EVERY_S", 3600.0)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(engine.runmeta, "write_json_atomic", write_json)
    lines = []
    real_journal = sink_mod.ShardedSink._journal

    def journal(self, entry):
        real_journal(self, entry)
        lines.append((self.staging / JOURNAL).read_text().count("\n"))

    monkeypatch.setattr(sink_mod.ShardedSink, "_journal", journal)
    result = capture(config(output=str(tmp_path), parquet=True, rotate_size=5000,
                            engine={"kind": "local", "shard_episodes": 2}, **SMALL))
    assert lines == list(range(1, 16))  # 30 episodes in shards of 2: a line per shard
    assert sum(p.endswith("/" + JOURNAL) for p in synced) == 1, synced
    before = synced[:synced.index("<run.json>")]
    artifacts = list(run_json(result.run_dir)["extra"]["files"])
    written = [p for p in before if re.search(r"/\.shards/\d{5}-[0-9a-f]{12}\.\d+\.", p)]
    assert len(artifacts) > 4 and len(written) == len(artifacts), (artifacts, before)
    staging = str(result.run_dir.with_name("." + result.run_dir.name + ".partial"))
    for d in (staging, staging + "/steps.parquet", staging + "/episodes.parquet"):
        assert d in before, (d, before)


def _one_file_run_stopped_before_its_commit(tmp_path, monkeypatch):
    """A clean run, and a multi-shard run written in the one-file layout (as earlier versions did)
    whose commit crashed: (the clean run's directory, the config, the staging directory)."""
    from plume_capture.capture import run as engine

    clean = capture(config(output=str(tmp_path / "clean"), parquet=True, engine={"kind": "local"}, **SMALL)).run_dir
    cfg = config(output=str(tmp_path / "out"), parquet=True, engine={"kind": "local", "shard_episodes": 4}, **SMALL)
    real_prepare = engine.prepare
    with monkeypatch.context() as m:
        m.setattr(engine, "prepare", lambda spec, **kw: real_prepare(spec, **{**kw, "one_file": True}))
        _crash_publish(m)
        with pytest.raises(Boom) as info:
            capture(cfg)
    return clean, cfg, info.value.staging


def test_a_run_begun_in_the_one_file_layout_resumes_in_it(tmp_path, monkeypatch):
    """A multi-shard run interrupted by an earlier version (one file per artifact, journal lines
    with ``steps_files``) is finished in that layout."""
    import json

    clean, cfg, staging = _one_file_run_stopped_before_its_commit(tmp_path, monkeypatch)
    entries = [json.loads(ln) for ln in (staging / JOURNAL).read_text().splitlines()]
    assert len(entries) == 8 and all("steps_files" in e for e in entries)
    result = capture(cfg, resume=str(staging))
    meta = run_json(result.run_dir)
    assert meta["extra"]["engine"]["layout"] == "one_file" and (result.run_dir / "steps.parquet").is_file()
    assert_same_records(clean, result.run_dir, parquet=True)


# ----------------------------------------------------------------------------- signals around the commit

_SIGNAL_AT = {
    # after run.json is written (old code: in the staging directory)
    "after-run-json": ("runmeta.write_json_atomic", "after", "SIGTERM"),
    # before the bookkeeping is dropped (after the rename)
    "before-dropping-bookkeeping": ("drop_bookkeeping", "before", "SIGINT"),
    # the process killed right after the rename
    "sigkill-after-rename": ("publish", "after", "SIGKILL"),
}


def _capture_signalled_at(tmp_path, where: str):
    """A run in a child process that sends itself a signal (by its own PID) at ``where`` in the commit."""
    import subprocess
    import sys

    target, when, sig = _SIGNAL_AT[where]
    code = f"""
import os, signal, sys
from plume_capture.capture import run as engine
obj, name = (engine.runmeta, "write_json_atomic") if {target!r} == "runmeta.write_json_atomic" else (engine, {target!r})
real = getattr(obj, name)
def hit(*a):
    if {target!r} != "runmeta.write_json_atomic" or a[0].name == "run.json":
        os.kill(os.getpid(), signal.{sig})
def patched(*a, **k):
    if {when!r} == "before":
        hit(*a)
    out = real(*a, **k)
    if {when!r} == "after":
        hit(*a)
    return out
setattr(obj, name, patched)
from plume_capture.cli.capture import main
sys.exit(main(["--episodes", "30", "--seed", "4", "--grid", "32x32", "--max-steps", "100", "--parquet",
               "--engine", "local", "--quiet", "--output", "out", "engine.shard_episodes=4"]))
"""
    env = {k: v for k, v in os.environ.items() if k != "PLUME_CAPTURE_DEBUG"}
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("where", list(_SIGNAL_AT))
def test_a_signal_during_the_commit_never_lies(tmp_path, where):
    """Exit 130 only for a run that is not published; a published run holds no bookkeeping; no
    ``.partial`` ever holds a run.json; a run stopped inside the commit resumes to the clean run."""
    from plume_capture.readback.validate import validate_run_artifacts

    clean = capture(config(output=str(tmp_path / "clean"), parquet=True, engine={"kind": "local"}, **SMALL)).run_dir
    res = _capture_signalled_at(tmp_path, where)
    exp = tmp_path / "out" / "default"
    assert not [p for p in exp.glob(".*.partial") if (p / "run.json").exists()], list(exp.rglob("*"))
    runs = complete_runs(tmp_path / "out")
    if res.returncode == 0:
        (final,) = runs
        names = {p.name for p in final.iterdir()}
        assert not names & {JOURNAL, MANIFEST, "lock", ".probe", ".shards", "run.json.tmp"}, names
    else:
        assert res.returncode in (130, -9), res.stderr
        assert runs == [], "exit 130 (or killed) but a run was published"
        (left,) = list(exp.iterdir())
        from plume_capture.cli.capture import main

        assert main(["--resume", str(left), "--quiet"]) == 0
        (final,) = complete_runs(tmp_path / "out")
        assert not (final / JOURNAL).exists() and not (final / MANIFEST).exists()
    assert validate_run_artifacts(final)["ok"]
    assert_same_records(clean, final, parquet=True)


def _one_file_resume_after_a_flipped_bit(tmp_path, monkeypatch, as_earlier_version: bool) -> None:
    """A one-file run stopped before its commit, a bit flipped inside shard 3's bytes of
    steps.jsonl.gz, then resumed: it goes back to shard 3 and ends with a clean run's records.
    ``as_earlier_version`` strips the journal's sha256s, as versions before them wrote it."""
    import json

    from plume_capture.readback.validate import validate_run_artifacts

    clean, cfg, staging = _one_file_run_stopped_before_its_commit(tmp_path, monkeypatch)
    entries = [json.loads(ln) for ln in (staging / JOURNAL).read_text().splitlines()]
    if as_earlier_version:
        for e in entries:
            for f in e["steps_files"] + e["episodes_files"]:
                del f[3:]
        (staging / JOURNAL).write_text("".join(json.dumps(e) + "\n" for e in entries))
    name, start = entries[2]["steps_files"][0][:2]
    end = entries[3]["steps_files"][0][1]
    data = bytearray((staging / name).read_bytes())
    data[(start + end) // 2] ^= 0x10
    (staging / name).write_bytes(bytes(data))
    result = capture(cfg, resume=str(staging))
    meta = run_json(result.run_dir)
    assert meta["extra"]["engine"]["layout"] == "one_file" and meta["extra"]["engine"]["resumed_from_shard"] == 3
    assert validate_run_artifacts(result.run_dir)["ok"]
    assert_same_records(clean, result.run_dir, parquet=True)


def test_one_file_layout_resume_goes_back_before_a_flipped_bit(tmp_path, monkeypatch):
    """In the one-file layout every journal entry holds the sha256 of each file's first bytes."""
    _one_file_resume_after_a_flipped_bit(tmp_path, monkeypatch, as_earlier_version=False)


def test_an_earlier_versions_journal_without_sha256s_still_catches_a_flipped_bit(tmp_path, monkeypatch):
    """An earlier version's journal lists each part's size and rows but no sha256: the flipped bit
    is caught by the gzip CRC of its member (every kept member is decompressed and its lines
    counted)."""
    _one_file_resume_after_a_flipped_bit(tmp_path, monkeypatch, as_earlier_version=True)


def test_a_resume_that_loses_the_race_to_the_commit_leaves_the_run_alone(tmp_path, monkeypatch):
    """A resume finds a commit half done (renamed, capture.json still there, no run.json yet) and
    the commit finishes just before the resume takes the lock: the resume refuses in one line and
    leaves the published run as it is (it used to rename it back to its hidden staging name)."""
    import json

    from plume_capture.capture import resume
    from plume_capture.capture.lock import RunLock
    from plume_capture.errors import ConfigError
    from plume_capture.readback.validate import validate_run_artifacts

    final = capture(config(output=str(tmp_path / "out"), parquet=True, engine={"kind": "local"}, **SMALL)).run_dir
    before = sorted(str(p.relative_to(final)) for p in final.rglob("*"))
    meta = (final / "run.json").read_bytes()
    (final / "run.json").unlink()  # the commit between its rename and run.json
    (final / MANIFEST).write_text(json.dumps({"run_id": final.name, "config_hash": "0" * 64, "config": {},
                                              "start_time": 0}))

    def commit_finishes_first(staging):
        (final / "run.json").write_bytes(meta)
        (final / MANIFEST).unlink()
        return RunLock(staging)

    monkeypatch.setattr(resume, "RunLock", commit_finishes_first)
    with pytest.raises(ConfigError, match="already complete"):
        resume.resume_run(final)
    assert sorted(str(p.relative_to(final)) for p in final.rglob("*")) == before
    assert [p.name for p in final.parent.iterdir()] == [final.name]
    assert validate_run_artifacts(final)["ok"]
