"""Run identity and ``run.json`` (docs/spec.md §9, §9.2)."""
from __future__ import annotations

import getpass
import json
import os
import platform
import secrets
import socket
import subprocess
import time
from pathlib import Path

from plume_capture.spec import RUN_JSON_KEYS, SCHEMA_VERSION


def new_run_id(now: float | None = None) -> str:
    """``run-YYYYMMDD-HHMMSS-<8 hex>`` (UTC); the random suffix keeps ids unique across machines."""
    return time.strftime("run-%Y%m%d-%H%M%S", time.gmtime(now)) + "-" + secrets.token_hex(4)


def iso_utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _git(args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30)


def git_state(path, *, must_track: str | None = None) -> dict:
    """``{"path", "git_sha", "git_dirty", "reason"}`` of the git checkout containing ``path``;
    sha and dirty are null with a ``reason`` when there is none (or when ``must_track`` — a path
    relative to ``path`` — is not tracked there, e.g. a venv that happens to sit inside a repo)."""
    path = os.fspath(path)
    out = {"path": path, "git_sha": None, "git_dirty": None, "reason": None}
    try:
        top = _git(["rev-parse", "--show-toplevel"], path)
        if top.returncode != 0:
            out["reason"] = "not a git checkout"
            return out
        out["path"] = top.stdout.strip()
        if must_track is not None and _git(["ls-files", "--error-unmatch", must_track],
                                           path).returncode != 0:
            out["reason"] = f"{must_track} is not tracked by the enclosing git repository"
            return out
        sha = _git(["rev-parse", "--verify", "HEAD"], path)
        if sha.returncode != 0:
            out["reason"] = "git repository without commits"
            return out
        out["git_sha"] = sha.stdout.strip()
        st = _git(["status", "--porcelain", "--untracked-files=no"], path)
        out["git_dirty"] = bool(st.stdout.strip()) if st.returncode == 0 else None
        if st.returncode != 0:
            out["reason"] = "git status failed: " + st.stderr.strip().splitlines()[-1:][0] \
                if st.stderr.strip() else "git status failed"
    except FileNotFoundError:
        out["reason"] = "git is not installed"
    except (OSError, subprocess.SubprocessError) as e:
        out["reason"] = f"git failed: {e}"
    return out


def provenance(cwd=None) -> dict:
    """Git state of the code: ``package`` = the checkout the imported plume_capture comes from
    (null when installed from a wheel), ``cwd`` = the working directory's checkout. Recorded in
    run.json (``extra.code``) when a run is captured, and in a published dataset's manifest."""
    pkg = Path(__file__).resolve().parents[1]
    return {"package": git_state(pkg.parent, must_track=f"{pkg.name}/__init__.py"),
            "cwd": git_state(cwd if cwd is not None else os.getcwd())}


def system_info() -> dict:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = None
    return {"hostname": socket.gethostname(), "platform": platform.platform(),
            "python_version": platform.python_version(), "pid": os.getpid(), "user": user}


def env_config(effective: dict) -> dict:
    """The reference's ``env_config`` block, from the settings that actually ran."""
    src = list(effective["source_location"])
    plume = {"source_location": src}
    if "sigma" in effective:
        plume["sigma"] = effective["sigma"]
    return {"grid_size": list(effective["grid_size"]), "source_location": src,
            "max_steps": effective["max_steps"], "goal_radius": effective["goal_radius"],
            "enable_rendering": False, "plume_params": plume}


def build_run_json(*, run_id, experiment, start_time, effective_env, base_seed, episodes, package_version,
                   config_hash, git_sha, system, extra) -> dict:
    doc = {
        "run_id": run_id,
        "experiment": experiment,
        "start_time": iso_utc(start_time),
        "env_config": env_config(effective_env),
        "base_seed": base_seed,
        "episode_seeds": list(range(base_seed, base_seed + episodes)),
        "package_version": package_version,
        "config_hash": config_hash,
        "git_sha": git_sha,
        "system": system,
        "extra": extra,
        "schema_version": SCHEMA_VERSION,
    }
    assert tuple(doc) == RUN_JSON_KEYS
    return doc


def write_json_atomic(path: Path, doc: dict) -> int:
    tmp = path.with_name(path.name + ".tmp")
    # Indented for people; compact when long (episode_seeds may hold 10^7 ints).
    indent = 2 if len(doc.get("episode_seeds", ())) <= 10_000 else None
    data = json.dumps(doc, indent=indent, allow_nan=False, ensure_ascii=False).encode() + b"\n"
    with open(tmp, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return len(data)
