"""A property test over the five commands: random names, paths and damaged run or index files.
No call may end in a traceback or "internal error", or in an exit other than 0, 2, 3 or 130
(and 1 from ``plume-nav-validate`` only as its verdict "not a valid run"); a refusal is exactly
one line on stderr.

CI runs 60 examples; the long form: ``PLUME_CAPTURE_CLI_PROPERTY_EXAMPLES=1000`` (and another
``PLUME_CAPTURE_CLI_PROPERTY_SEED``)."""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess

import pytest

from tests.cli_helpers import said, small_real_run

from plume_capture.cli import capture, export, publish, report, validate

MAINS = {"capture": capture.main, "validate": validate.main, "publish": publish.main,
         "report": report.main, "export": export.main}

NAMES = ["ok", "a;rm -rf x", "$(touch pwned)", "`id`", "x$\\alpha$", "e" * 255, "\udcff", "..", ".hidden",
         "DATASET_INDEX.json", "sp ace", "ünï", "-dash", "", "a/b", "nul\x00x", "\t"]


def _damage_run(rng: random.Random, src, dst):
    shutil.copytree(src, dst)
    kind = rng.choice(["none", "run.json-garbage", "run.json-nan", "run.json-array", "truncate", "flip",
                       "delete", "fifo", "devzero", "extra-dir", "symlink-out"])
    files = sorted(p for p in dst.rglob("*") if p.is_file())
    f = rng.choice(files)
    if kind == "run.json-garbage":
        (dst / "run.json").write_bytes(bytes(rng.randrange(256) for _ in range(64)))
    elif kind == "run.json-nan":
        (dst / "run.json").write_text((dst / "run.json").read_text().replace("0.0", "NaN", 1))
    elif kind == "run.json-array":
        (dst / "run.json").write_text("[]")
    elif kind == "truncate":
        f.write_bytes(f.read_bytes()[: rng.randrange(max(1, f.stat().st_size))])
    elif kind == "flip":
        data = bytearray(f.read_bytes())
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        f.write_bytes(bytes(data))
    elif kind == "delete":
        f.unlink()
    elif kind == "fifo":
        f.unlink()
        os.mkfifo(f)
    elif kind == "devzero":
        f.unlink()
        f.symlink_to("/dev/zero")
    elif kind == "extra-dir":
        (dst / "steps.backup").mkdir()
    elif kind == "symlink-out":
        (dst / "notes.txt").symlink_to("/etc/hostname")
    return kind


def _args(rng: random.Random, cmd: str, run, tmp, repo):
    name = rng.choice(NAMES)
    path = rng.choice([str(run), str(tmp / name.replace("\x00", "")), "/", "/proc/self", "/dev/zero",
                       str(tmp / "fifo"), str(run / "run.json")])
    out = rng.choice([str(tmp / "out"), str(run / "inside"), "/proc/x", "/sys/x", str(tmp / "fifo"), str(tmp)])
    if cmd == "capture":
        return rng.choice([
            ["--engine", "local", "--quiet", "episodes=1", "env.max_steps=5", f"experiment={name}",
             f"output={tmp / 'cap'}"],
            ["--resume", path], ["--config-path", path, "--config-name", name],
            ["--engine", "local", "--quiet", "episodes=1", f"movie.path={path}", "env.plume=movie"],
        ])
    if cmd == "validate":
        return rng.choice([[path], [str(run), "--replay", rng.choice(["1", "0", "x", "all"])], [str(run), "--json"]])
    if cmd == "publish":
        return rng.choice([[str(run), "--repo", str(repo)], [path, "--repo", str(repo)],
                           ["--rebuild-index", "--repo", str(repo)], ["--init-stage", path, "--repo", str(repo)],
                           [str(run), "--repo", str(repo), "--dest", name]])
    if cmd == "report":
        return [rng.choice([str(run), path]), "-o", rng.choice([out + ".html", out])]
    return [rng.choice([str(run), path]), "--to", rng.choice(["rllib", "hf", "minari"]), out]


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A small real capture (in-process engine) with Parquet."""
    return small_real_run(tmp_path_factory.mktemp("runs"), seed=2, max_steps=15)


def test_property_no_command_ends_in_a_traceback(base_run, tmp_path, capsys, monkeypatch):
    n = int(os.environ.get("PLUME_CAPTURE_CLI_PROPERTY_EXAMPLES", "60"))
    rng = random.Random(int(os.environ.get("PLUME_CAPTURE_CLI_PROPERTY_SEED", "20261206")))
    monkeypatch.setenv("GIT_AUTHOR_NAME", "t")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "t@example.com")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "t")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "t@example.com")
    monkeypatch.chdir(tmp_path)
    seen: dict = {}
    for i in range(n):
        tmp = tmp_path / f"ex{i}"
        tmp.mkdir()
        os.mkfifo(tmp / "fifo")
        run = tmp / "exp" / base_run.name
        kind = _damage_run(rng, base_run, run)
        repo = tmp / "repo"
        repo.mkdir()
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
        (repo / ".dvc").mkdir()  # enough for the checks that run before DVC itself is asked
        if rng.random() < 0.5:
            (repo / "data" / "captures").mkdir(parents=True)
            (repo / "data" / "captures" / "DATASET_INDEX.json").write_text(
                rng.choice(["{", "[]", json.dumps({"runs": [{}]}), json.dumps({"runs": []})]))
        cmd = rng.choice(sorted(MAINS))
        argv = _args(rng, cmd, run, tmp, repo)
        try:
            rc = MAINS[cmd](argv)
        except SystemExit as e:  # argparse's own usage errors
            rc = e.code
        cap = capsys.readouterr()
        where = f"example {i}: {cmd} {argv!r} (run damage: {kind})\n{cap.err}"
        assert "Traceback (most recent" not in cap.err and "internal error" not in cap.err, where
        assert "Exception ignored" not in cap.err, where
        allowed = {0, 2, 3, 130} | ({1} if cmd == "validate" else set())
        assert rc in allowed, where
        if rc not in (0, 1):  # exactly one line, the command's own
            lines = said(cap.err)
            assert len(lines) == 1 and lines[0].startswith(f"plume-nav-{cmd}: "), where
        seen[(cmd, rc)] = seen.get((cmd, rc), 0) + 1
        shutil.rmtree(tmp, ignore_errors=True)
    assert len({c for c, _ in seen}) == 5, seen
