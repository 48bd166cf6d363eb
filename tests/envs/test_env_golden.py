"""Every golden value of docs/spec.md §2.1, §3.2 and §4, through the public env API (``gymnasium.make``)."""
import gymnasium
import numpy as np
import pytest

import plume_capture.envs  # noqa: F401  (registers PlumeNav-v0)

pytestmark = pytest.mark.nojit


def make(**kw):
    return gymnasium.make("PlumeNav-v0", **kw)


# --- §2.1 Gaussian plume -------------------------------------------------------------------------

def test_gaussian_field_golden_values():
    env = make(grid_size=(64, 64))
    field = env.unwrapped.physics.field
    assert field.dtype == np.float32 and field.shape == (1, 64, 64)
    c = field[0]
    assert c[63, 63] == np.float32(1.0)
    assert c[0, 0] == np.float32(4.9058377e-05)
    assert c[63, 62] == np.float32(0.99875075)
    assert c.max() == 1.0 and c.min() > 0.0 and np.unravel_index(c.argmax(), c.shape) == (63, 63)
    c7 = make(grid_size=(64, 64), goal_location=(7, 7), sigma=20.0).unwrapped.physics.field[0]
    assert float(c7[6, 3]) == 0.9789742231369019


@pytest.mark.parametrize("goal, start, value", [
    ((63, 63), (63, 63), np.float32(1.0)),
    ((63, 63), (0, 0), np.float32(4.9058377e-05)),
    ((63, 63), (62, 63), np.float32(0.99875075)),  # C[63, 62]: row y=63, column x=62
    ((7, 7), (3, 6), np.float32(0.9789742231369019)),  # C[6, 3]
])
def test_gaussian_values_observed_at_start(goal, start, value):
    env = make(grid_size=(64, 64), goal_location=goal, sigma=20.0, start_location=start)
    obs, info = env.reset(seed=0)
    assert info["agent_position"] == start
    assert obs.dtype == np.float32 and obs.shape == (1,)
    assert obs[0] == value


def test_field_does_not_change_with_seed_or_steps():
    env = make(grid_size=(16, 16), goal_location=(4, 9), goal_radius=0, sigma=3.0, action_type="discrete",
               start_location=(15, 0))
    before = env.unwrapped.physics.field.copy()
    for seed in (0, 1, 2**32 - 1):
        env.reset(seed=seed)
        for a in range(4):
            env.step(a)
    np.testing.assert_array_equal(env.unwrapped.physics.field, before)


def test_field_is_zero_outside_and_antennae_read_zero_there():
    # From the corner (0, 0) with heading 0, the back sensor (180°) is at (-2, 0): outside -> 0.0.
    env = make(grid_size=(8, 8), goal_location=(0, 0), sigma=5.0, start_location=(0, 0),
               observation_type="antennae")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2,)
    assert obs[0] == env.unwrapped.physics.field[0][0, 2] and obs[1] == 0.0


# --- §3.2 start positions ------------------------------------------------------------------------

GOLDEN_STARTS = {
    (64, 64): [(54, 40), (30, 32), (53, 16), (51, 5), (46, 60)],
    (128, 128): [(108, 81), (60, 65), (107, 33), (103, 10), (92, 120)],
    (8, 8): [(6, 5), (3, 4), (6, 2), (6, 0), (5, 7)],
}


@pytest.mark.parametrize("grid", list(GOLDEN_STARTS))
def test_start_positions(grid):
    env = make(grid_size=grid)
    for seed, expected in enumerate(GOLDEN_STARTS[grid]):
        _, info = env.reset(seed=seed)
        assert info["agent_position"] == expected == info["agent_xy"]
        assert info["seed"] == seed and info["step_count"] == 0 and info["total_reward"] == 0.0


def test_start_position_seed_123():
    _, info = make(grid_size=(64, 64)).reset(seed=123)
    assert info["agent_position"] == (0, 43)


def test_reset_state():
    env = make(grid_size=(64, 64), action_type="oriented", observation_type="antennae")
    env.reset(seed=1)
    for a in (1, 0, 1, 0):
        env.step(a)
    _, info = env.reset(seed=1)
    assert info["agent_position"] == (30, 32) and info["heading"] == 0.0
    assert info["step_count"] == 0 and info["total_reward"] == 0.0 and info["goal_reached"] is False


# --- §4 actions ------------------------------------------------------------------------------------

@pytest.mark.parametrize("action, expected", [(0, (1, 9)), (1, (4, 8)), (2, (1, 5)), (3, (0, 8))])
def test_discrete_example(action, expected):
    env = make(grid_size=(10, 10), step_size=3, action_type="discrete", start_location=(1, 8))
    assert env.action_space == gymnasium.spaces.Discrete(4)
    env.reset(seed=0)
    _, _, term, trunc, info = env.step(action)
    assert info["agent_position"] == expected
    assert info["heading"] == 0.0 and info["step_count"] == 1 and not term and not trunc


def test_oriented_sequence():
    env = make(grid_size=(64, 64), action_type="oriented", start_location=(5, 5))
    assert env.action_space == gymnasium.spaces.Discrete(3)
    env.reset(seed=0)
    F, L, R = 0, 1, 2
    expected = [(F, (6, 5), 0.0), (L, (6, 5), 90.0), (F, (6, 6), 90.0), (L, (6, 6), 180.0),
                (F, (5, 6), 180.0), (L, (5, 6), 270.0), (F, (5, 5), 270.0), (R, (5, 5), 180.0),
                (R, (5, 5), 90.0)]
    for k, (a, pos, heading) in enumerate(expected, start=1):
        _, _, _, _, info = env.step(a)
        assert (info["agent_position"], info["heading"], info["step_count"]) == (pos, heading, k), (k, a)
    # right from 0° wraps to 270°; left from 270° wraps to 0°
    env.reset(seed=0)
    assert env.step(R)[4]["heading"] == 270.0
    assert env.step(L)[4]["heading"] == 0.0


def test_oriented_step_size_and_clamping():
    env = make(grid_size=(10, 10), action_type="oriented", step_size=3, start_location=(8, 1))
    env.reset(seed=0)
    assert env.step(0)[4]["agent_position"] == (9, 1)  # slides along the edge
    env.step(2)  # heading 270: -y
    assert env.step(0)[4]["agent_position"] == (9, 0)


def test_run_tumble_both_actions_move():
    env = make(grid_size=(64, 64), goal_location=(0, 0), action_type="run_tumble", step_size=3,
               start_location=(32, 32), max_steps=1000)
    assert env.action_space == gymnasium.spaces.Discrete(2)
    _, info = env.reset(seed=5)
    headings = set()
    for k in range(1, 9):
        before = info["agent_position"]
        _, _, _, _, info = env.step(k % 2)
        x, y = info["agent_position"]
        h = np.radians(info["heading"])
        assert (x, y) == (round(before[0] + 3 * np.cos(h)), round(before[1] + 3 * np.sin(h)))
        assert (x, y) != before
        assert 0.0 <= info["heading"] < 360.0
        headings.add(info["heading"])
    assert len(headings) == 4  # each tumble draws a new heading; runs keep it


# --- §3.3 / §6 rewards and flags -----------------------------------------------------------------

def test_start_on_goal_terminates_after_first_step():
    env = make(grid_size=(8, 8), goal_location=(4, 4), goal_radius=0, start_location=(4, 4),
               action_type="discrete", reward_type="sparse")
    _, info = env.reset(seed=0)
    assert info["distance_to_goal"] == 0.0 and info["goal_reached"] is False
    _, rew, term, trunc, info = env.step(0)  # moves to (4, 5): distance 1 > eps
    assert (rew, term, trunc) == (0.0, False, False)
    _, rew, term, trunc, info = env.step(2)  # back on the goal
    assert (rew, term, trunc, info["goal_reached"], info["distance_to_goal"]) == (1.0, True, False, True, 0.0)


@pytest.mark.parametrize("reward_type, away", [("sparse", 0.0), ("step_penalty", -0.01)])
def test_rewards_and_both_flags(reward_type, away):
    env = make(grid_size=(1, 1), reward_type=reward_type, max_steps=1)  # the only cell is the goal
    env.reset(seed=0)
    _, rew, term, trunc, info = env.step(0)
    assert (rew, term, trunc, info["total_reward"]) == (1.0, True, True, 1.0)
    env = make(grid_size=(10, 1), goal_location=(0, 0), goal_radius=2.0, start_location=(9, 0),
               action_type="discrete", reward_type=reward_type, max_steps=8)
    env.reset(seed=0)
    rewards = []
    for k in range(1, 9):
        _, rew, term, trunc, info = env.step(3)
        rewards.append(rew)
        assert info["distance_to_goal"] == float(9 - k)
        assert term == (9 - k <= 2) and trunc == (k == 8)
        if term or trunc:
            break
    assert rewards == [away] * 6 + [1.0]
    assert info["total_reward"] == pytest.approx(6 * away + 1.0)
