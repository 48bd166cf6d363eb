"""Fixtures for the publish tests: real git, real DVC, real captures (tiny), temp dirs."""
import os
import shutil
import subprocess
import sys

import pytest

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}


def sh(args, cwd, check=True) -> subprocess.CompletedProcess:
    p = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env={**os.environ, **GIT_ENV})
    if check and p.returncode != 0:
        raise AssertionError(f"{args} failed: {p.stderr}")
    return p


def dvc(*args, cwd, check=True):
    return sh([sys.executable, "-m", "dvc", *args], cwd, check)


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch):
    for k, v in GIT_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")


def small_capture(output, *, seed=123, episodes=3, max_steps=40, experiment="exp"):
    from plume_capture.capture import capture
    from plume_capture.config import load_config

    cfg = load_config(settings={"output": str(output), "experiment": experiment,
                                "episodes": episodes, "seed": seed, "env.max_steps": max_steps,
                                "engine.kind": "local", "engine.quiet": True, "rotate_size": 1024,
                                "engine.shard_episodes": 1,
                                "parquet": True})
    return capture(cfg)


@pytest.fixture(scope="session")
def two_runs(tmp_path_factory):
    """Two small complete runs (different seeds) of experiment 'exp'; treat as read-only."""
    out = tmp_path_factory.mktemp("runs")
    return [small_capture(out, seed=s).run_dir for s in (123, 999)]


def make_repo(path, remote=None):
    """A git repository with ``dvc init`` done (and a default local remote when given)."""
    path.mkdir(parents=True, exist_ok=True)
    sh(["git", "init", "-q"], path)
    dvc("init", "-q", cwd=path)
    if remote is not None:
        dvc("remote", "add", "-d", "local", str(remote), cwd=path)
    sh(["git", "add", ".dvc"], path)
    sh(["git", "commit", "-qm", "init"], path)
    return path


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "repo", remote=tmp_path / "store")


def copy_run(run_dir, dst_parent):
    dst = dst_parent / run_dir.name
    shutil.copytree(run_dir, dst)
    return dst
