"""Git SHA and dirty flag: commit, capture, modify a tracked file, capture again, publish both."""
import json

from plume_capture.cli.publish import main
from plume_capture.capture.runmeta import git_state, provenance
from plume_capture.publish.manifest import compact_seeds

from .conftest import sh, small_capture


def test_git_sha_and_dirty_flag(tmp_path, monkeypatch, repo):
    work = tmp_path / "work"
    work.mkdir()
    sh(["git", "init", "-q"], work)
    (work / "analysis.py").write_text("x = 1\n")
    sh(["git", "add", "analysis.py"], work)
    sh(["git", "commit", "-qm", "c1"], work)
    head = sh(["git", "rev-parse", "HEAD"], work).stdout.strip()
    monkeypatch.chdir(work)
    assert provenance()["cwd"] == {"path": str(work.resolve()), "git_sha": head,
                                   "git_dirty": False, "reason": None}
    clean = small_capture(tmp_path / "out", seed=1, episodes=1).run_dir
    (work / "analysis.py").write_text("x = 2\n")
    dirty = small_capture(tmp_path / "out", seed=2, episodes=1).run_dir
    assert provenance()["cwd"]["git_dirty"] is True
    for run, flag in ((clean, False), (dirty, True)):
        assert main([str(run), "--repo", str(repo)]) == 0
        m = json.loads((repo / "data/captures/exp" / run.name / "manifest.json").read_text())
        assert m["code"]["git_sha"] == head and m["code"]["git_dirty"] is flag
        assert m["published"]["code"]["cwd"]["git_dirty"] is True
        assert m["seeds"]["episode_seeds"] == {"first": m["seeds"]["base_seed"], "count": 1,
                                               "rule": "episode i has seed first + i"}
    entries = json.loads((repo / "data/captures/DATASET_INDEX.json").read_text())["runs"]
    assert {e["run_id"]: e["git_dirty"] for e in entries} == {clean.name: False, dirty.name: True}


def test_not_a_checkout_gives_a_reason(tmp_path):
    s = git_state(tmp_path)
    assert s["git_sha"] is None and s["git_dirty"] is None and s["reason"] == "not a git checkout"


def test_compact_seeds():
    assert compact_seeds(5, range(5, 5 + 10**6)) == {"first": 5, "count": 10**6,
                                                     "rule": "episode i has seed first + i"}
    assert compact_seeds(5, [5, 9])["seeds"] == [5, 9]


def test_package_checkout_must_track_the_package(tmp_path):
    (tmp_path / "plume_capture").mkdir()
    (tmp_path / "plume_capture" / "__init__.py").write_text("")
    sh(["git", "init", "-q"], tmp_path)  # e.g. a venv's site-packages inside some repo
    sh(["git", "commit", "-q", "--allow-empty", "-m", "x"], tmp_path)
    s = git_state(tmp_path, must_track="plume_capture/__init__.py")
    assert s["git_sha"] is None and "is not tracked" in s["reason"]
    sh(["git", "add", "plume_capture/__init__.py"], tmp_path)
    sh(["git", "commit", "-qm", "y"], tmp_path)
    s = git_state(tmp_path, must_track="plume_capture/__init__.py")
    assert s["git_sha"] == sh(["git", "rev-parse", "HEAD"], tmp_path).stdout.strip()
    assert s["git_dirty"] is False and s["reason"] is None


def test_capture_records_the_code_that_ran(tmp_path):
    """run.json's extra.code names the checkout the package was imported from (and the working
    directory's), at capture time, not only when the run is published."""
    import json
    import subprocess
    from pathlib import Path

    from plume_capture.capture import capture
    from plume_capture.config import complete_config

    run_dir = capture(complete_config({"output": str(tmp_path), "episodes": 2, "env": {"max_steps": 5},
                                       "engine": {"kind": "local"}})).run_dir
    code = json.loads((run_dir / "run.json").read_text())["extra"]["code"]
    repo = Path(__file__).resolve().parents[2]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    assert code["package"]["path"] == str(repo) and code["package"]["git_sha"] == head
    assert set(code["cwd"]) == {"path", "git_sha", "git_dirty", "reason"}
