"""Helpers for running ``plume-nav-capture`` as an operator would (a subprocess in a tmp cwd)."""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]


def run_cli(args, cwd, *, env=None, timeout=300, python=sys.executable, script=False) -> subprocess.CompletedProcess:
    """``python -m plume_capture ARGS`` (or, with ``script``, the ``plume-nav-capture`` console
    script next to ``python``) in ``cwd``; stdout/stderr captured as text."""
    full_env = dict(os.environ)
    full_env.pop("PLUME_CAPTURE_DEBUG", None)
    full_env.update(env or {})
    cmd = [str(Path(python).parent / "plume-nav-capture")] if script else [python, "-m", "plume_capture"]
    return subprocess.run(
        [*cmd, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


#: the one line a process prints before it compiles the kernels into an empty cache (kernels/_jit.py)
COMPILE_NOTE = "plume-capture: compiling kernels once"


def said(stderr: str) -> list[str]:
    """The non-empty lines of ``stderr`` but the compile note, which any command may print first on
    a cold kernel cache (which test first compiles depends on the order tests run in)."""
    return [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith(COMPILE_NOTE)]


def tree(root: Path) -> set[str]:
    """Every path under ``root`` (relative), directories included."""
    root = Path(root)
    return {str(p.relative_to(root)) for p in root.rglob("*")}



def run_dirs(output: Path, experiment: str) -> list[Path]:
    base = Path(output) / experiment
    return sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []


def run_json(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "run.json").read_text())


def read_jsonl(run_dir: Path, base: str) -> list[dict]:
    """All records of ``base`` (``steps``/``episodes``) across rotated parts, in order."""
    run_dir = Path(run_dir)
    files = [run_dir / f"{base}.jsonl.gz"] + sorted(run_dir.glob(f"{base}.part*.jsonl.gz"))
    out = []
    for f in files:
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            out.extend(json.loads(line) for line in fh)
    return out


def small_real_run(root: Path, *, seed: int = 1, episodes: int = 3, max_steps: int = 20) -> Path:
    """A small real capture with Parquet (in-process engine), for tests of the commands that read runs."""
    from plume_capture.capture import capture
    from plume_capture.config import complete_config

    return capture(complete_config({"output": str(root), "experiment": "exp", "episodes": episodes, "seed": seed,
                                    "parquet": True, "env": {"grid_size": [16, 16], "max_steps": max_steps},
                                    "engine": {"kind": "local", "quiet": True}})).run_dir
