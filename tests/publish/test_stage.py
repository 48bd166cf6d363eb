"""dvc.yaml capture stage: `dvc repro` captures, skips when the config is unchanged, reruns when a
param changes (earlier runs kept: persist), and `dvc metrics show` lists per-run validation."""
import json
import os
import shlex
import sys

import yaml

from plume_capture.cli.publish import main

from .conftest import dvc, make_repo, sh

CONFIG = """\
# @package _global_
output: results
experiment: stagex
episodes: 2
seed: 7
env:
  grid_size: [16, 16]
  max_steps: 30
engine:
  kind: local
  quiet: true
"""


def test_capture_stage_repro_and_metrics(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "repo")
    (repo / "conf").mkdir()
    cfg = repo / "conf" / "capture.yaml"
    cfg.write_text(CONFIG)
    monkeypatch.chdir(repo)
    assert main(["--init-stage", "conf/capture.yaml", "--repo", str(repo)]) == 0
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    cap = stages["capture_stagex"]
    assert cap["params"] == [{"conf/capture.yaml": ["env", "episodes", "experiment", "output",
                                                    "seed"]}]
    assert cap["outs"] == [{"results/stagex": {"persist": True}}]
    # the stage commands run with this interpreter's scripts first on PATH
    monkeypatch.setenv("PATH", f"{sys.prefix}/bin:" + os.environ["PATH"])

    def runs():
        return sorted(p.name for p in (repo / "results/stagex").iterdir())

    dvc("repro", "-q", cwd=repo)
    assert len(runs()) == 1
    out = dvc("repro", cwd=repo).stdout
    assert "didn't change, skipping" in out and len(runs()) == 1
    cfg.write_text(CONFIG.replace("seed: 7", "seed: 8"))
    dvc("repro", "-q", cwd=repo)
    assert len(runs()) == 2  # the first run persisted
    shown = json.loads(dvc("metrics", "show", "--json", cwd=repo).stdout)
    data = next(iter(shown.values()))["data"]["metrics/stagex.json"]["data"]
    assert sorted(data) == runs()
    assert all(v == {"ok": 1, "episodes": 2, "steps": v["steps"], "errors": 0, "warnings": 0}
               and v["steps"] > 0 for v in data.values())
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["capture_stagex"]
    assert lock["params"]["conf/capture.yaml"]["seed"] == 8
    assert "results/stagex" in sh(["git", "status", "--porcelain", "--ignored"], repo).stdout


def test_init_stage_bad_config(tmp_path, capsys):
    repo = make_repo(tmp_path / "repo")
    assert main(["--init-stage", str(tmp_path / "missing.yaml"), "--repo", str(repo)]) == 2
    assert capsys.readouterr().err.startswith(f"plume-nav-publish: error: no such file: {tmp_path / 'missing.yaml'}")
    (tmp_path / "notes.txt").write_text("output: x\n")
    assert main(["--init-stage", str(tmp_path / "notes.txt"), "--repo", str(repo)]) == 2
    assert capsys.readouterr().err.startswith("plume-nav-publish: error: not a YAML config file")
    (tmp_path / "dir.yaml").mkdir()
    assert main(["--init-stage", str(tmp_path / "dir.yaml"), "--repo", str(repo)]) == 2
    assert capsys.readouterr().err.startswith("plume-nav-publish: error: not a file")
    assert not (repo / "dvc.yaml").exists()


def test_init_stage_name_is_never_shell_code(tmp_path, monkeypatch):
    """An experiment name holding `;`, `$()` and backticks: each stage command is that argument
    list, quoted; `dvc repro` captures into the directory of that name and runs nothing else."""
    exp = "x;touch pwned1;$(touch pwned2)`touch pwned3`"
    repo = make_repo(tmp_path / "repo")
    (repo / "conf").mkdir()
    (repo / "conf" / "capture.yaml").write_text(
        CONFIG.replace("experiment: stagex", "experiment: '" + exp + "'"))
    monkeypatch.chdir(repo)
    assert main(["--init-stage", "conf/capture.yaml", "--repo", str(repo)]) == 0
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    (cap_name, cap), (val_name, val) = stages.items()
    assert cap_name.startswith("capture_x_touch_pwned1_") and val_name.startswith("validate_x_")
    assert shlex.split(cap["cmd"]) == ["plume-nav-capture", "--config-path", "conf",
                                       "--config-name", "capture", "--quiet"]
    assert shlex.split(val["cmd"]) == ["python", "-m", "plume_capture.publish.stage", "metrics",
                                       f"results/{exp}", f"metrics/{exp}.json"]
    monkeypatch.setenv("PATH", f"{sys.prefix}/bin:" + os.environ["PATH"])
    dvc("repro", "-q", cwd=repo)
    assert len(list((repo / "results" / exp).iterdir())) == 1
    data = json.loads((repo / "metrics" / f"{exp}.json").read_text())
    assert [v["ok"] for v in data.values()] == [1]
    assert not [p for p in (repo, tmp_path) for n in ("pwned1", "pwned2", "pwned3")
                if (p / n).exists()]


def test_init_stage_refuses_dvc_variable_syntax(tmp_path, capsys):
    repo = make_repo(tmp_path / "repo")
    cfg = repo / "capture.yaml"
    cfg.write_text(CONFIG.replace("experiment: stagex", "experiment: 'a\\${b}'"))
    assert main(["--init-stage", str(cfg), "--repo", str(repo)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "which dvc.yaml reads as a variable" in err
    assert not (repo / "dvc.yaml").exists()
