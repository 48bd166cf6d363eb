"""Bad input: one line on stderr, exit 2, nothing published or half-published."""
import gzip
import hashlib
import json
import shutil

import pytest

from plume_capture.cli.publish import main
from plume_capture.readback.validate import validate_run_artifacts

from .conftest import copy_run, dvc, make_repo, sh


def _snapshot(repo):
    files = sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*")
                   if ".git" not in p.relative_to(repo).parts
                   and p.relative_to(repo).parts[:2] != (".dvc", "tmp"))
    return files, sh(["git", "rev-parse", "HEAD"], repo).stdout


def _sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


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


def _edit_jsonl(path, i, **changes):
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    rec = json.loads(lines[i])
    rec.update(changes)
    lines[i] = json.dumps(rec)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return rec


def test_our_run_without_its_bookkeeping(repo, two_runs, tmp_path, capsys):
    """extra emptied + a record edited: the validator can only take it for a reference run (and
    passes it); publish refuses, since its run_id says plume-capture made it."""
    run = copy_run(two_runs[0], tmp_path)
    for d in run.glob("*.parquet"):
        shutil.rmtree(d)
    meta = json.loads((run / "run.json").read_text())
    meta["extra"] = {}
    (run / "run.json").write_text(json.dumps(meta))
    step = json.loads(gzip.decompress((run / "steps.jsonl.gz").read_bytes()).splitlines()[0])
    _edit_jsonl(run / "steps.jsonl.gz", 0, action=(step["action"] + 1) % 4)
    res = validate_run_artifacts(run)
    assert res["ok"] and res["kind"] == "reference"  # what publish used to vouch for
    _fails(capsys, [str(run), "--repo", str(repo)], repo, "has no extra.status")
    meta["extra"] = {k: v for k, v in json.loads((two_runs[0] / "run.json").read_text())["extra"]
                     .items() if k != "engine"}
    (run / "run.json").write_text(json.dumps(meta))
    _fails(capsys, [str(run), "--repo", str(repo)], repo, "has no extra.engine")


def test_carried_manifest_does_not_skip_validation(repo, two_runs, tmp_path, capsys):
    """An edited record, run.json's inventory and a manifest.json saying ok made to match it:
    publish validates the run itself and refuses it."""
    run = copy_run(two_runs[0], tmp_path)
    ep = run / "episodes.jsonl.gz"
    rec = json.loads(gzip.decompress(ep.read_bytes()).splitlines()[0])
    _edit_jsonl(ep, 0, total_reward=rec["total_reward"] + 1.0)
    meta = json.loads((run / "run.json").read_text())
    meta["extra"]["files"][ep.name].update(bytes=ep.stat().st_size, sha256=_sha(ep))
    (run / "run.json").write_text(json.dumps(meta, indent=2))
    names = sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file())
    files = {n: {"bytes": (run / n).stat().st_size, "rows": None, "sha256": _sha(run / n)}
             for n in names}
    (run / "manifest.json").write_text(json.dumps(
        {"files": files, "validation": {"ok": True, "validated_at": "2026-01-01T00:00:00Z"}}))
    _fails(capsys, [str(run), "--repo", str(repo)], repo, "invalid run")


@pytest.mark.parametrize("where", ["extra_file", "replaces_a_part", "parquet_dir"])
def test_symlink_in_run_is_refused(repo, two_runs, tmp_path, capsys, where):
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$secret-hash:19000:0:99999:7:::\n")
    run = copy_run(two_runs[0], tmp_path)
    if where == "extra_file":
        (run / "notes.txt").symlink_to(secret)
        name = "notes.txt"
    elif where == "replaces_a_part":
        part = run / "steps.part0001.jsonl.gz"
        kept = tmp_path / "kept.gz"
        part.rename(kept)
        part.symlink_to(kept)
        name = part.name
    else:
        shutil.move(run / "episodes.parquet", tmp_path / "elsewhere.parquet")
        (run / "episodes.parquet").symlink_to(tmp_path / "elsewhere.parquet")
        name = "episodes.parquet"
    _fails(capsys, [str(run), "--repo", str(repo)], repo, f"symlink in the run directory: {name}")
    assert not any(p.read_bytes() == secret.read_bytes() for p in repo.rglob("*") if p.is_file())


def test_capture_bookkeeping_is_not_published(repo, two_runs, tmp_path, capsys):
    """journal.jsonl, capture.json and lock (left when a finalizer was stopped after its rename)
    never reach the dataset."""
    run = copy_run(two_runs[0], tmp_path)
    for name in ("journal.jsonl", "capture.json", "lock"):
        (run / name).write_text("bookkeeping\n")
    assert main([str(run), "--repo", str(repo)]) == 0
    out = capsys.readouterr().out
    assert out.count("capture bookkeeping, not part of the run") == 3
    pub = repo / "data/captures/exp" / run.name
    m = json.loads((pub / "manifest.json").read_text())
    for name in ("journal.jsonl", "capture.json", "lock"):
        assert not (pub / name).exists() and name not in m["files"]
    assert sorted(p.name for p in pub.iterdir()) == sorted(
        [p.name for p in two_runs[0].iterdir()] + ["manifest.json"])


@pytest.mark.parametrize("damage", ["not-json", "array", "entry-without-run-id", "nan", "directory"])
def test_damaged_index_is_one_line_and_rebuildable(repo, two_runs, capsys, damage):
    assert main([str(two_runs[0]), "--repo", str(repo)]) == 0
    capsys.readouterr()
    index = repo / "data" / "captures" / "DATASET_INDEX.json"
    doc = json.loads(index.read_text())
    if damage == "directory":
        index.unlink()
        index.mkdir()
    else:
        index.write_text({"not-json": "{oops", "array": "[]", "nan": '{"runs": [], "x": NaN}',
                          "entry-without-run-id": json.dumps({"runs": [{"experiment": "exp"}]})}[damage])
    match = "move it away, then rebuild" if damage == "directory" else "rebuild it with plume-nav-publish --rebuild-index"
    _fails(capsys, [str(two_runs[1]), "--repo", str(repo)], repo, match)
    if damage == "directory":
        _fails(capsys, ["--rebuild-index", "--repo", str(repo)], repo, "is a directory")
        index.rmdir()
    assert main(["--rebuild-index", "--repo", str(repo)]) == 0
    assert json.loads(index.read_text())["runs"] == doc["runs"]
    assert main([str(two_runs[1]), "--repo", str(repo)]) == 0


@pytest.mark.parametrize("experiment, match", [
    ("DATASET_INDEX.json", "not a usable directory name"),
    ("e" * 255, "a published name may be at most 160"),
])
def test_experiment_names_that_cannot_be_published(repo, two_runs, tmp_path, capsys, experiment, match):
    run = copy_run(two_runs[0], tmp_path)
    meta = json.loads((run / "run.json").read_text())
    meta["experiment"] = experiment
    (run / "run.json").write_text(json.dumps(meta))
    _fails(capsys, [str(run), "--repo", str(repo)], repo, match)


def test_a_repository_in_the_middle_of_a_merge_is_refused_before_anything_is_written(repo, two_runs, capsys):
    """git would refuse the commit at the end (exit 3, and the dataset tree's new directories left)."""
    branch = sh(["git", "rev-parse", "--abbrev-ref", "HEAD"], repo).stdout.strip()
    (repo / "f").write_text("a\n")
    sh(["git", "add", "f"], repo)
    sh(["git", "commit", "-qm", "a"], repo)
    sh(["git", "checkout", "-qb", "other"], repo)
    (repo / "f").write_text("b\n")
    sh(["git", "commit", "-qam", "b"], repo)
    sh(["git", "checkout", "-q", branch], repo)
    (repo / "f").write_text("c\n")
    sh(["git", "commit", "-qam", "c"], repo)
    assert sh(["git", "merge", "other"], repo, check=False).returncode != 0  # a conflict: MERGE_HEAD
    _fails(capsys, [str(two_runs[0]), "--repo", str(repo)], repo, "in the middle of a merge")


def test_an_experiment_directory_behind_a_symlink_is_refused(repo, two_runs, tmp_path, capsys):
    """DVC adds nothing behind a symbolic link (its error used to be hidden: "dvc add failed: exit 1")."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (repo / "data" / "captures").mkdir(parents=True)
    (repo / "data" / "captures" / "exp").symlink_to(elsewhere)
    _fails(capsys, [str(two_runs[0]), "--repo", str(repo)], repo, "data/captures/exp is a symbolic link")
    assert list(elsewhere.iterdir()) == []
