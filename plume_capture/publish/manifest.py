"""The provenance manifest (``manifest.json``) written beside a published run's ``run.json``.

``run.json`` keeps the reference tool's top-level keys untouched; everything the reference has no
key for (git state of both checkouts, compact seeds, file inventory incl. run.json itself, versions,
Ray facts, the validation report) lives here. Invariant: ``files`` lists every file of the published
run directory except ``manifest.json`` with the sha256 of the published bytes.
"""
from __future__ import annotations

import platform
import time
from importlib import metadata

from plume_capture._version import __version__
from plume_capture.spec import SCHEMA_VERSION

MANIFEST_VERSION = 1
KEY_PACKAGES = ("plume-capture", "numpy", "numba", "pyarrow", "polars", "ray", "isal", "dvc",
                "gymnasium", "hydra-core", "omegaconf")


def package_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in KEY_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def compact_seeds(base_seed, episode_seeds) -> dict:
    """``{"first", "count", "rule"}`` when the seeds are ``base_seed + i`` (always, for our runs);
    the explicit list otherwise (a reference run may list anything)."""
    seeds = list(episode_seeds or ())
    if type(base_seed) is int and seeds == list(range(base_seed, base_seed + len(seeds))):
        return {"first": base_seed, "count": len(seeds), "rule": "episode i has seed first + i"}
    return {"first": seeds[0] if seeds else None, "count": len(seeds), "rule": "explicit",
            "seeds": seeds}


def validation_summary(res: dict) -> dict:
    """The validator's result, made location-free (the run dir differs once published)."""
    keep = ("ok", "kind", "errors", "warnings", "errors_suppressed", "counts", "files_checked")
    return {**{k: res[k] for k in keep}, "validator": f"plume_capture {__version__}",
            "validated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def build_manifest(run_json: dict, files: dict, validation: dict, *, publisher: dict) -> dict:
    """The manifest of a run whose ``run.json`` is ``run_json``; ``files``: name -> {bytes, rows,
    sha256} of the published bytes; ``validation``: :func:`validation_summary`'s result."""
    extra = run_json.get("extra") if isinstance(run_json.get("extra"), dict) else {}
    engine = extra.get("engine") if isinstance(extra.get("engine"), dict) else {}
    reason = None if run_json.get("git_sha") else \
        "capture recorded no git SHA (its working directory was not a git checkout)"
    return {
        "manifest_version": MANIFEST_VERSION,
        "run_id": run_json.get("run_id"),
        "experiment": run_json.get("experiment"),
        "start_time": run_json.get("start_time"),
        "package_version": run_json.get("package_version"),
        "code": {"checkout": "capture's working directory", "git_sha": run_json.get("git_sha"),
                 "git_dirty": extra.get("git_dirty"), "reason": reason},
        "config_hash": run_json.get("config_hash"),
        "config": extra.get("config"),
        "overrides": extra.get("overrides"),
        "env_config": run_json.get("env_config"),
        "seeds": {"base_seed": run_json.get("base_seed"),
                  "episode_seeds": compact_seeds(run_json.get("base_seed"),
                                                 run_json.get("episode_seeds"))},
        "schema_versions": {"records": SCHEMA_VERSION, "run_json": run_json.get("schema_version"),
                            "manifest": MANIFEST_VERSION},
        "counts": extra.get("counts") or validation.get("counts"),
        "files": files,
        "versions": {"capture": engine.get("versions"), "publish": package_versions()},
        "system": run_json.get("system"),
        "ray": {k: engine.get(k) for k in ("kind", "actors", "threads", "nodes", "shards",
                                           "shard_episodes") if k in engine} or None,
        "validation": validation,
        "published": publisher,
    }
