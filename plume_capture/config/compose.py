"""Composition of the config tree (Hydra semantics): ``config.yaml`` (``_self_``), then the preset
selected with ``preset=NAME`` (``experiment/NAME.yaml``), then command-line overrides, then explicit
flags (``settings``).

``experiment=NAME`` always sets the experiment *name* (the runbook spelling); presets are selected
with ``preset=NAME``. Keys missing from a config (a custom tree, or after ``~key``) take the
defaults of the shipped ``config.yaml`` (:mod:`plume_capture.defaults`). Hydra and OmegaConf are
imported only when composing.
"""
from __future__ import annotations

import copy
import functools
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from plume_capture import defaults
from plume_capture.config.check import nearest_key, validate_config
from plume_capture.config.yamlcheck import check_yaml_file
from plume_capture.errors import ConfigError

DEFAULT_CONFIG_NAME = defaults.CONFIG_NAME
PRESET_GROUP = "experiment"  # presets live in <config dir>/experiment/NAME.yaml
PRESET_KEY = "preset"  # command-line spelling that selects a preset


def default_config_root() -> Path:
    """``plume_capture/conf`` of an installed wheel, else the repository's ``conf/``."""
    return defaults.config_root()


def default_config() -> dict:
    """The shipped ``config.yaml`` without its defaults list (a fresh copy)."""
    return defaults.tree()


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
        if _nesting(text) > MAX_OVERRIDE_DEPTH:
            raise ConfigError(f"override {_short(text)!r} nests deeper than {MAX_OVERRIDE_DEPTH} levels")
        try:
            (ov,) = parser.parse_overrides([text])
        except RecursionError:
            raise ConfigError(f"override {_short(text)!r} nests too deeply") from None
        except OverrideParseException as exc:
            detail = _one_line(str(exc)).split("; See https://")[0]
            raise ConfigError(f"malformed override {text!r}: {detail}") from None
        if not ov.key_or_group:
            raise ConfigError(f"malformed override {text!r}: missing key (expected key=value)")
        parsed.append(ov)
    return parsed


MAX_OVERRIDE_DEPTH = 32  # brackets within one override ([..], {..}, (..))
MAX_SWEEP_POINTS = 10_000  # runs one -m command may expand to


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


def _nesting(text: str) -> int:
    """The deepest bracket nesting of ``text`` outside quotes."""
    depth = deepest = 0
    quote = None
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]})":
            depth -= 1
    return deepest


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
            values = list(itertools.islice(ov.sweep_string_iterator(), MAX_SWEEP_POINTS + 1))
        except Exception as exc:  # glob sweeps over config groups, etc.
            raise ConfigError(f"cannot expand sweep {text!r}: {_one_line(str(exc))}") from None
        if not values:
            raise ConfigError(f"sweep {text!r} has no values")
        axes.append([f"{key}={v}" for v in values])
        points = 1
        for axis in axes:
            points *= len(axis)
        if points > MAX_SWEEP_POINTS:
            raise ConfigError(f"the sweep expands to more than {MAX_SWEEP_POINTS:,} runs; split it into "
                              "several commands (or fewer values per key)")
    return [list(combo) for combo in itertools.product(*axes)]


def _check_yaml_tree(root: Path) -> None:
    """Every YAML file Hydra may read under ``root`` passes :func:`check_yaml_file` (once per state)."""
    for f in sorted(root.rglob("*.yaml")):
        try:
            st = f.stat()
        except OSError:
            continue
        _checked_yaml(f, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=256)
def _checked_yaml(path: Path, mtime_ns: int, size: int) -> None:
    check_yaml_file(path)


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
    try:
        found = primary.is_file()
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte
        raise ConfigError(f"invalid config name {config_name[:60]!r}: {getattr(exc, 'strerror', None) or exc}") from None
    if not found:
        raise ConfigError(f"config {name!r} not found in config path {shown_root!r} (no {name}.yaml)")
    # Hydra's root is the primary config's directory, so the preset group is `experiment`.
    hydra_root = primary.parent.resolve()
    hydra_name = primary.stem
    _check_yaml_tree(hydra_root)

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
    hydra_apply_value_overrides(parsed, cfg)
    return cfg


#: the hydra-core version :func:`hydra_apply_value_overrides` was written and checked against
HYDRA_CHECKED = "1.3.8"


def hydra_apply_value_overrides(parsed: list, cfg) -> None:
    """Apply parsed value overrides to ``cfg`` (a struct DictConfig) with Hydra's own override step,
    ``ConfigLoaderImpl._apply_overrides_to_config``: the one use of a private Hydra name here
    (a test pins :data:`HYDRA_CHECKED`, so an upgrade fails loudly until re-checked).

    Why not the public API: ``hydra.compose`` re-composes the whole tree on every call. One run
    costs about the same either way, but each further sweep point costs ~45 ms with ``compose``
    and ~3.4 ms here: 100 points compose in 4.6 s against 0.45 s, and the 10,000 points a sweep
    may have in minutes against seconds (``python -m benchmarks.bench_compose``;
    benchmarks/results/compose-20261206-151402.json).
    Reimplementing the step with OmegaConf would have to copy Hydra's semantics (merge of dict
    values, its error texts, which :func:`_hydra_message` reads); calling it keeps them Hydra's."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    ConfigLoaderImpl._apply_overrides_to_config(parsed, cfg)


def _hydra_message(exc: BaseException) -> str:
    msg = _one_line(str(exc))
    m = re.match(r"Could not override '([^']+)'", msg)
    if m:
        key = m.group(1)
        cause = exc.__cause__
        cause_msg = _one_line(str(cause)).split("; full_key")[0] if cause is not None else ""
        if cause is not None and re.search(r"not in struct|Missing key|Key '.*' not in", cause_msg):
            near = nearest_key(key)
            if near:
                return f"unknown config key {key!r}; did you mean {near!r}?"
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
    """Compose, apply ``settings`` (dotted key -> value, e.g. flags), fill defaults, validate.

    Returns the complete config as a plain dict; nulls are kept (see :func:`effective_config`).
    To run it, :func:`load_spec` does the same and resolves it (the check runs once).
    """
    return validate_config(_composed(overrides, config_name, config_path, preset, settings), check_paths=check_paths)


def _composed(overrides, config_name, config_path, preset, settings) -> dict:
    cfg = compose_config(overrides, config_name=config_name, config_path=config_path, preset=preset)
    for key, value in (settings or {}).items():
        _set_dotted(cfg, key, value)
    return cfg


def load_spec(
    overrides: Sequence[str] | Mapping[str, Any] = (),
    *,
    config_name: str = DEFAULT_CONFIG_NAME,
    config_path: str | os.PathLike | None = None,
    preset: str | None = None,
    settings: Mapping[str, Any] | None = None,
    check_paths: bool = True,
):
    """The :class:`~plume_capture.config.RunSpec` of a run: compose the config tree with
    ``overrides`` (as :func:`load_config`), then check and resolve it, once.

    Given a mapping instead of overrides, that config is the run's (missing keys take the
    defaults; ``settings`` still apply): the same as ``RunSpec.from_dict(cfg)``.
    """
    from plume_capture.config.resolve import resolve

    if isinstance(overrides, Mapping):
        cfg = copy.deepcopy(dict(overrides))
        for key, value in (settings or {}).items():
            _set_dotted(cfg, key, value)
        return resolve(cfg, (), check_paths=check_paths)
    overrides = list(overrides)
    return resolve(_composed(overrides, config_name, config_path, preset, settings), overrides,
                   check_paths=check_paths)


def _set_dotted(cfg: dict, key: str, value: Any) -> None:
    node = cfg
    *parents, leaf = key.split(".")
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[leaf] = value




def apply_overrides(base: Mapping[str, Any], overrides: Sequence[str] = (),
                    settings: Mapping[str, Any] | None = None) -> dict:
    """``base`` (a complete config, e.g. an interrupted run's) with value overrides and then
    ``settings`` applied, as Hydra would; presets and sweeps cannot be selected here. A copy."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(copy.deepcopy(dict(base)))
    OmegaConf.set_struct(cfg, True)
    for text, ov in zip(overrides, _parse_overrides(overrides)):
        if ov.is_sweep_override():
            raise ConfigError(f"override {text!r} sweeps over several values; a resumed run is one run")
        if ov.key_or_group == PRESET_KEY or ov.package is not None:
            raise ConfigError(f"override {text!r}: a preset cannot be selected when resuming a run")
        try:
            _apply_value_override(cfg, ov)
        except ConfigError:
            raise
        except Exception as exc:  # OmegaConf validation of the new value
            raise ConfigError(f"cannot apply override {text!r}: {_one_line(str(exc))}") from None
    out = OmegaConf.to_container(cfg, resolve=True)
    for key, value in (settings or {}).items():
        _set_dotted(out, key, value)
    return out
