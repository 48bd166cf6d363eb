"""Value overrides applied to the cached base composition give what a full Hydra composition gives."""
from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from plume_capture.config import ConfigError, compose_config, default_config_root

CASES = [
    ["seed=3", "episodes=2", "env.grid_size=[8,8]"],
    ["env.max_steps=50", "env.action_type=discrete", "policy.name=random", "wind.noise_std=0.25"],
    ["env.goal_location=[3,4]", "env.sigma=2.5", "parquet=true", "output=/tmp/x"],
    ["seed=1", "seed=2"],
]


def _hydra(overrides):
    root = (default_config_root() / "data_capture").resolve()
    with initialize_config_dir(config_dir=str(root), version_base=None):
        cfg = compose(config_name="config", overrides=overrides)
    out = OmegaConf.to_container(cfg, resolve=True)
    out.pop("hydra", None)
    return out


@pytest.mark.parametrize("overrides", CASES)
def test_cached_base_matches_full_composition(overrides):
    first = compose_config(overrides)
    assert first == _hydra(overrides)
    assert compose_config(overrides) == first  # second call: from the cached base


def test_cached_base_is_not_mutated_by_overrides():
    compose_config(["seed=999", "env.grid_size=[9,9]"])
    assert compose_config(["episodes=1"]) == _hydra(["episodes=1"])


def test_unknown_key_still_rejected():
    with pytest.raises(ConfigError, match="unknown config key 'env.nope'"):
        compose_config(["env.nope=1"])
