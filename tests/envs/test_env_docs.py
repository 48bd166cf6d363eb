"""docs/env.md holds: its training loop runs and learns, every argument is listed, rgb_array
rendering, the step limit in env.spec, and refusals in one line."""
from __future__ import annotations

import re
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import plume_capture.envs  # noqa: F401  (registers PlumeNav-v0)
from plume_capture.sim.params import EnvParams

DOC = Path(__file__).resolve().parents[2] / "docs" / "env.md"


def test_training_loop_runs_as_written_and_learns():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    loop = [b for b in blocks if "for episode in range" in b]
    assert len(loop) == 1 and len(loop[0].strip().splitlines()) <= 11  # the import and ten lines
    ns: dict = {}
    exec(compile(loop[0], str(DOC), "exec"), ns)  # noqa: S102 - the documentation's own code
    env, q = ns["env"], ns["q"]

    def episodes(act):
        out = []
        for seed in range(1000, 1020):
            _, info = env.reset(seed=seed)
            done, n = False, 0
            while not done:
                _, _, term, trunc, info = env.step(act(*info["agent_position"]))
                done, n = term or trunc, n + 1
            out.append(n)
        return np.array(out)

    rng = np.random.default_rng(1)
    greedy = episodes(lambda x, y: int(q[x, y].argmax()))
    random = episodes(lambda x, y: int(rng.integers(4)))
    assert (greedy < 200).sum() >= 15 and greedy.mean() < random.mean() / 2, (greedy, random)


def test_every_argument_is_documented():
    table = DOC.read_text().split("## Arguments", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(\w+)` \|", table, re.M))
    assert documented == set(EnvParams.__dataclass_fields__) | {"render_mode"}


@pytest.mark.parametrize("kw", [{}, {"max_steps": 37}])
def test_spec_max_episode_steps_is_max_steps(kw):
    env = gymnasium.make("PlumeNav-v0", **kw)
    assert env.spec.max_episode_steps == kw.get("max_steps", 1000)
    again = gymnasium.make(env.spec)  # a spec recreates the same env
    assert again.spec.max_episode_steps == env.spec.max_episode_steps
    assert again.unwrapped.params == env.unwrapped.params


@pytest.mark.parametrize("kw", [{}, {"max_steps": 37}])
def test_vector_spec_max_episode_steps_is_max_steps(kw):
    venv = gymnasium.make_vec("PlumeNav-v0", num_envs=2, **kw)  # the vector entry point by default
    assert venv.spec.max_episode_steps == kw.get("max_steps", 1000)
    again = gymnasium.make_vec(venv.spec)  # make_vec passes the spec's limit on as max_episode_steps
    assert type(again) is type(venv) and again.num_envs == 2
    assert again.spec.max_episode_steps == venv.spec.max_episode_steps
    assert again.params == venv.params


def test_vector_max_episode_steps_truncates_as_a_time_limit():
    venv = gymnasium.make_vec("PlumeNav-v0", num_envs=2, max_steps=50, max_episode_steps=10)
    assert venv.spec.max_episode_steps == venv.params.max_steps == 10
    venv.reset(seed=0)
    for _ in range(10):
        _, _, term, trunc, _ = venv.step(np.zeros(2, np.int64))
    assert (term | trunc).all()


def test_rgb_array_render_shows_plume_goal_and_agent():
    env = gymnasium.make("PlumeNav-v0", grid_size=(16, 8), goal_location=(12, 2), start_location=(3, 5),
                         action_type="discrete", render_mode="rgb_array")
    check_env(env.unwrapped)  # the render check included
    env.reset(seed=0)
    img = env.render()
    s = 256 // 16  # pixels per cell
    assert img.shape == (8 * s, 16 * s, 3) and img.dtype == np.uint8

    def pixel(x, y):  # +y upwards
        return tuple(int(v) for v in img[(8 - 1 - y) * s + s // 2, x * s + s // 2])

    assert pixel(3, 5) == (255, 30, 30) and pixel(12, 2) == (40, 220, 60)
    assert sum(pixel(11, 2)) > sum(pixel(0, 7))  # brighter near the source
    env.step(1)
    img = env.render()
    assert pixel(4, 5) == (255, 30, 30) and pixel(3, 5) != (255, 30, 30)


def test_large_grids_render_small():
    env = gymnasium.make("PlumeNav-v0", grid_size=(2048, 1000), render_mode="rgb_array")
    env.reset(seed=1)
    assert env.render().shape == (250, 512, 3)


def test_movie_renders_the_current_frame(tmp_path):
    frames = np.zeros((3, 4, 5), np.float32)
    frames[1] = 1.0
    np.save(tmp_path / "m.npy", frames)
    env = gymnasium.make("PlumeNav-v0", plume="movie", movie_path=str(tmp_path / "m.npy"), start_location=(0, 0),
                         goal_location=(4, 3), action_type="oriented", render_mode="rgb_array")
    env.reset(seed=0)
    dark = env.render()
    env.step(1)  # a turn: step 1 reads frame 1
    assert env.render()[-1, -1].sum() > dark[-1, -1].sum()


def test_refusals_are_one_line():
    with pytest.raises(ValueError, match=r"^render_mode must be None or 'rgb_array', got 'ansi'$"):
        gymnasium.make("PlumeNav-v0", render_mode="ansi")
    with pytest.raises(ValueError, match="vector env does not render"):
        gymnasium.make_vec("PlumeNav-v0", num_envs=2, vectorization_mode="vector_entry_point",
                           render_mode="rgb_array")
    with pytest.raises(TypeError, match="did you mean 'grid_size'"):
        gymnasium.make("PlumeNav-v0", grid_sz=(8, 8))
