"""A ``dvc.yaml`` pipeline for captures: a capture stage whose ``params`` are the keys of the
capture config file (so ``dvc repro`` reruns the capture exactly when they change) with its output
``persist: true`` (DVC would otherwise delete earlier runs, and a half-written run could not be
resumed), and a stage writing the validation summary per run as DVC ``metrics``.

``python -m plume_capture.publish.stage metrics RUNS_DIR OUT.json`` is that second stage's command.

DVC runs a stage's ``cmd`` through a shell; every command here is built as an argument list and
written with each argument quoted (``shlex.join``), so no name or path is ever read as shell code.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import sys
from pathlib import Path

import yaml

from plume_capture.errors import BadInput, ConfigError

# Keys of a capture config that never change a record (execution only) or are not values.
_NOT_PARAMS = ("defaults", "engine")


class StageError(BadInput):
    """Bad input for the stage generator (one line)."""


def _rel(path: Path, top: Path, what: str) -> str:
    try:
        return path.resolve().relative_to(top).as_posix()
    except ValueError:
        raise StageError(f"{what} must lie inside the repository {top}: {path}") from None


def _stage_name(exp: str) -> str:
    """``exp`` as a DVC stage name (letters, digits, ``_``, ``-``); a name that had to change gets
    a hash of the original, so two experiments never share a stage."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", exp)
    return safe if safe == exp else f"{safe}-{hashlib.sha256(exp.encode()).hexdigest()[:8]}"


def capture_stages(config_file, repo=".") -> dict:
    """``{stage name: stage}`` for the capture config ``config_file`` in the DVC repo ``repo``."""
    from plume_capture.config import load_config

    top, cfg_path = Path(repo).resolve(), Path(config_file)
    if not cfg_path.is_absolute():
        cfg_path = Path.cwd() / cfg_path
    if cfg_path.suffix not in (".yaml", ".yml"):
        raise StageError(f"not a YAML config file (.yaml or .yml): {config_file}")
    if not cfg_path.exists():
        raise StageError(f"no such file: {config_file} (write the capture config first; docs/publishing.md "
                         "shows one)")
    if not cfg_path.is_file():
        raise StageError(f"not a file: {config_file}")
    if not (top / ".dvc").is_dir():
        raise StageError(f"not a DVC repository (no .dvc/): {top}")
    rel_cfg = _rel(cfg_path, top, "the config file")
    try:
        with open(cfg_path, encoding="utf-8") as f:
            raw = yaml.safe_load(f) or {}
        old = os.getcwd()
        os.chdir(top)  # output paths in the config are relative to where DVC runs the stage
        try:
            cfg = load_config(config_name=cfg_path.stem, config_path=str(cfg_path.parent),
                              check_paths=False)
        finally:
            os.chdir(old)
    except (ConfigError, yaml.YAMLError, OSError) as e:
        raise StageError(f"bad config {config_file}: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise StageError(f"config is not a mapping: {config_file}")
    exp = cfg["experiment"]
    out_dir = _rel(top / cfg["output"] / exp, top, "the capture output")
    metrics = f"metrics/{exp}.json"
    for text in (exp, out_dir, rel_cfg):
        if "${" in text:
            raise StageError(f"{text!r} holds '${{', which dvc.yaml reads as a variable")
    params = sorted(k for k in raw if k not in _NOT_PARAMS)
    capture = ["plume-nav-capture", "--config-path", Path(rel_cfg).parent.as_posix(),
               "--config-name", cfg_path.stem, "--quiet"]
    validate = ["python", "-m", "plume_capture.publish.stage", "metrics", out_dir, metrics]
    name = _stage_name(exp)
    return {
        f"capture_{name}": {
            "cmd": shlex.join(capture),
            "deps": [rel_cfg],
            "params": [{rel_cfg: params}],
            "outs": [{out_dir: {"persist": True}}],
        },
        f"validate_{name}": {
            "cmd": shlex.join(validate),
            "deps": [out_dir],
            "metrics": [{metrics: {"cache": False}}],
        },
    }


def write_stage(config_file, repo=".") -> Path:
    """Add (or replace) the capture stages for ``config_file`` in ``<repo>/dvc.yaml``."""
    stages = capture_stages(config_file, repo)
    path = Path(repo).resolve() / "dvc.yaml"
    doc = {}
    if path.exists():
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f) or {}
    doc.setdefault("stages", {}).update(stages)
    tmp = path.with_name(".dvc.yaml.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    os.replace(tmp, path)
    return path


def run_metrics(runs_dir) -> dict:
    """``{run_id: {ok, episodes, steps, errors, warnings}}`` for the complete runs in ``runs_dir``
    (staging ``.<run_id>.partial`` directories are in progress, not runs, and are skipped)."""
    from plume_capture.readback.validate import validate_run_artifacts

    out = {}
    root = Path(runs_dir)
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        res = validate_run_artifacts(d)
        out[d.name] = {"ok": int(res["ok"]), "episodes": res["counts"]["episodes"],
                       "steps": res["counts"]["steps"],
                       "errors": len(res["errors"]) + res["errors_suppressed"],
                       "warnings": len(res["warnings"])}
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[0] != "metrics" or not os.path.isdir(argv[1]):
        print("usage: python -m plume_capture.publish.stage metrics RUNS_DIR OUT.json",
              file=sys.stderr)
        return 2
    m = run_metrics(argv[1])
    out = Path(argv[2])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(m, indent=2) + "\n", encoding="utf-8")
    return 0 if all(v["ok"] for v in m.values()) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
