"""The one config check: every key's type and range, before anything runs (docs/spec.md §10).

Raises :class:`ConfigError` naming the first problem. Imports no engine module (no Numba, pyarrow,
polars or Ray), so bad input fails fast.
"""
from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from plume_capture import defaults
from plume_capture.errors import ConfigError
from plume_capture.spec import (ACTION_TYPES, FLOAT_RANGES, GRID_MAX, INT_RANGES, OBSERVATION_TYPES,  # noqa: F401
                                 PLUMES, POLICY_ACTIONS, REWARD_TYPES, SEED_MAX, STEP_POLICIES, policy_fit_problem,
                                 range_problem)

#: groups whose keys the engine consumes; an unknown key inside one is always an error
CLOSED_GROUPS = ("env", "wind", "movie", "puff", "policy", "engine")
ENGINE_KINDS = ("auto", "local", "ray")


def complete(cfg: Mapping[str, Any]) -> dict:
    """``cfg`` with missing keys filled from the shipped defaults (``cfg`` wins); a copy."""
    out = defaults.tree()
    for key, value in dict(cfg).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key].update(copy.deepcopy(dict(value)))
        else:
            out[key] = copy.deepcopy(value)
    if _is_int(out.get("experiment")):  # experiment=2024 on the command line
        out["experiment"] = str(out["experiment"])
    return out



def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise ConfigError(msg)


def _int_at_least(cfg: dict, key: str, *, nullable: bool = False) -> None:
    v = _get(cfg, key)
    if nullable and v is None:
        return
    problem = range_problem(key, v, nullable=nullable)
    _check(problem is None, problem or "")


_ADDRESS = re.compile(r"(?:ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})\Z")


def address_problem(addr: str) -> str | None:
    """Why ``addr`` is not a Ray address (``auto``, ``host:port``, ``ray://host:port``), or None."""
    if addr == "auto":
        return None
    m = _ADDRESS.match(addr.strip()) if addr.strip() == addr else None
    if not m:
        return "a Ray address is auto, HOST:PORT or ray://HOST:PORT"
    if not 1 <= int(m.group(2)) <= 65535:
        return f"port {m.group(2)} is not in 1..65535"
    return None


def _float_in_range(cfg: dict, key: str, *, nullable: bool = False) -> None:
    v = _get(cfg, key)
    if nullable and v is None:
        return
    problem = range_problem(key, v, nullable=nullable)
    _check(problem is None, problem or "")


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def _get(cfg: dict, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _check_choice(cfg: dict, key: str, choices: Iterable[str]) -> None:
    v = _get(cfg, key)
    choices = tuple(choices)
    _check(isinstance(v, str) and v in choices, f"{key} must be one of {', '.join(choices)}; got {v!r}")


def _check_name(key: str, v: Any) -> None:
    _check(isinstance(v, str) and v != "", f"{key} must be a non-empty name, got {v!r}")
    _check(v not in (".", ".."), f"{key} must not be {v!r}")
    _check(not v.startswith("."), f"{key} {v!r} must not start with '.' (hidden directory)")
    for c in ("/", "\\", "\0"):
        _check(c not in v, f"{key} {v!r} must not contain {c!r} (it names one directory)")
    _check(not any(ord(c) < 32 or ord(c) == 127 for c in v), f"{key} {v!r} contains a control character")
    _check(len(v.encode("utf-8")) <= 255, f"{key} is longer than 255 bytes")


def _check_xy(key: str, v: Any, grid: tuple[int, int] | None) -> None:
    if v is None:
        return
    _check(
        isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_int(c) for c in v),
        f"{key} must be [x, y] with integer cells or null, got {v!r}",
    )
    x, y = v
    if grid is None:
        _check(x >= 0 and y >= 0, f"{key} {list(v)} has a negative coordinate")
        return
    w, h = grid
    _check(
        0 <= x < w and 0 <= y < h,
        f"{key} {list(v)} is outside the {w}x{h} grid (x in 0..{w - 1}, y in 0..{h - 1})",
    )


def _check_output(output: Any, experiment: str) -> None:
    _check("\0" not in output, "output must not contain a NUL character")
    target = Path(output).expanduser() / experiment  # the engine expands ~ too
    probe = target
    while True:
        try:
            if probe.exists() or probe.is_symlink():
                break
        except OSError as exc:
            raise ConfigError(f"output {output!r} is not usable: {exc.strerror or exc}") from None
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.is_symlink() and not probe.exists():
        raise ConfigError(f"output {output!r}: {str(probe)!r} is a broken symlink")
    if not probe.is_dir():
        raise ConfigError(f"output {output!r} is not usable: {str(probe)!r} is not a directory")
    where = "" if probe == target else f" ({str(probe)!r} is the nearest existing directory)"
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"output {output!r} is not writable{where}")
    # os.access trusts root and ignores some file systems (/proc, root-squashed NFS): try it.
    import tempfile

    try:
        os.rmdir(tempfile.mkdtemp(prefix=".plume-capture-probe-", dir=probe))
    except OSError as exc:
        raise ConfigError(f"output {output!r} is not writable{where}: {exc.strerror or exc}") from None


def nearest_key(key: str) -> str | None:
    """The shipped config's dotted key closest to a mistyped ``key`` (difflib), or None."""
    import difflib

    def dotted(tree, prefix=""):
        for k, v in tree.items():
            yield prefix + k
            if isinstance(v, Mapping):
                yield from dotted(v, prefix + k + ".")

    near = difflib.get_close_matches(key, list(dotted(defaults.tree())), n=1, cutoff=0.75)
    return near[0] if near else None


def validate_config(cfg: Mapping[str, Any], *, check_paths: bool = True) -> dict:
    """Raise :class:`ConfigError` naming the first problem in ``cfg``; missing keys take defaults.
    Returns the complete config it checked (``complete(cfg)``, a copy).

    ``check_paths`` also checks the file system: the output root (and ``<output>/<experiment>``
    if it exists) must be a writable directory or creatable below one, and ``movie.path`` must
    exist for a movie plume. Nothing is created.
    """
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"config must be a mapping, got {type(cfg).__name__}")
    for group in CLOSED_GROUPS:
        if group in cfg and not isinstance(cfg[group], Mapping):
            raise ConfigError(f"{group} must be a mapping of settings, got {cfg[group]!r}")
    cfg = complete(cfg)
    known = defaults.tree()
    for group in CLOSED_GROUPS:
        for key in sorted(set(cfg[group]) - set(known[group])):
            near = nearest_key(f"{group}.{key}")
            raise ConfigError(f"unknown config key '{group}.{key}'" + (f"; did you mean '{near}'?" if near else
                              f" (known: {', '.join(sorted(known[group]))})"))

    # top level
    _check_name("experiment", cfg["experiment"])
    _int_at_least(cfg, "episodes")
    seed = cfg["seed"]
    _check(_is_int(seed) and 0 <= seed <= SEED_MAX, f"seed must be an integer in [0, {SEED_MAX}], got {seed!r}")
    last = seed + cfg["episodes"] - 1
    _check(last <= SEED_MAX, f"seed + episodes - 1 = {last} exceeds {SEED_MAX} (episode seeds are seed + i)")
    _int_at_least(cfg, "rotate_size", nullable=True)
    _check(isinstance(cfg["parquet"], bool), f"parquet must be true or false, got {cfg['parquet']!r}")

    # env
    env = cfg["env"]
    grid = env["grid_size"]
    _check(
        isinstance(grid, (list, tuple)) and len(grid) == 2 and all(_is_int(v) for v in grid),
        f"env.grid_size must be [W, H] with two integers, got {grid!r}",
    )
    w, h = grid
    _check(w >= 1 and h >= 1, f"env.grid_size must have W, H >= 1, got [{w}, {h}]")
    _check(w <= GRID_MAX and h <= GRID_MAX,
           f"env.grid_size must have W, H <= {GRID_MAX}, got [{_short(w)}, {_short(h)}]")
    _int_at_least(cfg, "env.max_steps", nullable=True)
    _float_in_range(cfg, "env.goal_radius", nullable=True)
    _check_choice(cfg, "env.action_type", ACTION_TYPES)
    _check_choice(cfg, "env.observation_type", OBSERVATION_TYPES)
    _check_choice(cfg, "env.reward_type", REWARD_TYPES)
    _int_at_least(cfg, "env.step_size")
    _float_in_range(cfg, "env.sigma")
    _check_choice(cfg, "env.plume", PLUMES)
    _int_at_least(cfg, "env.n_sensors")
    _float_in_range(cfg, "env.sensor_distance")
    movie = env["plume"] == "movie"
    # A movie defines its own grid; the engine checks locations against it.
    _check_xy("env.goal_location", env["goal_location"], None if movie else (w, h))
    _check_xy("env.start_location", env["start_location"], None if movie else (w, h))
    if env["plume"] == "static":  # (a puff plume has no field)
        from plume_capture.sim.params import field_problem  # the one rule, where the field is made

        problem = field_problem(w, h)
        _check(problem is None, problem or "")

    # wind
    for key in ("direction_deg", "speed", "noise_std"):
        _float_in_range(cfg, f"wind.{key}")

    # movie
    mv = cfg["movie"]
    path = mv["path"]
    _check(path is None or (isinstance(path, str) and path != ""), f"movie.path must be a path or null, got {path!r}")
    _check_choice(cfg, "movie.step_policy", STEP_POLICIES)
    _check_xy("movie.source_location", mv["source_location"], None)
    if movie:
        _check(path is not None, "env.plume is movie but movie.path is not set")
        if check_paths:
            _check(os.path.exists(path.removeprefix("file://")), f"movie.path {path!r} does not exist")

    # puff
    from plume_capture.sim import puff  # its ranges live with the model

    problem = puff.problem(cfg["puff"])
    _check(problem is None, problem or "")

    # policy
    pol = cfg["policy"]
    name = pol["name"]
    _check_choice(cfg, "policy.name", POLICY_ACTIONS)
    misfit = policy_fit_problem(name, env["action_type"])
    _check(misfit is None, misfit or "")
    _float_in_range(cfg, "policy.threshold")
    _int_at_least(cfg, "policy.persistence")
    _float_in_range(cfg, "policy.eps")

    # engine
    eng = cfg["engine"]
    _check_choice(cfg, "engine.kind", ENGINE_KINDS)
    _int_at_least(cfg, "engine.num_actors", nullable=True)
    _int_at_least(cfg, "engine.shard_episodes", nullable=True)
    _int_at_least(cfg, "engine.window", nullable=True)
    _int_at_least(cfg, "engine.headroom_cpus", nullable=True)
    _int_at_least(cfg, "engine.threads", nullable=True)
    addr = eng["address"]
    _check(addr is None or address_problem(addr) is None,
           f"engine.address {_short(addr)}: {address_problem(addr) if isinstance(addr, str) else 'not a string'}")
    if eng["kind"] == "local":  # in-process: a cluster address or actor count would be ignored
        _check(addr is None, f"engine.address {addr!r} needs engine.kind ray or auto, not local")
        _check(eng["num_actors"] is None,
               f"engine.num_actors {eng['num_actors']!r} needs engine.kind ray or auto, not local")
    _check(isinstance(eng["quiet"], bool), f"engine.quiet must be true or false, got {eng['quiet']!r}")

    out = cfg["output"]
    _check(isinstance(out, str) and out.strip() != "", f"output must be a non-empty path, got {out!r}")
    if check_paths:
        _check_output(out, cfg["experiment"])
    return cfg
