"""The puff plume (issue 29): the kernel against the slow reference model (tests/reference_puff.py),
seeds, the single and vector envs, and its settings' checks."""
from __future__ import annotations

import numpy as np
import pytest

from plume_capture.errors import ConfigError
from plume_capture.kernels import puff
from plume_capture.kernels.rng import episode_key, plume_key
from plume_capture.sim.params import EnvParams
from reference_puff import PuffPlume, plume_key as ref_plume_key

# Small grids, short warm-ups; one config where the cap binds, one with a strong meander and jitter
# across the wind, one with several births per step.
CASES = {
    "default": dict(grid_size=(24, 16), goal_location=(3, 8), puff_warmup_steps=10),
    "cap_binds": dict(grid_size=(40, 20), goal_location=(2, 10), puff_max_puffs=7, puff_warmup_steps=15,
                      wind_speed=0.5),
    "meander": dict(grid_size=(20, 30), goal_location=(10, 2), wind_direction_deg=90.0, wind_speed=1.5,
                    puff_meander_std=2.0, puff_meander_time=3.0, puff_noise_std=1.0, puff_spread_rate=0.3,
                    puff_warmup_steps=5),
    "dense": dict(grid_size=(16, 16), goal_location=(8, 8), wind_direction_deg=200.0, puff_birth_rate=6.0,
                  puff_dt=0.5, puff_init_radius=0.7, puff_warmup_steps=8),
}


def _reference(params: EnvParams, seed: int) -> PuffPlume:
    return PuffPlume(seed, *params.grid_size, params.goal_location, params.wind_speed, params.wind_direction_deg,
                     **params.puff_group())


def _pkey(seed: int) -> np.uint64:
    """The kernel's plume key (uint64: a Python int would be typed int64 by the kernel called from here)."""
    return np.uint64(int(plume_key(np.uint64(int(episode_key(seed))))))


def _kernel(params: EnvParams, seed: int):
    ka = params.build().kernel_args()
    t = ka.state.puff[0]
    puff.reset(ka.params, t, _pkey(seed))
    return ka, t


def _table(t) -> list:
    return [list(map(float, row)) for row in t[1:1 + int(t[0, 0])]]


def _grid(params, read) -> list:
    w, h = params.grid_size
    return [read(x, y) for y in range(-1, h + 1) for x in range(-1, w + 1)]  # a border outside the grid too


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("seed", [0, 1, 4_000_000_000])
def test_kernel_equals_reference_model_exactly(case, seed):
    params = EnvParams(plume="puff", **CASES[case]).build().params
    assert int(_pkey(seed)) == ref_plume_key(seed)
    ka, t = _kernel(params, seed)
    ref = _reference(params, seed)
    pkey = _pkey(seed)
    for k in range(1, 26):
        if k > 1:
            puff.advance(ka.params, t, pkey, params.puff_warmup_steps + k - 1)
            ref.step()
        assert _table(t) == ref.puffs, (case, seed, k)
        got = _grid(params, lambda x, y: float(puff.sample(ka.params, t, x, y)))
        assert got == _grid(params, ref.concentration), (case, seed, k)
    assert ref.puffs, "the plume has puffs"
    if case == "cap_binds":
        assert len(ref.puffs) == params.puff_max_puffs


def test_single_env_observations_follow_the_reference_model():
    params = EnvParams(plume="puff", observation_type="concentration", action_type="discrete",
                       start_location=(20, 10), goal_radius=0.0, **CASES["default"]).build().params
    from plume_capture.envs.plume_nav import PlumeNavEnv

    env = PlumeNavEnv(**{k: getattr(params, k) for k in params.__dataclass_fields__})
    obs, info = env.reset(seed=42)
    ref = _reference(params, 42)
    assert float(obs[0]) == ref.concentration(*info["agent_position"])
    readings = []
    for a in [3, 3, 0, 1, 2, 3, 3, 3, 0, 0, 1, 3]:
        obs, _, term, trunc, info = env.step(a)
        ref.step()
        assert float(obs[0]) == ref.concentration(*info["agent_position"])
        readings.append(float(obs[0]))
    assert len(set(readings)) > 5  # the plume is really sensed and changes


def test_another_seed_gives_another_plume_and_the_same_seed_the_same():
    params = EnvParams(plume="puff", **CASES["default"]).build().params

    def field_after(seed, steps=20):
        ka, t = _kernel(params, seed)
        for n in range(1, steps + 1):
            puff.advance(ka.params, t, _pkey(seed), params.puff_warmup_steps + n)
        return _grid(params, lambda x, y: float(puff.sample(ka.params, t, x, y)))

    a = field_after(5)
    assert field_after(5) == a
    assert field_after(6) != a
    assert max(a) > 0.1


def test_plume_does_not_depend_on_the_agent():
    """A separate random stream: the plume a random and a fixed-action agent see is the same."""
    from plume_capture.envs.plume_nav import PlumeNavEnv

    kw = dict(plume="puff", grid_size=(24, 16), goal_location=(3, 8), observation_type="antennae",
              action_type="run_tumble", n_sensors=4)
    a, b = PlumeNavEnv(**kw), PlumeNavEnv(**kw)
    a.reset(seed=3), b.reset(seed=3)
    for i in range(15):
        a.step(i % 2), b.step(1)
    np.testing.assert_array_equal(a._phys_args[2], b._phys_args[2])


def test_vector_env_equals_single_envs():
    from plume_capture.envs import PlumeNavVectorEnv
    from plume_capture.envs.plume_nav import PlumeNavEnv

    kw = dict(plume="puff", grid_size=(24, 16), goal_location=(3, 8), observation_type="antennae",
              action_type="oriented", max_steps=12, goal_radius=0.0)
    n = 5
    vec = PlumeNavVectorEnv(n, **kw)
    singles = [PlumeNavEnv(**kw) for _ in range(n)]
    obs, _ = vec.reset(seed=100)
    for i, e in enumerate(singles):
        o, _ = e.reset(seed=100 + i)
        np.testing.assert_array_equal(obs[i], o)
    rng = np.random.default_rng(0)
    for _ in range(12):
        acts = rng.integers(0, 3, n)
        obs, rew, term, trunc, _ = vec.step(acts)
        for i, e in enumerate(singles):
            o, r, te, tr, _ = e.step(int(acts[i]))
            np.testing.assert_array_equal(obs[i], o)
            assert (r, te, tr) == (rew[i], term[i], trunc[i])
    assert trunc.all()


def test_memory_per_env_is_the_cap():
    params = EnvParams(plume="puff", puff_max_puffs=100).build()
    st = params.kernel_args(envs=3).state
    assert st.puff.shape == (3, 101, 3) and st.puff.dtype == np.float64
    from plume_capture.sim.puff import state_bytes

    assert st.puff[0].nbytes == state_bytes(100) == 2424


@pytest.mark.parametrize("key, value", [
    ("puff_birth_rate", -1.0), ("puff_init_radius", 0.0), ("puff_dt", 0.0), ("puff_max_puffs", 0),
    ("puff_max_puffs", 1.5), ("puff_meander_time", 0.0), ("puff_noise_std", float("nan")),
    ("puff_warmup_steps", -1), ("puff_birth_rate", 40.0),
])
def test_bad_puff_settings_are_config_errors(key, value):
    with pytest.raises(ConfigError, match=key.replace("puff_", "puff.")):
        EnvParams(plume="puff", **{key: value}).build()


def test_a_puff_plume_needs_no_field():
    """No W x H field is allocated: a grid far beyond the static field's memory limit builds."""
    ph = EnvParams(plume="puff", grid_size=(200_000, 200_000)).build()
    assert ph.field is None
    with pytest.raises(ConfigError, match="GiB"):
        EnvParams(plume="static", grid_size=(200_000, 200_000)).build()


def test_gymnasium_env_checker_passes():
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    import plume_capture.envs  # noqa: F401  (registers PlumeNav-v0)

    check_env(gym.make("PlumeNav-v0", plume="puff", grid_size=(32, 32), observation_type="antennae").unwrapped)


def test_puff_env_renders_its_plume_now():
    """rgb_array of a puff env: the plume as its table holds it at that step (it moves)."""
    import gymnasium

    env = gymnasium.make("PlumeNav-v0", plume="puff", grid_size=(48, 32), goal_location=(8, 16),
                         render_mode="rgb_array", puff_warmup_steps=30, wind_speed=1.0)
    env.reset(seed=3)
    a = env.render()
    assert a.dtype == np.uint8 and a.shape[2] == 3 and a.shape[0] >= 32 and a.shape[1] >= 48
    for _ in range(5):
        env.step(env.action_space.sample())
    b = env.render()
    assert a.shape == b.shape and not np.array_equal(a, b)
