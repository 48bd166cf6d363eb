"""Capture configuration: composition (Hydra), validation, effective values and config_hash.

The config tree lives in ``conf/`` (shipped in the wheel as ``plume_capture/conf``). Composition
order, as in Hydra: ``config.yaml`` (``_self_``), then the preset selected with ``preset=NAME``
(``experiment/NAME.yaml``), then command-line overrides, then explicit flags (``settings``).

``experiment=NAME`` always sets the experiment *name* (the runbook spelling); presets are selected
with ``preset=NAME``. Keys missing from a config (a custom tree, or after ``~key``) take the
defaults of the shipped ``config.yaml``.

Heavy engine modules (ray, numba, polars) are never imported here; Hydra and OmegaConf are
imported only when composing.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from plume_capture.errors import ConfigError

__all__ = [
    "ConfigError",
    "DEFAULT_CONFIG_NAME",
    "EXECUTION_ONLY_KEYS",
    "PRESET_GROUP",
    "complete_config",
    "compose_config",
    "config_hash",
    "default_config",
    "default_config_root",
    "effective_config",
    "expand_sweeps",
    "load_config",
    "validate_config",
]

DEFAULT_CONFIG_NAME = "data_capture/config"
PRESET_GROUP = "experiment"  # presets live in <config dir>/experiment/NAME.yaml
PRESET_KEY = "preset"  # command-line spelling that selects a preset

#: Top-level keys left out of config_hash: they never change a record (SPEC §8, §10.4).
EXECUTION_ONLY_KEYS: dict[str, str] = {
    "output": "where run directories are written, not what they contain",
    "experiment": "names the run's directory; no record contains it",
    "rotate_size": "splits the same records over more files",
    "parquet": "adds a Parquet copy of the same records",
    "engine": "how and where the work runs (local/Ray, address, actors, shards, progress display)",
}

from plume_capture.spec import SEED_MAX  # noqa: E402
DEFAULT_MAX_STEPS = 1000
DEFAULT_GOAL_RADIUS = 5.0
FLOAT32_EPS = 1.1920928955078125e-07

ACTION_TYPES = ("discrete", "oriented", "run_tumble")
OBSERVATION_TYPES = ("concentration", "antennae", "wind_vector")
REWARD_TYPES = ("step_penalty", "sparse")
PLUMES = ("static", "movie")
STEP_POLICIES = ("wrap", "clamp")
ENGINE_KINDS = ("auto", "local", "ray")
#: policy name -> action types it can drive
POLICY_ACTIONS: dict[str, tuple[str, ...]] = {
    "random": ACTION_TYPES,
    "surge_cast": ("oriented",),
    "temporal_derivative": ("oriented",),
    "run_tumble_chemotaxis": ("run_tumble",),
}
#: groups whose keys the engine consumes; an unknown key inside one is always an error
CLOSED_GROUPS = ("env", "wind", "movie", "policy", "engine")


# --------------------------------------------------------------------------------------------
# config tree discovery and defaults

def default_config_root() -> Path:
    """``plume_capture/conf`` of an installed wheel, else the repository's ``conf/``."""
    here = Path(__file__).resolve().parents[1]
    packaged = here / "conf"
    return packaged if packaged.is_dir() else here.parent / "conf"


@functools.lru_cache(maxsize=1)
def _defaults() -> dict:
    path = default_config_root() / (DEFAULT_CONFIG_NAME + ".yaml")
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    cfg.pop("defaults", None)
    return cfg


def default_config() -> dict:
    """The shipped ``config.yaml`` without its defaults list (a fresh copy)."""
    return copy.deepcopy(_defaults())


def complete_config(cfg: Mapping[str, Any]) -> dict:
    """``cfg`` with missing keys filled from :func:`default_config` (``cfg`` wins); a copy."""
    out = default_config()
    for key, value in dict(cfg).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key].update(copy.deepcopy(dict(value)))
        else:
            out[key] = copy.deepcopy(value)
    if _is_int(out.get("experiment")):  # experiment=2024 on the command line
        out["experiment"] = str(out["experiment"])
    return out


# --------------------------------------------------------------------------------------------
# composition (Hydra)

def _one_line(msg: str) -> str:
    lines = [ln.strip() for ln in str(msg).strip().splitlines()]
    return "; ".join(ln for ln in lines if ln)


def _parse_overrides(overrides: Sequence[str]) -> list:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    parsed = []
    for text in overrides:
        if not isinstance(text, str):
            raise ConfigError(f"override must be a string, got {text!r}")
        try:
            (ov,) = parser.parse_overrides([text])
        except OverrideParseException as exc:
            detail = _one_line(str(exc)).split("; See https://")[0]
            raise ConfigError(f"malformed override {text!r}: {detail}") from None
        if not ov.key_or_group:
            raise ConfigError(f"malformed override {text!r}: missing key (expected key=value)")
        parsed.append(ov)
    return parsed


def expand_sweeps(overrides: Sequence[str]) -> list[list[str]]:
    """Cartesian product of the sweep overrides (``k=a,b``, ``k=range(1,3)``, ``choice(...)``).

    The first swept key varies slowest, as with Hydra's basic sweeper. Without sweeps this is
    ``[list(overrides)]``.
    """
    import itertools

    axes: list[list[str]] = []
    for text, ov in zip(overrides, _parse_overrides(overrides)):
        if not ov.is_sweep_override():
            axes.append([text])
            continue
        if ov.is_interval_sweep():
            raise ConfigError(f"cannot expand interval sweep {text!r}: give the values (k=a,b) or range()")
        if ov.is_delete():
            raise ConfigError(f"cannot sweep a deletion: {text!r}")
        key = ov.get_key_element()
        try:
            values = list(ov.sweep_string_iterator())
        except Exception as exc:  # glob sweeps over config groups, etc.
            raise ConfigError(f"cannot expand sweep {text!r}: {_one_line(str(exc))}") from None
        if not values:
            raise ConfigError(f"sweep {text!r} has no values")
        axes.append([f"{key}={v}" for v in values])
    return [list(combo) for combo in itertools.product(*axes)]


def _primary_defaults(path: Path) -> list:
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"cannot read config {str(path)!r}: {_one_line(str(exc))}") from None
    return copy.deepcopy(_read_defaults(path, st.st_mtime_ns, st.st_size))


@functools.lru_cache(maxsize=16)
def _read_defaults(path: Path, mtime_ns: int, size: int) -> list:
    """The defaults list of one state of ``path`` (a sweep reads it once, not once per point)."""
    from omegaconf import OmegaConf

    try:
        raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception as exc:
        raise ConfigError(f"cannot read config {str(path)!r}: {_one_line(str(exc))}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config {str(path)!r} is not a mapping")
    defaults = raw.get("defaults") or []
    return defaults if isinstance(defaults, list) else []


def _compose_without_hydra(primary: Path) -> dict | None:
    """Without overrides, a primary config whose defaults list is only ``_self_`` and unselected
    (``GROUP: null``) groups composes to the file itself: load it with OmegaConf and skip Hydra
    (~0.5 s of start-up). Returns None whenever Hydra is needed."""
    from omegaconf import OmegaConf

    try:
        cfg = OmegaConf.load(primary)
    except Exception:
        return None
    defaults = cfg.get("defaults") if isinstance(cfg, type(OmegaConf.create({}))) else None
    if defaults is not None:
        for entry in defaults:
            if entry == "_self_":
                continue
            if isinstance(entry, type(OmegaConf.create({}))) and len(entry) == 1 \
                    and next(iter(entry.values())) is None and not str(next(iter(entry.keys()))).startswith("override"):
                continue
            return None
        del cfg["defaults"]
    try:
        out = OmegaConf.to_container(cfg, resolve=True)
    except Exception:
        return None
    return out if isinstance(out, dict) else None


def _preset_override_key(defaults: list) -> str:
    """Hydra override key that selects a preset, given the primary config's defaults list."""
    for entry in defaults:
        if not isinstance(entry, dict) or len(entry) != 1:
            continue
        (key,) = entry
        key = str(key)
        for prefix in ("override ", "optional "):
            if key.startswith(prefix):
                key = key[len(prefix):].strip()
        group, _, package = key.lstrip("/").partition("@")
        if group.strip() == PRESET_GROUP:
            return PRESET_GROUP + (f"@{package.strip()}" if package.strip() else "")
    return "+" + PRESET_GROUP  # not declared: append after the primary config


def _apply_value_override(cfg, ov) -> None:
    """Apply a plain value override to ``cfg`` (an OmegaConf DictConfig) the way Hydra does."""
    from omegaconf import OmegaConf, open_dict

    key = ov.key_or_group
    exists = OmegaConf.select(cfg, key, default=_MISSING) is not _MISSING
    with open_dict(cfg):
        if ov.is_delete():
            if not exists:
                raise ConfigError(f"cannot delete {key!r}: no such key")
            del cfg[key]
        elif ov.is_add() and exists:
            hint = "; to select a preset use preset=NAME" if key == "experiment" else ""
            raise ConfigError(f"cannot add {key!r}: the key already exists (use {key}=... or ++{key}=...){hint}")
        elif not ov.is_add() and not ov.is_force_add() and not exists:
            raise ConfigError(f"unknown config key {key!r} (use +{key}=... to add a new key)")
        else:
            OmegaConf.update(cfg, key, ov.value(), merge=False)


_MISSING = object()


def compose_config(
    overrides: Sequence[str] = (),
    *,
    config_name: str = DEFAULT_CONFIG_NAME,
    config_path: str | os.PathLike | None = None,
    preset: str | None = None,
) -> dict:
    """Compose the config tree with Hydra and return it as a plain dict (interpolations resolved).

    ``config_path`` replaces the config root (default :func:`default_config_root`);
    ``config_name`` is relative to it (``data_capture/config``). ``preset=NAME`` among the
    overrides (or the ``preset`` argument, applied last) selects ``experiment/NAME.yaml`` next to
    the primary config; ``experiment=NAME`` sets the experiment name. Sweeps are not allowed here
    (see :func:`expand_sweeps`). Raises :class:`ConfigError` on any bad input.
    """
    root = Path(config_path) if config_path is not None else default_config_root()
    shown_root = str(config_path) if config_path is not None else str(root)
    if not root.exists():
        raise ConfigError(f"config path {shown_root!r} does not exist")
    if not root.is_dir():
        raise ConfigError(f"config path {shown_root!r} is not a directory")
    name = str(config_name or "").strip()
    if name.endswith(".yaml"):
        name = name[: -len(".yaml")]
    if not name or name.startswith("/") or name.endswith("/"):
        raise ConfigError(f"invalid config name {config_name!r}")
    primary = root / (name + ".yaml")
    if not primary.is_file():
        raise ConfigError(f"config {name!r} not found in config path {shown_root!r} (no {name}.yaml)")
    # Hydra's root is the primary config's directory, so the preset group is `experiment`.
    hydra_root = primary.parent.resolve()
    hydra_name = primary.stem

    tokens = list(overrides) + ([f"{PRESET_KEY}={preset}"] if preset is not None else [])
    if not tokens:
        fast = _compose_without_hydra(primary)
        if fast is not None:
            return fast
    parsed = _parse_overrides(tokens)
    preset_key = _preset_override_key(_primary_defaults(primary))
    is_preset = [ov.key_or_group == PRESET_KEY and ov.package is None for ov in parsed]
    last_preset = max((i for i, p in enumerate(is_preset) if p), default=-1)
    hydra_overrides: list[str] = []
    late = []  # experiment=NAME: a value, whatever groups exist
    for i, (text, ov) in enumerate(zip(tokens, parsed)):
        if ov.is_sweep_override():
            raise ConfigError(
                f"override {text!r} sweeps over several values: add -m/--multirun to run each, "
                "write a list as [a,b], or quote a string value"
            )
        if is_preset[i] and i != last_preset:  # only the last selection counts
            continue
        if ov.key_or_group.split(".")[0].split("/")[0] == "hydra":
            raise ConfigError(f"override {text!r}: hydra.* settings have no effect here (no Hydra app runs)")
        if ov.key_or_group == PRESET_KEY and ov.package is None:
            value = ov.value()
            if (ov.is_delete() or ov.is_add() or ov.is_force_add() or not isinstance(value, str) or not value
                    or ".." in value.split("/") or value.startswith("/")):
                raise ConfigError(f"invalid preset selection {text!r}: use preset=NAME")
            if not (hydra_root / PRESET_GROUP / f"{value}.yaml").is_file():
                available = sorted(p.stem for p in (hydra_root / PRESET_GROUP).glob("*.yaml"))
                raise ConfigError(
                    f"preset {value!r} not found in {PRESET_GROUP}/ next to {name}.yaml "
                    f"(available: {', '.join(available) or 'none'})"
                )
            hydra_overrides.append(f"{preset_key}={value}")
        elif ov.key_or_group == "experiment" and ov.package is None:
            late.append(ov)
        else:
            hydra_overrides.append(text)

    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    def run(overrides: list[str], late: list):
        cfg = _compose_values_on_base(hydra_root, hydra_name, overrides)
        if cfg is None:
            with initialize_config_dir(config_dir=str(hydra_root), version_base=None):
                cfg = compose(config_name=hydra_name, overrides=overrides)
        for ov in late:
            _apply_value_override(cfg, ov)
        return OmegaConf.to_container(cfg, resolve=True)

    errors = (HydraException, OmegaConfBaseException, ValueError)
    try:
        out = run(hydra_overrides, late)
    except ConfigError:
        raise
    except MissingConfigException as exc:
        raise ConfigError(_one_line(str(exc)).split("; Config search path")[0]) from None
    except errors as exc:
        msg = _hydra_message(exc)
        if not msg.startswith(("unknown config key", "cannot override")):
            for text in hydra_overrides:  # name the override that fails on its own, if one does
                try:
                    run([text], [])
                except errors:
                    msg = f"cannot apply override {text!r}: {msg}"
                    break
        raise ConfigError(msg) from None
    if not isinstance(out, dict):
        raise ConfigError(f"config {name!r} is not a mapping")
    out.pop("hydra", None)
    return out


_BASE_CACHE: dict = {}


def _compose_values_on_base(hydra_root: Path, hydra_name: str, overrides: list[str]):
    """What ``compose(hydra_name, overrides)`` returns when every override only sets a config value
    (no group selection, no ``+``/``++``/``~``): Hydra's own composition of the base config
    (cached per process and per state of the config files, ~0.15 s each) with Hydra's own
    override step applied to a copy. None when the overrides need a full composition."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from omegaconf import OmegaConf

    parsed = _parse_overrides(overrides)
    groups = {d.name for d in hydra_root.iterdir() if d.is_dir()}
    for ov in parsed:
        if (ov.package is not None or ov.is_add() or ov.is_force_add() or ov.is_delete()
                or ov.key_or_group.replace("/", ".").split(".")[0] in groups):
            return None
    stamp = tuple(sorted((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in hydra_root.rglob("*.yaml")))
    key = (str(hydra_root), hydra_name)
    cached = _BASE_CACHE.get(key)
    if cached is None or cached[0] != stamp:
        from hydra import compose, initialize_config_dir

        with initialize_config_dir(config_dir=str(hydra_root), version_base=None):
            base = compose(config_name=hydra_name, overrides=[])
        cached = _BASE_CACHE[key] = (stamp, base)
    cfg = copy.deepcopy(cached[1])
    OmegaConf.set_struct(cfg, True)
    ConfigLoaderImpl._apply_overrides_to_config(parsed, cfg)
    return cfg


def _hydra_message(exc: BaseException) -> str:
    msg = _one_line(str(exc))
    m = re.match(r"Could not override '([^']+)'", msg)
    if m:
        key = m.group(1)
        cause = exc.__cause__
        cause_msg = _one_line(str(cause)).split("; full_key")[0] if cause is not None else ""
        if cause is not None and re.search(r"not in struct|Missing key|Key '.*' not in", cause_msg):
            return f"unknown config key {key!r} (use +{key}=... to add a new key)"
        if cause_msg:
            return f"cannot override {key!r}: {cause_msg}"
        return f"cannot override {key!r}: {msg}"
    msg = msg.split("; full_key")[0]
    full_key = getattr(exc, "full_key", None)
    return f"{full_key}: {msg}" if full_key and full_key not in msg else msg


def load_config(
    overrides: Sequence[str] = (),
    *,
    config_name: str = DEFAULT_CONFIG_NAME,
    config_path: str | os.PathLike | None = None,
    preset: str | None = None,
    settings: Mapping[str, Any] | None = None,
    check_paths: bool = True,
) -> dict:
    """Compose, fill defaults, apply ``settings`` (dotted key -> value, e.g. flags), validate.

    Returns the complete config as a plain dict; nulls are kept (see :func:`effective_config`).
    """
    cfg = complete_config(
        compose_config(overrides, config_name=config_name, config_path=config_path, preset=preset)
    )
    for key, value in (settings or {}).items():
        _set_dotted(cfg, key, value)
    validate_config(cfg, check_paths=check_paths)
    return cfg


def _set_dotted(cfg: dict, key: str, value: Any) -> None:
    node = cfg
    *parents, leaf = key.split(".")
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[leaf] = value


# --------------------------------------------------------------------------------------------
# validation

def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v: Any) -> bool:
    return _is_num(v) and math.isfinite(v)


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise ConfigError(msg)


def _int_at_least(cfg: dict, key: str, low: int, *, nullable: bool = False) -> None:
    v = _get(cfg, key)
    if nullable and v is None:
        return
    tail = " or null" if nullable else ""
    _check(_is_int(v) and v >= low, f"{key} must be an integer >= {low}{tail}, got {v!r}")


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


def validate_config(cfg: Mapping[str, Any], *, check_paths: bool = True) -> None:
    """Raise :class:`ConfigError` naming the first problem in ``cfg``; missing keys take defaults.

    ``check_paths`` also checks the file system: the output root (and ``<output>/<experiment>``
    if it exists) must be a writable directory or creatable below one, and ``movie.path`` must
    exist for a movie plume. Nothing is created.
    """
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"config must be a mapping, got {type(cfg).__name__}")
    for group in CLOSED_GROUPS:
        if group in cfg and not isinstance(cfg[group], Mapping):
            raise ConfigError(f"{group} must be a mapping of settings, got {cfg[group]!r}")
    cfg = complete_config(cfg)
    known = _defaults()
    for group in CLOSED_GROUPS:
        for key in sorted(set(cfg[group]) - set(known[group])):
            raise ConfigError(f"unknown config key '{group}.{key}' (known: {', '.join(sorted(known[group]))})")

    # top level
    _check_name("experiment", cfg["experiment"])
    _int_at_least(cfg, "episodes", 1)
    seed = cfg["seed"]
    _check(_is_int(seed) and 0 <= seed <= SEED_MAX, f"seed must be an integer in [0, {SEED_MAX}], got {seed!r}")
    last = seed + cfg["episodes"] - 1
    _check(last <= SEED_MAX, f"seed + episodes - 1 = {last} exceeds {SEED_MAX} (episode seeds are seed + i)")
    _int_at_least(cfg, "rotate_size", 1, nullable=True)
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
    _int_at_least(cfg, "env.max_steps", 1, nullable=True)
    r = env["goal_radius"]
    _check(r is None or (_finite(r) and r >= 0), f"env.goal_radius must be a finite number >= 0 or null, got {r!r}")
    _check_choice(cfg, "env.action_type", ACTION_TYPES)
    _check_choice(cfg, "env.observation_type", OBSERVATION_TYPES)
    _check_choice(cfg, "env.reward_type", REWARD_TYPES)
    _int_at_least(cfg, "env.step_size", 1)
    s = env["sigma"]
    _check(_finite(s) and s > 0, f"env.sigma must be a finite number > 0, got {s!r}")
    _check_choice(cfg, "env.plume", PLUMES)
    _int_at_least(cfg, "env.n_sensors", 1)
    d = env["sensor_distance"]
    _check(_finite(d) and d >= 0, f"env.sensor_distance must be a finite number >= 0, got {d!r}")
    movie = env["plume"] == "movie"
    # A movie defines its own grid; the engine checks locations against it.
    _check_xy("env.goal_location", env["goal_location"], None if movie else (w, h))
    _check_xy("env.start_location", env["start_location"], None if movie else (w, h))
    if not movie:
        _check_field_fits(w, h)

    # wind
    wind = cfg["wind"]
    for key in ("direction_deg", "speed"):
        _check(_finite(wind[key]), f"wind.{key} must be a finite number, got {wind[key]!r}")
    v = wind["noise_std"]
    _check(_finite(v) and v >= 0, f"wind.noise_std must be a finite number >= 0, got {v!r}")

    # movie
    mv = cfg["movie"]
    path = mv["path"]
    _check(path is None or (isinstance(path, str) and path != ""), f"movie.path must be a path or null, got {path!r}")
    _check_choice(cfg, "movie.step_policy", STEP_POLICIES)
    _check_xy("movie.source_location", mv["source_location"], None)
    if movie:
        _check(path is not None, "env.plume is movie but movie.path is not set")
        if check_paths:
            _check(os.path.exists(path), f"movie.path {path!r} does not exist")

    # policy
    pol = cfg["policy"]
    name = pol["name"]
    _check_choice(cfg, "policy.name", POLICY_ACTIONS)
    fits = POLICY_ACTIONS[name]
    _check(
        env["action_type"] in fits,
        f"policy.name {name!r} needs env.action_type {' or '.join(fits)}, got {env['action_type']!r}",
    )
    _check(_finite(pol["threshold"]), f"policy.threshold must be a finite number, got {pol['threshold']!r}")
    _int_at_least(cfg, "policy.persistence", 0)
    eps = pol["eps"]
    _check(_finite(eps) and 0 <= eps <= 1, f"policy.eps must be a number in [0, 1], got {eps!r}")

    # engine
    eng = cfg["engine"]
    _check_choice(cfg, "engine.kind", ENGINE_KINDS)
    _int_at_least(cfg, "engine.num_actors", 1, nullable=True)
    _int_at_least(cfg, "engine.shard_episodes", 1, nullable=True)
    _int_at_least(cfg, "engine.window", 1, nullable=True)
    _int_at_least(cfg, "engine.headroom_cpus", 0, nullable=True)
    _int_at_least(cfg, "engine.threads", 1, nullable=True)
    addr = eng["address"]
    _check(addr is None or (isinstance(addr, str) and addr.strip() != ""),
           f"engine.address must be a Ray address or null, got {addr!r}")
    if eng["kind"] == "local":  # in-process: a cluster address or actor count would be ignored
        _check(addr is None, f"engine.address {addr!r} needs engine.kind ray or auto, not local")
        _check(eng["num_actors"] is None,
               f"engine.num_actors {eng['num_actors']!r} needs engine.kind ray or auto, not local")
    _check(isinstance(eng["quiet"], bool), f"engine.quiet must be true or false, got {eng['quiet']!r}")

    out = cfg["output"]
    _check(isinstance(out, str) and out.strip() != "", f"output must be a non-empty path, got {out!r}")
    if check_paths:
        _check_output(out, cfg["experiment"])


def _check_field_fits(w: int, h: int) -> None:
    need = w * h * 4  # one float32 concentration field
    if need <= 1 << 30:
        return
    import psutil

    total = psutil.virtual_memory().total
    _check(
        need < total,
        f"env.grid_size {w}x{h} needs {need / 2**30:.1f} GiB for the concentration field, "
        f"more than this machine's memory ({total / 2**30:.1f} GiB)",
    )


# --------------------------------------------------------------------------------------------
# effective values and config_hash

def effective_config(cfg: Mapping[str, Any]) -> dict:
    """Validated complete config with nulls resolved to what runs and numbers normalised.

    ``max_steps`` null -> 1000; ``goal_radius`` null -> 5.0, 0 -> float32 eps; static-plume
    ``goal_location`` null -> ``[min(64, W-1), min(64, H-1)]``; float settings as floats; pairs
    as lists. Settings that depend on a movie file (its grid and source) are left as given.
    """
    validate_config(cfg, check_paths=False)
    out = complete_config(cfg)
    env = out["env"]
    w, h = (int(v) for v in env["grid_size"])
    env["grid_size"] = [w, h]
    if env["max_steps"] is None:
        env["max_steps"] = DEFAULT_MAX_STEPS
    r = DEFAULT_GOAL_RADIUS if env["goal_radius"] is None else float(env["goal_radius"])
    env["goal_radius"] = FLOAT32_EPS if r == 0 else r
    for key in ("goal_location", "start_location"):
        if env[key] is not None:
            env[key] = [int(c) for c in env[key]]
    if env["goal_location"] is None and env["plume"] == "static":
        env["goal_location"] = [min(64, w - 1), min(64, h - 1)]
    env["sigma"] = float(env["sigma"])
    env["sensor_distance"] = float(env["sensor_distance"])
    out["wind"] = {k: float(v) for k, v in out["wind"].items()}
    if out["movie"]["source_location"] is not None:
        out["movie"]["source_location"] = [int(c) for c in out["movie"]["source_location"]]
    out["policy"]["threshold"] = float(out["policy"]["threshold"])
    out["policy"]["eps"] = float(out["policy"]["eps"])
    return out


def config_hash(cfg: Mapping[str, Any]) -> str:
    """SHA-256 hex of the effective config minus :data:`EXECUTION_ONLY_KEYS` (SPEC §10.4).

    Serialised as ``json.dumps(..., sort_keys=True, separators=(",", ":"))``. Equal for the same
    data whatever the spelling (``--grid 8x8`` or ``env.grid_size=[8,8]``, ``max_steps: null``
    or ``1000``), output root or engine settings.
    """
    data = {k: v for k, v in effective_config(cfg).items() if k not in EXECUTION_ONLY_KEYS}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
