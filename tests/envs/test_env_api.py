"""The single env's gymnasium contract (docs/spec.md §12): env checker, spaces, info keys, state errors,
invalid actions and seeds, and configuration errors."""
import math
import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import plume_capture.envs  # noqa: F401  (registers PlumeNav-v0)
from plume_capture.envs import PlumeNavEnv
from plume_capture.errors import ConfigError

CHECK_CONFIGS = [
    {},
    dict(grid_size=(13, 7), goal_location=(12, 0), action_type="discrete", observation_type="antennae",
         n_sensors=3, reward_type="sparse", step_size=3),
    dict(grid_size=(8, 8), goal_location=(0, 7), action_type="oriented", observation_type="antennae",
         goal_radius=0, max_steps=20),
    dict(action_type="run_tumble", observation_type="wind_vector", wind_noise_std=0.5, wind_direction_deg=30.0),
    dict(grid_size=(1, 1), action_type="run_tumble", max_steps=10),  # every episode ends on its first step
    dict(grid_size=(200, 3), action_type="discrete", start_location=(100, 1)),
]
INFO_KEYS = {"agent_position", "agent_xy", "distance_to_goal", "goal_location", "source_location",
             "step_count", "total_reward", "goal_reached", "episode_count"}


def make(**kw):
    return gymnasium.make("PlumeNav-v0", **kw)


@pytest.mark.parametrize("kw", CHECK_CONFIGS, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()) or "defaults")
def test_env_checker_passes(kw):
    env = make(**kw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped, skip_render_check=True)
    msgs = [str(w.message) for w in caught]
    # Box(-inf, inf) is what docs/spec.md §5 specifies for wind_vector; nothing else may warn.
    assert all("infinity" in m for m in msgs), msgs
    if kw.get("observation_type") != "wind_vector":
        assert not msgs


@pytest.mark.nojit
def test_defaults_spaces_and_info():
    env = make()
    p = env.unwrapped.params
    assert p.grid_size == (64, 64) and p.goal_location == (63, 63) and p.goal_radius == 5.0
    assert p.sigma == 20.0 and p.max_steps == 1000 and p.step_size == 1 and p.start_location is None
    assert (p.action_type, p.observation_type, p.reward_type) == ("oriented", "concentration", "step_penalty")
    assert env.action_space == gymnasium.spaces.Discrete(3)
    assert env.observation_space == gymnasium.spaces.Box(0.0, 1.0, (1,), np.float32)
    obs, info = env.reset(seed=7)
    assert obs.dtype == np.float32 and obs in env.observation_space
    assert set(info) >= INFO_KEYS | {"seed"} and info["seed"] == 7
    assert info["goal_location"] == info["source_location"] == (63, 63)
    assert info["episode_count"] == 1
    obs, rew, term, trunc, info = env.step(0)
    assert set(info) >= INFO_KEYS and info["step_count"] == 1 and info["total_reward"] == rew == -0.01
    assert type(rew) is float and type(term) is bool and type(trunc) is bool
    _, info = env.reset()  # unseeded: no "seed" key, the episode count goes on
    assert "seed" not in info and info["episode_count"] == 2


@pytest.mark.parametrize("kw, space", [
    (dict(observation_type="antennae"), gymnasium.spaces.Box(0.0, 1.0, (2,), np.float32)),
    (dict(observation_type="antennae", n_sensors=3), gymnasium.spaces.Box(0.0, 1.0, (3,), np.float32)),
    (dict(observation_type="wind_vector"), gymnasium.spaces.Box(-np.inf, np.inf, (2,), np.float32)),
])
def test_observation_spaces(kw, space):
    env = make(**kw)
    assert env.observation_space == space
    obs, _ = env.reset(seed=0)
    assert obs.shape == space.shape and obs.dtype == np.float32


def test_wind_vector_without_noise_is_the_constant_wind():
    env = make(observation_type="wind_vector", wind_speed=2.0, wind_direction_deg=90.0)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, np.array([2.0 * math.cos(math.pi / 2), 2.0], np.float32))
    assert np.array_equal(env.step(0)[0], obs)


def test_unseeded_resets_are_reproducible_from_the_first_seed():
    a, b = make(grid_size=(32, 32)), make(grid_size=(32, 32))
    a.reset(seed=11)
    b.reset(seed=11)
    starts_a = [a.reset()[1]["agent_position"] for _ in range(10)]
    starts_b = [b.reset()[1]["agent_position"] for _ in range(10)]
    assert starts_a == starts_b and len(set(starts_a)) > 1


# --- state errors ---------------------------------------------------------------------------------

@pytest.mark.nojit
@pytest.mark.parametrize("env_factory", [make, PlumeNavEnv], ids=["make", "direct"])
def test_step_before_reset_raises(env_factory):
    env = env_factory()
    with pytest.raises((RuntimeError, gymnasium.error.ResetNeeded)):  # the latter: gymnasium's wrapper
        env.step(0)


@pytest.mark.nojit
@pytest.mark.parametrize("env_factory", [make, PlumeNavEnv], ids=["make", "direct"])
def test_step_after_termination_or_truncation_raises(env_factory):
    env = env_factory(grid_size=(1, 1))
    env.reset(seed=0)
    _, _, term, trunc, _ = env.step(0)
    assert term and not trunc
    with pytest.raises(RuntimeError):
        env.step(0)
    env = env_factory(grid_size=(16, 16), goal_location=(0, 0), goal_radius=0, start_location=(15, 15),
                      max_steps=3, action_type="discrete")
    for _ in range(2):  # and again after a reset
        env.reset(seed=0)
        for _ in range(3):
            _, _, term, trunc, _ = env.step(0)
        assert trunc and not term
        with pytest.raises(RuntimeError):
            env.step(1)


@pytest.mark.nojit
@pytest.mark.parametrize("action_type, n", [("discrete", 4), ("oriented", 3), ("run_tumble", 2)])
def test_invalid_actions_raise(action_type, n):
    for env in (make(action_type=action_type), PlumeNavEnv(action_type=action_type)):
        env.reset(seed=0)
        for bad in (-1, n, 1.5, 0.0, True, False, np.True_, None, "0", [0], np.array([0]), np.float32(1), 2**70):
            with pytest.raises((ValueError, TypeError)):
                env.step(bad)
        # the env is unharmed and still accepts valid actions of any integer type
        for good in (0, np.int64(n - 1), np.int8(0), np.array(n - 1)):
            _, _, _, _, info = env.step(good)
        assert info["step_count"] == 4


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, "1", True, np.float64(3)])
def test_invalid_seeds_raise(seed):
    env = make()
    with pytest.raises((ValueError, TypeError)):
        env.reset(seed=seed)


def test_seed_range_ends_are_valid():
    env = make(grid_size=(8, 8))
    for s in (0, 2**32 - 1, np.uint32(2**32 - 1), np.int64(5)):
        _, info = env.reset(seed=s)
        assert 0 <= info["agent_position"][0] < 8 and info["seed"] == int(s)


# --- configuration errors ------------------------------------------------------------------------

BAD_PARAMS = [
    dict(grid_size=(0, 5)), dict(grid_size=(5, 0)), dict(grid_size=(-1, 5)), dict(grid_size=(5.0, 5)),
    dict(grid_size=(5, 5, 5)), dict(grid_size="64x64"), dict(grid_size=(2**20, 2**20)),
    dict(goal_location=(64, 0)), dict(goal_location=(0, 64)), dict(goal_location=(-1, 0)),
    dict(goal_location=(1.5, 2)), dict(grid_size=(8, 8), goal_location=(8, 8)),
    dict(start_location=(64, 0)), dict(start_location=(0, -1)), dict(grid_size=(13, 7), start_location=(7, 7)),
    dict(goal_radius=-1.0), dict(goal_radius=float("nan")), dict(goal_radius="5"),
    dict(sigma=0.0), dict(sigma=-1.0), dict(sigma=float("inf")), dict(sigma=float("nan")),
    dict(max_steps=0), dict(max_steps=-5), dict(max_steps=1.5), dict(max_steps=True),
    dict(step_size=0), dict(step_size=1.0),
    dict(action_type="diagonal"), dict(observation_type="vision"), dict(reward_type="dense"),
    dict(action_type=None),
    dict(n_sensors=0), dict(sensor_distance=float("nan")),
    dict(wind_noise_std=-0.1), dict(wind_speed=float("inf")), dict(wind_direction_deg="north"),
]


@pytest.mark.parametrize("kw", BAD_PARAMS, ids=repr)
def test_bad_params_raise_config_error(kw):
    with pytest.raises(ConfigError):
        make(**kw)


def test_too_large_grid_says_so():
    with pytest.raises(ConfigError, match="GiB"):
        make(grid_size=(2**20, 2**20))


def test_defaulted_params():
    p = make(max_steps=None, goal_radius=0).unwrapped.params
    assert p.max_steps == 1000 and p.goal_radius == np.finfo(np.float32).eps == 1.1920928955078125e-07
    for grid, goal in (((64, 64), (63, 63)), ((128, 128), (64, 64)), ((8, 8), (7, 7)), ((13, 7), (12, 6)),
                       ((1, 1), (0, 0)), ((200, 30), (64, 29))):
        assert make(grid_size=grid).unwrapped.params.goal_location == goal


# --- determinism and size -------------------------------------------------------------------------

def _run(env, seed, actions):
    obs, info = env.reset(seed=seed)
    out = [(obs.tobytes(), info["agent_position"])]
    for a in actions:
        obs, rew, term, trunc, info = env.step(int(a))
        out.append((obs.tobytes(), rew, term, trunc, info["agent_position"], info["heading"]))
        if term or trunc:
            obs, info = env.reset()
            out.append((obs.tobytes(), info["agent_position"]))
    return out


@pytest.mark.parametrize("kw", [dict(action_type="run_tumble", observation_type="wind_vector", wind_noise_std=1.0),
                                dict(action_type="oriented", observation_type="antennae", n_sensors=3,
                                     grid_size=(13, 7), max_steps=20)])
def test_same_seed_same_trajectory_different_seed_different(kw):
    actions = np.random.default_rng(0).integers(0, 2, 300)
    a, b = make(**kw), make(**kw)
    assert _run(a, 5, actions) == _run(b, 5, actions) == _run(a, 5, actions)
    assert _run(a, 5, actions) != _run(a, 6, actions)


def test_2048_grid():
    env = make(grid_size=(2048, 2048))
    assert env.unwrapped.params.goal_location == (64, 64)
    for seed in (0, 1, 2**32 - 1):
        _, info = env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        assert info["agent_position"] == (int(rng.integers(0, 2048)), int(rng.integers(0, 2048)))
    env.step(0)
