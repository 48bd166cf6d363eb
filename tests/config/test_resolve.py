"""``resolve``: one frozen RunSpec per config, whose hash covers exactly what runs."""
import dataclasses

import pytest

from plume_capture import defaults
from plume_capture.config import EXECUTION_ONLY_KEYS, RunSpec, complete_config, config_hash, resolve
from plume_capture.sim.params import EnvParams, PolicyParams

#: another valid value for every key of the shipped config (a new key must be added here)
OTHER = {
    "output": "elsewhere", "experiment": "other", "episodes": 3, "seed": 124, "rotate_size": 1000, "parquet": True,
    "env.grid_size": [32, 32], "env.max_steps": 10, "env.goal_radius": 2.0, "env.action_type": "discrete",
    "env.observation_type": "antennae", "env.reward_type": "sparse", "env.step_size": 2,
    "env.goal_location": [3, 3], "env.start_location": [1, 1], "env.sigma": 5.0, "env.plume": "movie",
    "env.n_sensors": 3, "env.sensor_distance": 1.0,
    "wind.direction_deg": 90.0, "wind.speed": 2.0, "wind.noise_std": 0.5,
    "movie.path": "plume.npy", "movie.step_policy": "clamp", "movie.source_location": [2, 2],
    "puff.birth_rate": 0.4, "puff.init_radius": 2.0, "puff.spread_rate": 0.5, "puff.meander_std": 0.0,
    "puff.meander_time": 3.0, "puff.noise_std": 0.0, "puff.dt": 0.5, "puff.max_puffs": 64, "puff.warmup_steps": 0,
    "policy.name": "surge_cast", "policy.threshold": 1e-3, "policy.persistence": 2, "policy.eps": 0.5,
    "engine.kind": "local", "engine.num_actors": 2, "engine.threads": 2, "engine.headroom_cpus": 1,
    "engine.address": "127.0.0.1:6379", "engine.shard_episodes": 5, "engine.window": 3, "engine.quiet": True,
}
#: keys another key needs to be valid
NEEDS = {"env.plume": {"movie.path": "plume.npy"}, "engine.num_actors": {"engine.kind": "ray"},
         "engine.address": {"engine.kind": "ray"},
         **{f"puff.{k}": {"env.plume": "puff"} for k in defaults.group("puff")}}


def _leaves(tree: dict, prefix: str = ""):
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield prefix + k


def _with(cfg: dict, changes: dict) -> dict:
    out = complete_config(cfg)
    for key, value in changes.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return out


def _runs(spec: RunSpec) -> tuple:
    """What a run's records depend on."""
    return (spec.env, spec.policy, spec.episodes, spec.seed)


def test_every_key_has_another_value_here():
    assert sorted(_leaves(defaults.tree())) == sorted(OTHER)


@pytest.mark.parametrize("key", sorted(OTHER))
def test_hash_changes_with_each_key_unless_execution_only(key):
    base_changes = NEEDS.get(key, {})
    base = resolve(_with({}, {k: v for k, v in base_changes.items() if k != key}), check_paths=False)
    changed = resolve(_with({}, {**base_changes, key: OTHER[key]}), check_paths=False)
    if key.split(".")[0] in EXECUTION_ONLY_KEYS:
        assert changed.config_hash == base.config_hash
        assert _runs(changed) == _runs(base)
    else:
        assert changed.config_hash != base.config_hash
        assert _runs(changed) != _runs(base)


def test_puff_settings_neither_hash_nor_run_for_other_plumes():
    for key, value in OTHER.items():
        if key.startswith("puff."):
            base = resolve(_with({}, {}), check_paths=False)
            changed = resolve(_with({}, {key: value}), check_paths=False)
            assert changed.config_hash == base.config_hash and _runs(changed) == _runs(base), key


def test_the_spec_is_frozen_and_built_from_what_is_hashed():
    spec = resolve(_with({}, {"env.max_steps": None, "env.goal_radius": 0, "policy.eps": 1}), check_paths=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.seed = 1
    assert spec.config_hash == config_hash(spec.config)
    assert spec.env.max_steps == 1000 and spec.env.goal_radius > 0 and spec.env.goal_location == (63, 63)
    assert isinstance(spec.policy.eps, float)
    assert spec.env.build().params == EnvParams.from_config(spec.config).build().params


def test_defaults_come_from_the_shipped_config():
    tree = defaults.tree()
    assert PolicyParams() == PolicyParams(**tree["policy"])
    p = EnvParams()
    assert list(p.grid_size) == tree["env"]["grid_size"] and p.sigma == tree["env"]["sigma"]
    assert (p.wind_speed, p.movie_step_policy) == (tree["wind"]["speed"], tree["movie"]["step_policy"])
    assert resolve({}, check_paths=False).env.build().params == EnvParams().build().params
