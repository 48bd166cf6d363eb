"""Resolve a checked config into the one frozen :class:`RunSpec` — the only input of the hash, the
run, resume and replay.

``effective_config`` states every value as it runs (nulls resolved by
:func:`plume_capture.sim.params.resolve_nulls`, which the physics uses too; numbers normalised);
``config_hash`` is the SHA-256 of exactly that minus :data:`EXECUTION_ONLY_KEYS` (docs/spec.md
§10.4); ``RunSpec.env`` and ``RunSpec.policy`` are built from the same effective values, so what
is hashed is what runs.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Mapping

from plume_capture import defaults
from plume_capture.config.check import address_problem, validate_config
from plume_capture.errors import ConfigError
from plume_capture.sim import puff
from plume_capture.sim.params import EnvParams, PolicyParams, resolve_nulls

#: Top-level keys left out of config_hash: they never change a record (docs/spec.md §8, §10.4).
EXECUTION_ONLY_KEYS: dict[str, str] = {
    "output": "where run directories are written, not what they contain",
    "experiment": "names the run's directory; no record contains it",
    "rotate_size": "splits the same records over more files",
    "parquet": "adds a Parquet copy of the same records",
    "engine": "how and where the work runs (local/Ray, address, actors, shards, progress display)",
}


def _effective(full: dict) -> dict:
    """The effective values of the checked complete config ``full`` (a copy)."""
    out = copy.deepcopy(full)
    env = out["env"]
    w, h = (int(v) for v in env["grid_size"])
    env["grid_size"] = [w, h]
    env["max_steps"], env["goal_radius"], goal = resolve_nulls(env["plume"], (w, h), env["max_steps"],
                                                                env["goal_radius"], env["goal_location"])
    env["goal_location"] = None if goal is None else list(goal)
    if env["start_location"] is not None:
        env["start_location"] = [int(c) for c in env["start_location"]]
    env["sigma"] = float(env["sigma"])
    env["sensor_distance"] = float(env["sensor_distance"])
    out["wind"] = {k: float(v) for k, v in out["wind"].items()}
    if out["movie"]["source_location"] is not None:
        out["movie"]["source_location"] = [int(c) for c in out["movie"]["source_location"]]
    if env["plume"] == "puff":
        out["puff"] = puff.normalized(out["puff"])
    else:  # settings that do not run: the hash of a static or movie config stays what it was
        del out["puff"]
    out["policy"]["threshold"] = float(out["policy"]["threshold"])
    out["policy"]["eps"] = float(out["policy"]["eps"])
    return out


def _hash(effective: dict) -> str:
    # Free top-level annotations (``+notes=...``) are recorded in run.json but no record depends on
    # them, so, like the execution-only keys, they stay out of the hash.
    known = defaults.tree()
    data = {k: v for k, v in effective.items() if k not in EXECUTION_ONLY_KEYS and k in known}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def effective_config(cfg: Mapping[str, Any]) -> dict:
    """Checked complete config with nulls resolved to what runs and numbers normalised.

    ``max_steps`` null -> 1000; ``goal_radius`` null -> 5.0, 0 -> float32 eps; static-plume
    ``goal_location`` null -> ``[min(64, W-1), min(64, H-1)]``; float settings as floats; pairs
    as lists; the ``puff`` group only when ``env.plume`` is puff. Settings that depend on a movie
    file (its grid and source) are left as given.
    """
    return _effective(validate_config(cfg, check_paths=False))


def config_hash(cfg: Mapping[str, Any]) -> str:
    """SHA-256 hex of the effective config minus :data:`EXECUTION_ONLY_KEYS` and free annotations
    (top-level keys the shipped config does not have, e.g. ``+notes=...``) (docs/spec.md §10.4).

    Serialised as ``json.dumps(..., sort_keys=True, separators=(",", ":"))``. Equal for the same
    data whatever the spelling (``--grid 8x8`` or ``env.grid_size=[8,8]``, ``max_steps: null``
    or ``1000``), output root or engine settings.
    """
    return _hash(effective_config(cfg))


@dataclass(frozen=True)
class EngineSpec:
    """How and where a run executes (the ``engine`` group; never changes a record).
    ``address`` is the configured one, else ``$RAY_ADDRESS`` (read once, here)."""

    kind: str  # auto | local | ray (auto is decided by the engine, which knows the run's size)
    address: str | None
    address_from: str | None  # "engine.address" or "RAY_ADDRESS" (named in errors)
    num_actors: int | None
    threads: int | None
    headroom_cpus: int | None
    shard_episodes: int | None
    window: int | None
    quiet: bool
    object_store_mb: int  # a local Ray instance's object store ($PLUME_CAPTURE_OBJECT_STORE_MB)

    @classmethod
    def from_config(cls, eng: Mapping[str, Any]) -> "EngineSpec":
        check_numba_threads()
        address, source = eng["address"], "engine.address"
        if address is None and eng["kind"] != "local" and os.environ.get("RAY_ADDRESS"):
            address, source = os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
            problem = address_problem(address)
            if problem:
                raise ConfigError(f"RAY_ADDRESS={address[:80]!r}: {problem}")
        return cls(kind=eng["kind"], address=address, address_from=source if address else None,
                   num_actors=eng["num_actors"], threads=eng["threads"], headroom_cpus=eng["headroom_cpus"],
                   shard_episodes=eng["shard_episodes"], window=eng["window"], quiet=eng["quiet"],
                   object_store_mb=object_store_mb())


def check_numba_threads() -> None:
    """``$NUMBA_NUM_THREADS``, when set, is a positive integer (Numba itself fails at import)."""
    text = os.environ.get("NUMBA_NUM_THREADS")
    if text is not None and text.strip() and (not re.fullmatch(r"\s*\d+\s*", text) or int(text) < 1):
        raise ConfigError(f"NUMBA_NUM_THREADS={text[:40]!r}: must be a positive integer (or unset)")


OBJECT_STORE_MB_ENV = "PLUME_CAPTURE_OBJECT_STORE_MB"
OBJECT_STORE_MB_DEFAULT, OBJECT_STORE_MB_RANGE = 512, (80, 1 << 20)  # Ray refuses less than ~75 MiB


def object_store_mb() -> int:
    """``$PLUME_CAPTURE_OBJECT_STORE_MB`` checked like a config key (default 512)."""
    text = os.environ.get(OBJECT_STORE_MB_ENV)
    if text is None or not text.strip():
        return OBJECT_STORE_MB_DEFAULT
    lo, hi = OBJECT_STORE_MB_RANGE
    if not re.fullmatch(r"\s*\d+\s*", text) or not lo <= int(text) <= hi:
        raise ConfigError(f"{OBJECT_STORE_MB_ENV}={text[:40]!r}: must be an integer number of MiB in [{lo}, {hi}]")
    return int(text)


@dataclass(frozen=True)
class RunSpec:
    """Everything a run is, resolved once from a checked config.

    Invariant: ``config_hash`` is the hash of the effective config that ``env``, ``policy``,
    ``episodes`` and ``seed`` were built from; ``config`` is the complete config as given (what
    ``run.json`` records under ``extra.config``). Treat ``config`` as read-only.
    """

    config: dict
    overrides: tuple
    env: EnvParams
    policy: PolicyParams
    episodes: int
    seed: int
    experiment: str
    output: str
    rotate_size: int | None
    parquet: bool
    engine: EngineSpec
    config_hash: str

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any], overrides=(), *, check_paths: bool = True) -> "RunSpec":
        """The spec of a config given as a dict (missing keys take the defaults): checked and
        resolved once, as :func:`resolve`. ``overrides`` are only recorded (``run.json``)."""
        return resolve(cfg, overrides, check_paths=check_paths)


def resolve(cfg: Mapping[str, Any], overrides=(), *, check_paths: bool = True) -> RunSpec:
    """Check ``cfg`` (once) and resolve it; raises ConfigError naming the first problem."""
    full = validate_config(cfg, check_paths=check_paths)
    eff = _effective(full)
    env = EnvParams.from_config(eff)
    return RunSpec(config=full, overrides=tuple(overrides), env=env,
                   policy=PolicyParams.from_config(eff).validated(env.action_type),
                   episodes=eff["episodes"], seed=eff["seed"], experiment=eff["experiment"], output=eff["output"],
                   rotate_size=eff["rotate_size"], parquet=eff["parquet"],
                   engine=EngineSpec.from_config(eff["engine"]), config_hash=_hash(eff))
