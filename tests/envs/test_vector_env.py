"""PlumeNavVectorEnv: 1024 envs with autoreset match 1024 single envs driven with the same actions;
seeds, autoreset mode, errors, and determinism across env counts and thread counts."""
import gymnasium
import numba
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import plume_capture.envs  # noqa: F401  (registers PlumeNav-v0)
from plume_capture.envs import PlumeNavVectorEnv

SEED_SPAN = 2**32

# Small grid, short episodes: most envs end several episodes, so autoreset is exercised a lot.
VECTOR_CONFIGS = [
    dict(grid_size=(8, 8), goal_location=(7, 7), goal_radius=1.0, sigma=3.0, max_steps=12,
         action_type="discrete", observation_type="concentration", reward_type="sparse"),
    dict(grid_size=(13, 7), goal_location=(0, 3), goal_radius=2.0, sigma=4.0, max_steps=15, step_size=3,
         action_type="oriented", observation_type="antennae", n_sensors=3, reward_type="step_penalty"),
    dict(grid_size=(8, 8), goal_location=(3, 0), goal_radius=1.5, max_steps=10, action_type="run_tumble",
         observation_type="wind_vector", wind_noise_std=0.5, reward_type="step_penalty"),
]


def bits(a):
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


@pytest.mark.parametrize("kw", VECTOR_CONFIGS, ids=lambda kw: kw["action_type"])
def test_1024_envs_with_autoreset_match_single_envs(kw):
    n, n_steps, base = 1024, 40, 2**32 - 500  # seeds wrap around 2**32 during the run
    venv = PlumeNavVectorEnv(num_envs=n, **kw)
    singles = [gymnasium.make("PlumeNav-v0", **kw) for _ in range(n)]
    n_act = singles[0].action_space.n
    seeds = [(base + i) % SEED_SPAN for i in range(n)]

    obs, infos = venv.reset(seed=base)
    exp = [env.reset(seed=s) for env, s in zip(singles, seeds)]
    np.testing.assert_array_equal(bits(obs), bits(np.stack([o for o, _ in exp])))
    np.testing.assert_array_equal(infos["agent_position"], [i["agent_position"] for _, i in exp])
    np.testing.assert_array_equal(infos["seed"], seeds)

    rng = np.random.default_rng(0)
    ended = np.zeros(n, bool)
    autoresets = 0
    for t in range(n_steps):
        actions = rng.integers(0, n_act, n)
        obs, rew, term, trunc, infos = venv.step(actions)
        e_obs, e_rew, e_term, e_trunc, e_pos, e_k, e_tot, e_dist = [], [], [], [], [], [], [], []
        for i, env in enumerate(singles):
            if ended[i]:  # NEXT_STEP autoreset: this step resets env i with its next seed
                seeds[i] = (seeds[i] + n) % SEED_SPAN
                o, info = env.reset(seed=seeds[i])
                r, te, tr = 0.0, False, False
                autoresets += 1
            else:
                o, r, te, tr, info = env.step(int(actions[i]))
            e_obs.append(o), e_rew.append(r), e_term.append(te), e_trunc.append(tr)
            e_pos.append(info["agent_position"]), e_k.append(info["step_count"])
            e_tot.append(info["total_reward"]), e_dist.append(info["distance_to_goal"])
        msg = f"step {t}"
        np.testing.assert_array_equal(bits(obs), bits(np.stack(e_obs)), err_msg=msg)
        np.testing.assert_array_equal(rew, e_rew, err_msg=msg)
        np.testing.assert_array_equal(term, e_term, err_msg=msg)
        np.testing.assert_array_equal(trunc, e_trunc, err_msg=msg)
        np.testing.assert_array_equal(infos["agent_position"], e_pos, err_msg=msg)
        np.testing.assert_array_equal(infos["step_count"], e_k, err_msg=msg)
        np.testing.assert_array_equal(infos["total_reward"], e_tot, err_msg=msg)
        np.testing.assert_array_equal(infos["distance_to_goal"], e_dist, err_msg=msg)
        np.testing.assert_array_equal(infos["seed"], seeds, err_msg=msg)
        ended = term | trunc
    assert autoresets >= 2 * n, autoresets  # on average every env restarted at least twice


def test_registered_vector_entry_point_and_autoreset_mode():
    venv = gymnasium.make_vec("PlumeNav-v0", num_envs=4, vectorization_mode="vector_entry_point",
                              grid_size=(8, 8), action_type="discrete")
    assert isinstance(venv.unwrapped, PlumeNavVectorEnv)
    assert venv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert venv.single_action_space == gymnasium.spaces.Discrete(4)
    assert venv.action_space == gymnasium.spaces.MultiDiscrete([4] * 4)
    obs, infos = venv.reset(seed=3)
    assert obs.shape == (4, 1) and obs.dtype == np.float32 and obs in venv.observation_space
    np.testing.assert_array_equal(infos["seed"], [3, 4, 5, 6])
    obs, rew, term, trunc, infos = venv.step(np.zeros(4, np.int64))
    assert rew.shape == term.shape == trunc.shape == (4,)


def test_seeds():
    venv = PlumeNavVectorEnv(num_envs=4, grid_size=(8, 8))
    _, infos = venv.reset(seed=2**32 - 2)
    np.testing.assert_array_equal(infos["seed"], [2**32 - 2, 2**32 - 1, 0, 1])
    _, infos = venv.reset(seed=[9, 8, 7, 2**32 - 1])
    np.testing.assert_array_equal(infos["seed"], [9, 8, 7, 2**32 - 1])
    _, infos = venv.reset(seed=np.int64(5))
    np.testing.assert_array_equal(infos["seed"], [5, 6, 7, 8])
    # env i starts where a single env seeded with seed + i starts
    _, infos = venv.reset(seed=0)
    np.testing.assert_array_equal(infos["agent_position"], [(6, 5), (3, 4), (6, 2), (6, 0)])  # docs/spec.md §3.2, 8x8
    # unseeded resets continue reproducibly from the last seeded one
    a, b = PlumeNavVectorEnv(num_envs=4, grid_size=(8, 8)), PlumeNavVectorEnv(num_envs=4, grid_size=(8, 8))
    a.reset(seed=[1, 2, 3, 4])
    b.reset(seed=[1, 2, 3, 4])
    np.testing.assert_array_equal(a.reset()[1]["seed"], b.reset()[1]["seed"])
    for bad in (-1, 2**32, 1.5, True, "3", [1, 2, 3], [1, 2, 3, -1], [1, 2, 3, 1.0]):
        with pytest.raises(ValueError):
            venv.reset(seed=bad)


def test_errors():
    venv = PlumeNavVectorEnv(num_envs=3, grid_size=(8, 8), action_type="oriented")
    with pytest.raises(RuntimeError):
        venv.step(np.zeros(3, np.int64))
    venv.reset(seed=0)
    for bad in ([0, 1, 3], [-1, 0, 0], [0.0, 1.0, 2.0], [True, False, True], [0, 1], [[0, 1, 2]]):
        with pytest.raises(ValueError):
            venv.step(np.array(bad))
    venv.step(np.array([0, 1, 2]))


def _trajectory(venv, actions):
    out = [venv.reset(seed=77)[0]]
    for a in actions:
        obs, rew, term, trunc, infos = venv.step(a)
        out += [obs, rew, term, trunc, infos["agent_position"], infos["seed"]]
    return out


def test_deterministic_across_thread_counts_and_env_counts():
    kw = VECTOR_CONFIGS[2]
    n, steps = 256, 30
    actions = np.random.default_rng(1).integers(0, 2, (steps, n))
    runs = []
    saved = numba.get_num_threads()
    try:
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            runs.append(_trajectory(PlumeNavVectorEnv(num_envs=n, **kw), actions))
    finally:
        numba.set_num_threads(saved)
    for a, b in zip(runs[0], runs[-1]):
        np.testing.assert_array_equal(a, b)
    # 1 env per VectorEnv vs 256: env i's first episode is the same (its seed is 77 + i either way)
    full = runs[0]
    positions = np.stack(full[5::6])  # (steps, n, 2)
    ended = np.stack(full[3::6]) | np.stack(full[4::6])
    for i in (0, 1, 100, 255):
        one = PlumeNavVectorEnv(num_envs=1, **kw)
        one.reset(seed=77 + i)
        for t in range(steps):
            _, _, term, trunc, infos = one.step(actions[t, i:i + 1])
            assert tuple(infos["agent_position"][0]) == tuple(positions[t, i])
            if ended[t, i]:
                assert term[0] or trunc[0]
                break
