"""Differential test: the slow reference (tests/reference_model.py, written from docs/spec.md) and the
kernels agree exactly — positions, headings, actions, rewards, flags, distances and observation bits —
through the single env and the capture kernel ``run_episodes``."""
import itertools
import zlib

import gymnasium
import numpy as np
import pytest

import plume_capture.envs  # noqa: F401  (registers PlumeNav-v0)
from kernel_driver import kernel_episodes
from reference_model import COLUMNS, Config, Policy, RefEnv, episodes

ACTIONS = ("discrete", "oriented", "run_tumble")
OBSERVATIONS = ("concentration", "antennae", "wind_vector")
REWARDS = ("sparse", "step_penalty")
COMBOS = list(itertools.product(ACTIONS, OBSERVATIONS, REWARDS))
MIN_STEPS = 10_000  # per combination and per path (single env, run_episodes)

# Grids 1x1, 8x8, 13x7, 64x64; goals on corners and edges; step sizes 1 and 3; 2 and 3 sensors
# (sensor distance 1.5 makes the axis-aligned sensors land on .5 and exercise half-to-even);
# wind noise on everywhere but one config.
CONFIGS = [
    dict(grid_size=(1, 1), goal_radius=0.0, max_steps=1, n_sensors=3, wind_noise_std=0.3),
    dict(grid_size=(8, 8), goal_location=(7, 0), goal_radius=1.0, sigma=3.0, max_steps=40, step_size=3,
         n_sensors=3, wind_direction_deg=45.0, wind_noise_std=0.5),
    dict(grid_size=(13, 7), goal_location=(12, 3), goal_radius=2.0, sigma=4.0, max_steps=60, n_sensors=2,
         sensor_distance=3.0, wind_direction_deg=200.0, wind_speed=2.5, wind_noise_std=1.0),
    dict(grid_size=(13, 7), goal_location=(0, 6), goal_radius=0.0, sigma=2.5, max_steps=25, step_size=3,
         start_location=(6, 3), n_sensors=3, wind_noise_std=0.2),
    dict(grid_size=(64, 64), goal_radius=5.0, max_steps=300, n_sensors=2),
    dict(grid_size=(64, 64), goal_location=(0, 31), goal_radius=3.0, sigma=10.0, max_steps=120, step_size=3,
         n_sensors=3, sensor_distance=1.5, wind_direction_deg=-30.0, wind_noise_std=0.1),
]
# Policy parameters per config index (threshold, persistence, eps for run_tumble_chemotaxis).
POLICY_PARAMS = [(1e-6, 1, 0.2), (0.0, 2, 0.0), (1e-6, 0, 0.5), (1e-3, 1, 0.1), (1e-6, 1, 0.25), (1e-6, 3, 0.05)]

# Seeds at the edges of the seed range.
EDGE_SEEDS = [0, 1, 2**32 - 1, 2**32 - 2, 2**31]


def configs(act, obs, rew):
    return [Config(**c, action_type=act, observation_type=obs, reward_type=rew) for c in CONFIGS]


def _rng(*key):
    """A reproducible generator per test case (``hash`` of a str changes between processes)."""
    return np.random.default_rng([zlib.crc32(k.encode()) if isinstance(k, str) else k for k in key])


def _seeds(rng, n):
    s = rng.integers(0, 2**32, n, dtype=np.int64)
    s[: min(n, len(EDGE_SEEDS))] = EDGE_SEEDS[: min(n, len(EDGE_SEEDS))]
    return s


def assert_rows_equal(got: dict, exp: dict, what: str):
    """Exact equality of every column; observations compared bit for bit."""
    n = len(exp["step"])
    for c in exp:
        g, e = np.asarray(got[c]), np.asarray(exp[c])
        assert g.shape == e.shape, f"{what}: column {c} shape {g.shape} != {e.shape}"
        if g.dtype == np.float32:
            g, e = g.view(np.uint32), e.view(np.uint32)
        bad = np.flatnonzero((g != e).reshape(len(g), -1).any(axis=1)) if g.ndim else []
        if len(bad):
            i = int(bad[0])
            ctx = {k: (np.asarray(got[k])[i].tolist(), np.asarray(exp[k])[i].tolist()) for k in exp}
            pytest.fail(f"{what}: {len(bad)} of {n} rows differ in {c!r}; first at row {i} "
                        f"(kernel, reference): {ctx}")


# --- the single env, driven with random actions ------------------------------------------------

def drive_single_env(cfg: Config, n_steps: int, rng) -> int:
    """Step ``gymnasium.make`` and the reference with the same random actions; returns steps taken."""
    env = gymnasium.make("PlumeNav-v0", **cfg.kwargs())
    ref = RefEnv(cfg)
    actions = rng.integers(0, cfg.n_actions, n_steps)
    seeds = iter(_seeds(rng, n_steps + 1))
    got, exp = [], []
    done = True
    for i, a in enumerate(actions):
        if done:
            seed = int(next(seeds))
            obs, info = env.reset(seed=seed)
            r_obs = ref.reset(seed)
            got.append((i, "reset", obs.tobytes(), info["agent_position"], info["distance_to_goal"], info["seed"]))
            exp.append((i, "reset", r_obs.tobytes(), (ref.x, ref.y),
                        ref.distance(), seed))
        obs, rew, term, trunc, info = env.step(int(a))
        st = ref.step(int(a))
        got.append((i, obs.tobytes(), rew, term, trunc, info["agent_position"], info["heading"],
                    info["distance_to_goal"], info["step_count"], info["goal_reached"], info["total_reward"]))
        exp.append((i, st.obs.tobytes(), st.reward, st.terminated, st.truncated, (st.x, st.y), st.heading,
                    st.distance, st.step, st.terminated, ref.total))
        done = term or trunc
    for g, e in zip(got, exp):
        assert g == e, f"{cfg}: step {g[0]} differs:\n kernel    {g}\n reference {e}"
    assert len(got) == len(exp)
    return n_steps


@pytest.mark.parametrize("act, obs, rew", COMBOS)
def test_single_env_matches_reference(act, obs, rew):
    per_config = -(-MIN_STEPS // len(CONFIGS))
    total = sum(drive_single_env(cfg, per_config, _rng("single", act, obs, rew, i))
                for i, cfg in enumerate(configs(act, obs, rew)))
    assert total >= MIN_STEPS


# --- the capture kernel --------------------------------------------------------------------------

def check_episodes(cfg, policy, rng, min_rows) -> int:
    """Whole episodes, at least ``min_rows`` rows, through resumable ``run_episodes`` calls."""
    seeds = _seeds(rng, 100_000)
    exp, exp_summary = episodes(cfg, seeds, policy, min_rows=min_rows)
    seeds = seeds[: len(exp_summary["steps"])]
    got, got_summary = kernel_episodes(cfg, seeds, policy, capacity=int(rng.integers(1, 300)))
    assert_rows_equal(got, exp, f"run_episodes {policy} {cfg}")
    for k in exp_summary:
        np.testing.assert_array_equal(got_summary[k], exp_summary[k], err_msg=f"summary {k}: {policy} {cfg}")
    return len(exp["step"])


def policy_for(name, i):
    threshold, persistence, eps = POLICY_PARAMS[i]
    return Policy(name, threshold, persistence, eps if name == "run_tumble_chemotaxis" else 0.0)


@pytest.mark.parametrize("act, obs, rew", COMBOS)
def test_run_episodes_random_policy_matches_reference(act, obs, rew):
    per_config = -(-MIN_STEPS // len(CONFIGS))
    total = sum(check_episodes(cfg, Policy("random"), _rng("episodes", act, obs, rew, i), per_config)
                for i, cfg in enumerate(configs(act, obs, rew)))
    assert total >= MIN_STEPS


# Built-in policies: every observation type, alternating the reward type (the policies read their
# own concentration sensor whatever the observation type).
POLICY_COMBOS = [(pol, act, obs, REWARDS[j % 2])
                 for pol, act in (("surge_cast", "oriented"), ("temporal_derivative", "oriented"),
                                  ("run_tumble_chemotaxis", "run_tumble"))
                 for j, obs in enumerate(OBSERVATIONS)]


@pytest.mark.parametrize("name, act, obs, rew", POLICY_COMBOS)
def test_builtin_policy_run_episodes_matches_reference(name, act, obs, rew):
    per_config = -(-MIN_STEPS // len(CONFIGS))
    total = 0
    for i, cfg in enumerate(configs(act, obs, rew)):
        total += check_episodes(cfg, policy_for(name, i), _rng("policy", name, obs, i), per_config)
    assert total >= MIN_STEPS


def test_builtin_policies_do_something():
    """Guard against a vacuous comparison: over the configs, each policy uses every action it has and
    reaches the goal in some episodes."""
    for name, act in (("surge_cast", "oriented"), ("temporal_derivative", "oriented"),
                      ("run_tumble_chemotaxis", "run_tumble")):
        actions, reached = set(), 0
        for i, cfg in enumerate(configs(act, "concentration", "sparse")[1:], start=1):
            rows, summary = kernel_episodes(cfg, range(20), policy_for(name, i))
            actions |= set(rows["action"].tolist())
            reached += int(summary["terminated"].sum())
        assert actions == set(range(cfg.n_actions)), name
        assert reached >= 20, name


# --- a short run for NUMBA_DISABLE_JIT=1 -------------------------------------------------------

SHORT = [("discrete", "antennae", "sparse", 1), ("oriented", "wind_vector", "step_penalty", 5),
         ("run_tumble", "concentration", "step_penalty", 2)]


@pytest.mark.nojit
@pytest.mark.parametrize("act, obs, rew, i", SHORT)
def test_short_differential(act, obs, rew, i):
    cfg = configs(act, obs, rew)[i]
    rng = _rng("short", act, i)
    drive_single_env(cfg, 500, rng)
    check_episodes(cfg, Policy("random"), rng, 500)
    name = {"oriented": "temporal_derivative", "run_tumble": "run_tumble_chemotaxis"}.get(act)
    if name:
        check_episodes(cfg, policy_for(name, i), rng, 500)
