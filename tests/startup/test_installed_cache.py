"""The Numba cache of a non-editable install lives outside the package (which may be a read-only
site-packages): the second run loads every kernel from it, and nothing is written next to the code."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from plume_capture.kernels._jit import cache_dir

REPO = Path(__file__).resolve().parents[2]
RUN = "import sys; from plume_capture.cli.capture import main; sys.exit(main())"


def _env(home: Path, target: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_CACHE_DIR", "PLUME_CAPTURE_CACHE", "XDG_CACHE_HOME", "NUMBA_DISABLE_JIT")}
    return {**env, "HOME": str(home), "PYTHONPATH": str(target), "PYTHONDONTWRITEBYTECODE": "1",
            "NUMBA_DEBUG_CACHE": "1"}


def _files(root: Path) -> set:
    return {p.relative_to(root) for p in root.rglob("*")}


@pytest.mark.slow
def test_read_only_install_caches_in_home(tmp_path):
    target, home = tmp_path / "site", tmp_path / "home"
    home.mkdir()
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(REPO)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    for p in [target, *target.rglob("*")]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    before = _files(target)
    try:
        # Not tiny (20 x 1000 max steps), so the kernels are compiled, then loaded from the cache.
        args = [sys.executable, "-c", RUN, "--output", str(tmp_path / "out"), "--episodes", "20", "--grid", "16x16",
                "--quiet"]
        probe = subprocess.run([sys.executable, "-c", "import plume_capture; print(plume_capture.__file__)"],
                               env=_env(home, target), capture_output=True, text=True, cwd=tmp_path)
        assert probe.stdout.startswith(str(target)), probe.stdout + probe.stderr
        first = subprocess.run(args, env=_env(home, target), capture_output=True, text=True, timeout=600,
                                cwd=tmp_path)
        second = subprocess.run(args, env=_env(home, target), capture_output=True, text=True, timeout=600,
                                cwd=tmp_path)
    finally:
        for p in [target, *target.rglob("*")]:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
    assert first.returncode == 0 and second.returncode == 0, first.stderr[-2000:] + second.stderr[-2000:]
    assert "compiling kernels once" in first.stderr
    assert "data saved to" in first.stdout + first.stderr
    assert str(home / ".cache" / "plume_capture") in first.stdout + first.stderr
    out2 = second.stdout + second.stderr
    assert "data loaded from" in out2 and "data saved to" not in out2 and "compiling kernels once" not in out2
    assert _files(target) == before


def test_unusable_cache_location_falls_back_to_temp(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("PLUME_CAPTURE_CACHE", str(blocker / "cache"))
    path = cache_dir("0.0")
    assert not path.startswith(str(blocker)) and os.path.isdir(path) and os.access(path, os.W_OK)
