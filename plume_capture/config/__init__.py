"""Capture configuration: compose (Hydra) -> check -> resolve into one frozen :class:`RunSpec`,
once: :func:`load_spec` (or ``RunSpec.from_dict(cfg)`` for a config given as a dict).

- :mod:`~plume_capture.config.compose`: the config tree (``conf/``), presets, overrides, sweeps;
- :mod:`~plume_capture.config.check`: the one check of every key (no engine module imported);
- :mod:`~plume_capture.config.resolve`: effective values, ``config_hash`` and ``RunSpec``.

Defaults live in the shipped ``config.yaml`` (:mod:`plume_capture.defaults`).
"""
from plume_capture.config.check import CLOSED_GROUPS, ENGINE_KINDS, complete as complete_config, validate_config
from plume_capture.config.compose import (DEFAULT_CONFIG_NAME, PRESET_GROUP, PRESET_KEY, apply_overrides,
                                          compose_config, default_config, default_config_root, expand_sweeps,
                                          load_config, load_spec)
from plume_capture.config.resolve import (EXECUTION_ONLY_KEYS, EngineSpec, RunSpec, config_hash, effective_config,
                                          resolve)
from plume_capture.errors import ConfigError

__all__ = [
    "CLOSED_GROUPS",
    "ConfigError",
    "DEFAULT_CONFIG_NAME",
    "ENGINE_KINDS",
    "EXECUTION_ONLY_KEYS",
    "EngineSpec",
    "PRESET_GROUP",
    "PRESET_KEY",
    "RunSpec",
    "apply_overrides",
    "complete_config",
    "compose_config",
    "config_hash",
    "default_config",
    "default_config_root",
    "effective_config",
    "expand_sweeps",
    "load_config",
    "load_spec",
    "resolve",
    "validate_config",
]
