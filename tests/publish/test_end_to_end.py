"""Publish two runs, push, delete cache + data, pull (in place and in a clone): byte-identical,
valid, sha256s as in the manifest, `dvc status -c` clean; concurrent publishes both land."""
import hashlib
import json
import shutil
import subprocess
import sys

from plume_capture.cli.publish import main
from plume_capture.publish.dataset import INDEX_NAME, open_repo, read_index, rebuild_index
from plume_capture.readback.validate import validate_run_artifacts

from .conftest import dvc, make_repo, sh


def _sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _check_against_manifest(run):
    m = json.loads((run / "manifest.json").read_text())
    names = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file() and p.name != "manifest.json")
    assert names == sorted(m["files"])
    for n, ent in m["files"].items():
        assert _sha(run / n) == ent["sha256"] and (run / n).stat().st_size == ent["bytes"]
    assert validate_run_artifacts(run)["ok"]
    return m


def test_publish_push_pull_roundtrip(repo, two_runs, tmp_path, capsys):
    for r in two_runs:
        assert main([str(r), "--repo", str(repo), "--push"]) == 0
    out = capsys.readouterr().out
    assert out.count("published:") == 2 and out.count("pushed:") == 2
    tree = repo / "data" / "captures" / "exp"
    originals = {}
    for r in two_runs:
        run = tree / r.name
        m = _check_against_manifest(run)
        assert m["validation"]["ok"] and m["counts"]["episodes"] == 3
        assert (tree / f"{r.name}.dvc").exists()
        originals[r.name] = {str(p.relative_to(run)): p.read_bytes() for p in run.rglob("*") if p.is_file()}
        for n in originals[r.name]:
            if n != "manifest.json":
                assert originals[r.name][n] == (r / n).read_bytes()
    idx = read_index(open_repo(repo))
    assert [e["run_id"] for e in idx["runs"]] == sorted(r.name for r in two_runs)
    assert sh(["git", "status", "--porcelain"], repo).stdout == ""  # all committed

    # Colleague's clone: git clone + dvc pull of one run, then all.
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    first = two_runs[0].name
    dvc("pull", "-q", f"data/captures/exp/{first}.dvc", cwd=clone)
    assert (clone / "data/captures/exp" / first).is_dir()
    assert not (clone / "data/captures/exp" / two_runs[1].name).exists()
    dvc("pull", "-q", cwd=clone)
    # In place: delete the cache and the data, pull.
    shutil.rmtree(repo / ".dvc" / "cache")
    for r in two_runs:
        shutil.rmtree(tree / r.name)
    dvc("pull", "-q", cwd=repo)
    for root in (repo, clone):
        for r in two_runs:
            run = root / "data/captures/exp" / r.name
            _check_against_manifest(run)
            assert {str(p.relative_to(run)): p.read_bytes() for p in run.rglob("*") if p.is_file()} == originals[r.name]
        st = dvc("status", "-c", "--json", cwd=root)
        assert json.loads(st.stdout or "{}") == {}
    # A historical version: the commit of the first publish has one run in index and tree.
    sh(["git", "checkout", "-q", "HEAD~1"], clone)
    dvc("checkout", "-q", "--relink", cwd=clone)
    idx = json.loads((clone / "data/captures" / INDEX_NAME).read_text())
    assert [e["run_id"] for e in idx["runs"]] == [two_runs[0].name]
    assert (clone / "data/captures/exp" / first).is_dir()


def test_republish_is_a_noop(repo, two_runs, capsys):
    assert main([str(two_runs[0]), "--repo", str(repo)]) == 0
    head = sh(["git", "rev-parse", "HEAD"], repo).stdout
    index = (repo / "data/captures" / INDEX_NAME).read_bytes()
    assert main([str(two_runs[0]), "--repo", str(repo)]) == 0
    assert "unchanged:" in capsys.readouterr().out
    assert sh(["git", "rev-parse", "HEAD"], repo).stdout == head
    assert (repo / "data/captures" / INDEX_NAME).read_bytes() == index


def test_concurrent_publishes_both_land(repo, two_runs):
    procs = [subprocess.Popen([sys.executable, "-m", "plume_capture.cli.publish", str(r),
                               "--repo", str(repo)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in two_runs]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    ds = open_repo(repo)
    idx = read_index(ds)
    assert sorted(e["run_id"] for e in idx["runs"]) == sorted(r.name for r in two_runs)
    assert idx == rebuild_index(ds)
    assert sh(["git", "status", "--porcelain"], repo).stdout == ""
    log = sh(["git", "log", "--oneline"], repo).stdout
    assert log.count("publish exp/") == 2


def test_batch_publish_one_commit(repo, two_runs):
    assert main([str(r) for r in two_runs] + ["--repo", str(repo)]) == 0
    assert sh(["git", "log", "-1", "--format=%s"], repo).stdout.strip() == "publish 2 runs"
    ds = open_repo(repo)
    assert read_index(ds) == rebuild_index(ds) and len(read_index(ds)["runs"]) == 2
    for r in two_runs:
        _check_against_manifest(repo / "data/captures/exp" / r.name)
    index = repo / "data/captures" / INDEX_NAME
    before = index.read_bytes()
    index.write_text('{"index_version": 1, "runs": []}')
    assert main(["--rebuild-index", "--repo", str(repo)]) == 0
    assert index.read_bytes() == before


def test_killed_publish_leftover_is_swept(repo, two_runs):
    from plume_capture.publish.dataset import _HOST, _STAGE_TAG

    dead = subprocess.Popen(["true"])
    dead.wait()
    left = repo / "data/captures/exp" / f".{two_runs[1].name}{_STAGE_TAG}{_HOST}-{dead.pid}"
    left.mkdir(parents=True)
    (left / "steps.jsonl.gz").write_bytes(b"half a copy")
    assert main([str(two_runs[0]), "--repo", str(repo)]) == 0
    assert not left.exists()
    assert sh(["git", "status", "--porcelain"], repo).stdout == ""


def test_concurrent_publishes_of_one_run(repo, two_runs):
    procs = [subprocess.Popen([sys.executable, "-m", "plume_capture.cli.publish", str(two_runs[0]),
                               "--repo", str(repo)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert sorted(o.split(":")[0] for o in outs) == ["published", "unchanged"]
    assert len(read_index(open_repo(repo))["runs"]) == 1
    assert sh(["git", "log", "--oneline"], repo).stdout.count("publish exp/") == 1


def test_git_failure_rolls_back(repo, two_runs, capsys):
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho refused by hook >&2\nexit 1\n")
    hook.chmod(0o755)
    head = sh(["git", "rev-parse", "HEAD"], repo).stdout
    assert main([str(two_runs[0]), "--repo", str(repo)]) == 3
    err = capsys.readouterr().err
    assert err == ("plume-nav-publish: git commit failed: refused by hook; nothing was published, "
                   "the repository is as it was\n")
    assert sh(["git", "rev-parse", "HEAD"], repo).stdout == head
    assert sh(["git", "status", "--porcelain", "--untracked-files=all"], repo).stdout == ""
    assert not (repo / "data").exists()  # not even the empty directories the copy made
    hook.unlink()
    assert main([str(two_runs[0]), "--repo", str(repo)]) == 0  # nothing stale left in the way


def test_pulled_run_is_validated_again(repo, two_runs, tmp_path, capsys):
    """A run carrying a manifest (copied out of a colleague's clone) is validated like any other;
    its manifest is not copied but rewritten."""
    assert main([str(two_runs[0]), "--repo", str(repo)]) == 0
    pulled = tmp_path / "pulled" / two_runs[0].name
    shutil.copytree(repo / "data/captures/exp" / two_runs[0].name, pulled)
    other = make_repo(tmp_path / "other")
    capsys.readouterr()
    assert main([str(pulled), "--repo", str(other)]) == 0
    m = json.loads((other / "data/captures/exp" / pulled.name / "manifest.json").read_text())
    assert "reused_from" not in m["validation"] and m["validation"]["ok"]
    assert m["published"]["source"] == str(pulled)


def test_push_to_an_unwritable_remote_is_exit_3_and_the_commit_stays(two_runs, tmp_path, capsys):
    """DVC failing to push: one line naming the tool, exit 3; the run is committed (say so) and the
    same command pushes once the remote works."""
    repo = make_repo(tmp_path / "repo", remote="/proc/plume-capture-no-remote")
    assert main([str(two_runs[0]), "--repo", str(repo), "--push"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("plume-nav-publish: dvc push failed") and \
        "published and committed, not pushed" in err, err
    assert "/proc/plume-capture-no-remote" in err and "Having any troubles" not in err, err  # DVC's cause
    assert sh(["git", "status", "--porcelain", "--untracked-files=all"], repo).stdout == ""
    assert sh(["git", "rev-list", "--count", "HEAD"], repo).stdout.strip() == "2"  # init + the publish
