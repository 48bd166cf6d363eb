"""A publish stopped between its rename and its commit (SIGKILL, SIGTERM) is finished by the next
call; a Ctrl-C during `git commit` neither loses the commit's files nor kills git. Real
subprocesses, signalled by PID; the stop points come from the test hook
PLUME_NAV_PUBLISH_TEST_STOP (the process stops itself there with SIGSTOP)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from plume_capture.cli.publish import main
from plume_capture.publish.dataset import open_repo, read_index, rebuild_index

from .conftest import dvc, sh


def _publish(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "plume_capture.cli.publish", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _wait_stopped(proc, timeout=120.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()
        with open(f"/proc/{proc.pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "T":
                return
        time.sleep(0.02)
    raise AssertionError("the publish never reached its stop point")


def _assert_committed(repo, run_name):
    rel = f"data/captures/exp/{run_name}"
    assert sh(["git", "status", "--porcelain", "--untracked-files=all"], repo).stdout == ""
    assert f"{rel}.dvc" in sh(["git", "ls-files"], repo).stdout.split()
    assert sh(["git", "log", "-1", "--format=%s"], repo).stdout.strip() == f"publish exp/{run_name}"
    assert json.loads(dvc("status", "--json", cwd=repo).stdout or "{}") == {}
    ds = open_repo(repo)
    assert [e["run_id"] for e in read_index(ds)["runs"]] == [run_name] and \
        read_index(ds) == rebuild_index(ds)
    assert not list((repo / ".dvc" / "tmp").glob("plume-publish-pending-*"))


@pytest.mark.parametrize("point,sig", [("renamed", signal.SIGKILL), ("staged", signal.SIGKILL),
                                       ("renamed", signal.SIGTERM)])
def test_stopped_between_rename_and_commit(repo, two_runs, point, sig):
    run = two_runs[0]
    target = repo / "data/captures/exp" / run.name
    proc = _publish([str(run), "--repo", str(repo)],
                    env={**os.environ, "PLUME_NAV_PUBLISH_TEST_STOP": point})
    _wait_stopped(proc)
    assert (target / "manifest.json").exists()  # renamed into the tree, not committed
    assert sh(["git", "log", "-1", "--format=%s"], repo).stdout.strip() == "init"
    os.kill(proc.pid, sig)
    os.kill(proc.pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=120)
    if sig == signal.SIGTERM:  # rolled back, exit 130
        assert proc.returncode == 130 and err == \
            "plume-nav-publish: interrupted; nothing was published\n"
        assert not target.exists()
        assert sh(["git", "status", "--porcelain", "--untracked-files=all"], repo).stdout == ""
    else:
        assert proc.returncode == -signal.SIGKILL and target.is_dir()
    # The next call finishes (or redoes) it, and --push then pushes what a commit references.
    again = _publish([str(run), "--repo", str(repo), "--push"])
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert f"published: data/captures/exp/{run.name}" in out
    if sig == signal.SIGKILL:
        assert f"finished an interrupted publish: data/captures/exp/{run.name}" in out
    _assert_committed(repo, run.name)
    assert json.loads(dvc("status", "-c", "--json", cwd=repo).stdout or "{}") == {}
    assert main([str(run), "--repo", str(repo)]) == 0  # now a no-op
    assert sh(["git", "log", "--oneline"], repo).stdout.count("publish exp/") == 1


def test_interrupted_publish_of_one_run_is_finished_by_publishing_another(repo, two_runs):
    proc = _publish([str(two_runs[0]), "--repo", str(repo)],
                    env={**os.environ, "PLUME_NAV_PUBLISH_TEST_STOP": "staged"})
    _wait_stopped(proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert main([str(two_runs[1]), "--repo", str(repo)]) == 0
    assert sh(["git", "status", "--porcelain", "--untracked-files=all"], repo).stdout == ""
    tracked = sh(["git", "ls-files"], repo).stdout.split()
    assert all(f"data/captures/exp/{r.name}.dvc" in tracked for r in two_runs)
    assert sh(["git", "log", "--format=%s"], repo).stdout.split("\n")[:2] == \
        [f"publish exp/{two_runs[1].name}", f"publish exp/{two_runs[0].name}"]
    ds = open_repo(repo)
    assert len(read_index(ds)["runs"]) == 2 and read_index(ds) == rebuild_index(ds)


def test_ctrl_c_during_git_commit(repo, two_runs, tmp_path):
    """Ctrl-C (SIGINT to the foreground process group) while `git commit` runs: git is not in
    that group, the commit completes, and the published files stay."""
    mark, go = tmp_path / "in-hook", tmp_path / "go"
    hook = repo / ".git" / "hooks" / "post-commit"  # runs after the commit is made
    hook.write_text(f"#!/bin/sh\necho $$ > '{mark}'\nwhile [ ! -e '{go}' ]; do sleep 0.05; done\n")
    hook.chmod(0o755)
    run = two_runs[0]
    proc = _publish([str(run), "--repo", str(repo)], start_new_session=True)
    end = time.monotonic() + 120
    while not mark.exists():
        assert proc.poll() is None and time.monotonic() < end, proc.communicate()
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    time.sleep(0.3)
    go.touch()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "the update was completed first" in out
    target = repo / "data/captures/exp" / run.name
    assert (target / "run.json").read_bytes() == (run / "run.json").read_bytes()
    _assert_committed(repo, run.name)
    assert not (repo / ".git" / "index.lock").exists()


def test_run_in_tree_unknown_to_git_is_not_taken_as_published(repo, two_runs, capsys):
    """A run directory with a matching manifest but no .dvc in git (what a publish killed after
    its rename leaves, journal or not) is finished, not reported "unchanged"."""
    run = two_runs[0]
    assert main([str(run), "--repo", str(repo), "--no-commit"]) == 0
    sh(["git", "reset", "-q"], repo)  # as if the publish had died before `git add`
    capsys.readouterr()
    assert main([str(run), "--repo", str(repo)]) == 0
    out = capsys.readouterr().out
    assert f"published: data/captures/exp/{run.name}" in out and "unchanged" not in out
    _assert_committed(repo, run.name)


def test_left_over_run_damaged_since_is_rolled_back(repo, two_runs):
    """The journal names the left-over run, but a file of it no longer matches its manifest: the
    next publish removes it and publishes the run afresh."""
    run = two_runs[0]
    proc = _publish([str(run), "--repo", str(repo)],
                    env={**os.environ, "PLUME_NAV_PUBLISH_TEST_STOP": "renamed"})
    _wait_stopped(proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    target = repo / "data/captures/exp" / run.name
    (target / "steps.jsonl.gz").write_bytes(b"damaged while nobody looked")
    again = _publish([str(run), "--repo", str(repo)])
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert f"rolled back an interrupted publish: data/captures/exp/{run.name}" in out
    assert f"published: data/captures/exp/{run.name}" in out
    assert (target / "steps.jsonl.gz").read_bytes() == (run / "steps.jsonl.gz").read_bytes()
    _assert_committed(repo, run.name)


def test_unknown_damaged_run_in_tree_is_refused_not_removed(repo, two_runs, capsys):
    """No journal names it (not known to be ours) and its files do not match its manifest: left
    alone, and publishing that run is refused by name (exit 2)."""
    run = two_runs[0]
    assert main([str(run), "--repo", str(repo), "--no-commit"]) == 0
    sh(["git", "reset", "-q"], repo)
    target = repo / "data/captures/exp" / run.name
    (target / "steps.jsonl.gz").write_bytes(b"someone else's bytes")
    capsys.readouterr()
    assert main([str(run), "--repo", str(repo)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown to git, and its files do not match its manifest" in err
    assert (target / "steps.jsonl.gz").read_bytes() == b"someone else's bytes"
