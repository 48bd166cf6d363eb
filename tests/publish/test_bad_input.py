"""Bad input: one line on stderr, exit 2, nothing published or half-published."""
import gzip
import json

import pytest

from plume_capture.cli.publish import main

from .conftest import copy_run, dvc, make_repo, sh


def _snapshot(repo):
    files = sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*")
                   if ".git" not in p.relative_to(repo).parts
                   and p.relative_to(repo).parts[:2] != (".dvc", "tmp"))
    return files, sh(["git", "rev-parse", "HEAD"], repo).stdout


def _fails(capsys, argv, repo, match):
    before = _snapshot(repo)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("plume-nav-publish: ") and match in err, err
    assert _snapshot(repo) == before


def test_partial_dir(repo, two_runs, tmp_path, capsys):
    part = copy_run(two_runs[0], tmp_path)
    staged = part.with_name("." + part.name + ".partial")
    part.rename(staged)
    _fails(capsys, [str(staged), "--repo", str(repo)], repo, "incomplete run")
    (staged / "run.json").unlink()
    renamed = staged.rename(tmp_path / "norunjson")
    _fails(capsys, [str(renamed), "--repo", str(repo)], repo, "no run.json")


def test_tampered_file(repo, two_runs, tmp_path, capsys):
    run = copy_run(two_runs[0], tmp_path)
    p = run / "episodes.jsonl.gz"
    lines = gzip.decompress(p.read_bytes()).decode().splitlines()
    rec = json.loads(lines[0])
    rec["total_reward"] += 1.0
    lines[0] = json.dumps(rec)
    p.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    _fails(capsys, [str(run), "--repo", str(repo)], repo, "invalid run")
    # in a batch with a good run: all or nothing
    _fails(capsys, [str(two_runs[1]), str(run), "--repo", str(repo)], repo, "invalid run")


def test_missing_dvc_repo(two_runs, tmp_path, capsys):
    plain = tmp_path / "plain"
    plain.mkdir()
    sh(["git", "init", "-q"], plain)
    sh(["git", "commit", "-q", "--allow-empty", "-m", "x"], plain)
    _fails(capsys, [str(two_runs[0]), "--repo", str(plain)], plain, "not a DVC repository")


def test_unknown_remote_and_no_default(two_runs, tmp_path, capsys):
    repo = make_repo(tmp_path / "r")  # no remote at all
    _fails(capsys, [str(two_runs[0]), "--repo", str(repo), "--push"], repo, "needs a DVC remote")
    _fails(capsys, [str(two_runs[0]), "--repo", str(repo), "--push", "--remote", "nope"], repo,
           "unknown DVC remote")


@pytest.mark.parametrize("dest", ["../outside", "/abs/path", ".", ".dvc/x"])
def test_dest_outside_tree(repo, two_runs, capsys, dest):
    _fails(capsys, [str(two_runs[0]), "--repo", str(repo), "--dest", dest], repo, "--dest")


def test_run_inside_dataset_tree(repo, two_runs, capsys):
    assert main([str(two_runs[0]), "--repo", str(repo)]) == 0
    capsys.readouterr()
    inside = repo / "data/captures/exp" / two_runs[0].name
    _fails(capsys, [str(inside), "--repo", str(repo), "--dest", "data"], repo,
           "inside the dataset tree")


def test_different_run_under_existing_name(repo, two_runs, tmp_path, capsys):
    assert main([str(two_runs[0]), "--repo", str(repo)]) == 0
    capsys.readouterr()
    # Same experiment/run_id, other contents (run.json edited after the first publish).
    impostor = copy_run(two_runs[0], tmp_path)
    meta = json.loads((impostor / "run.json").read_text())
    meta["start_time"] = "2020-01-01T00:00:00Z"
    (impostor / "run.json").write_text(json.dumps(meta))
    _fails(capsys, [str(impostor), "--repo", str(repo)], repo, "different run is already published")


def test_experiment_dir_tracked_as_one_output(repo, two_runs, capsys):
    exp = repo / "data/captures/exp"
    exp.mkdir(parents=True)
    (exp / "notes.txt").write_text("tracked as a whole\n")
    dvc("add", "-q", "data/captures/exp", cwd=repo)
    sh(["git", "add", "data/captures"], repo)
    sh(["git", "commit", "-qm", "exp as one output"], repo)
    _fails(capsys, [str(two_runs[0]), "--repo", str(repo)], repo, "tracked by DVC as a whole")
