"""The shipped config tree and its base config: the one home of every default (docs/spec.md §10.1).

``conf/data_capture/config.yaml`` (``plume_capture/conf`` in a wheel) is read once per process with
PyYAML; the config check, the engine's parameter records and the gymnasium env all take their
defaults from it.
"""
from __future__ import annotations

import copy
import functools
from pathlib import Path

CONFIG_NAME = "data_capture/config"


def config_root() -> Path:
    """``plume_capture/conf`` of an installed wheel, else the repository's ``conf/``."""
    here = Path(__file__).resolve().parent
    packaged = here / "conf"
    return packaged if packaged.is_dir() else here.parent / "conf"


@functools.lru_cache(maxsize=1)
def _tree() -> dict:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(config_root() / (CONFIG_NAME + ".yaml"), encoding="utf-8") as f:
        tree = yaml.load(f, Loader=loader)
    tree.pop("defaults", None)
    return tree


def tree() -> dict:
    """The base config without its defaults list (a fresh copy)."""
    return copy.deepcopy(_tree())


def group(name: str) -> dict:
    """One group of the base config (``env``, ``wind``, ``movie``, ``policy``, ``engine``; a copy)."""
    return copy.deepcopy(_tree()[name])
