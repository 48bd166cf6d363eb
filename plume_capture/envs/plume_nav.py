"""``PlumeNav-v0``: one plume-navigation environment (docs/spec.md §12) on the capture kernels."""
from __future__ import annotations

import dataclasses
import difflib
import math

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from plume_capture.kernels import puff, specialize
from plume_capture.kernels.rollout import reset_one, step_one
from plume_capture.sim.params import EnvParams
from plume_capture.spec import SEED_MAX


def check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= SEED_MAX:
        raise ValueError(f"seed must be an integer in [0, 2**32-1], got {seed!r}")
    return int(seed)


def make_spaces(params: EnvParams, n_actions: int, obs_size: int):
    if params.observation_type == "wind_vector":
        obs = spaces.Box(-np.inf, np.inf, (2,), np.float32)
    else:
        obs = spaces.Box(0.0, 1.0, (obs_size,), np.float32)
    return spaces.Discrete(n_actions), obs


def render_stride(params) -> int:
    """Every how many cells a picture samples the grid (at most 512 pixels a side)."""
    w, h = params.grid_size
    return max(1, -(-max(w, h) // 512))


def render_rgb(field: np.ndarray, params, step: int, goal, agent, *, sampled: bool = False) -> np.ndarray:
    """The image ``PlumeNavEnv.render`` returns (see there); ``sampled``: ``field`` is already
    on every :func:`render_stride`-th cell."""
    if field.ndim == 3:  # a movie: the frame the observation after ``step`` reads
        t = field.shape[0]
        field = field[step % t if params.movie_step_policy == "wrap" else min(step, t - 1)]
    sub = render_stride(params)
    c = np.clip(np.asarray(field if sampled else field[::sub, ::sub], np.float32), 0.0, 1.0)
    img = np.stack([230 * c, 200 * np.sqrt(c), 60 + 100 * c], axis=-1).astype(np.uint8)
    scale = max(1, 256 // max(img.shape[:2]))
    for (x, y), colour in ((goal, (40, 220, 60)), (agent, (255, 30, 30))):
        img[y // sub, x // sub] = colour
    img = img.repeat(scale, axis=0).repeat(scale, axis=1)
    return np.ascontiguousarray(img[::-1])


class StepLimitSpec:
    """``spec.max_episode_steps`` is the env's ``params.max_steps``: ``gymnasium.make`` and
    ``make_vec`` set a spec without a step limit, and the env truncates itself."""

    _spec = None

    @property
    def spec(self):
        return self._spec

    @spec.setter
    def spec(self, value):
        self._spec = None if value is None else dataclasses.replace(value, max_episode_steps=self.params.max_steps)


class PlumeNavEnv(StepLimitSpec, gym.Env):
    """An agent on a ``W x H`` grid seeks the odor source from concentration readings.

    Keyword arguments are the fields of :class:`plume_capture.sim.params.EnvParams` (defaults: the
    shipped config, docs/spec.md §3.1; all listed in docs/env.md), and ``render_mode`` (None or
    ``"rgb_array"``).
    ``step`` before ``reset`` or after the episode ended, and actions outside the action space,
    raise instead of being coerced.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode=None, **kwargs):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        unknown = sorted(set(kwargs) - set(EnvParams.__dataclass_fields__))
        if unknown:
            near = difflib.get_close_matches(unknown[0], EnvParams.__dataclass_fields__, n=1)
            raise TypeError(f"PlumeNav-v0 has no argument {unknown[0]!r}"
                            + (f"; did you mean {near[0]!r}?" if near else " (docs/env.md lists them)"))
        pairs = ("grid_size", "goal_location", "start_location", "movie_source_location")
        params = EnvParams(**{k: (None if v is None else tuple(v)) if k in pairs else v for k, v in kwargs.items()})
        self.physics = params.build()
        self.params = self.physics.params
        self.action_space, self.observation_space = make_spaces(
            self.params, self.physics.n_actions, self.physics.obs_size)
        ka = self.physics.kernel_args()
        self._obs = ka.rows(1).obs
        self._phys_args = (ka.params, ka.field, ka.state.puff[0])
        self._reset = specialize(reset_one, ka.codes, (*self._phys_args, 0, self._obs))
        self._step = specialize(step_one, ka.codes, (*self._phys_args, 0, 0, 0, 0, 0.0, 0, self._obs))
        self._x = self._y = self._k = 0
        self._heading = 0.0
        self._ep_seed = None
        self._seeded = False
        self._total = 0.0
        self._done = True
        self._started = False
        self._reached = False
        self._episodes = 0
        self._dist = 0.0

    def render(self):
        """With ``render_mode="rgb_array"``: the plume (dark to bright with concentration), the goal
        (green) and the agent (red) as a ``uint8 (rows, cols, 3)`` image, +y upwards, at most 512
        pixels a side (large grids are subsampled)."""
        if self.render_mode != "rgb_array":
            return None
        if self.physics.field is None:  # a puff plume: its table now, on the picture's cells
            sub = render_stride(self.params)
            w, h = self.params.grid_size
            now = np.zeros((-(-h // sub), -(-w // sub)), np.float64)
            puff.snapshot(self._phys_args[0], self._phys_args[2], sub, now)
            return render_rgb(now, self.params, self._k, self.goal_location, (self._x, self._y), sampled=True)
        return render_rgb(self.physics.field, self.params, self._k, self.goal_location, (self._x, self._y))

    @property
    def goal_location(self):
        return tuple(self.params.goal_location)

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            seed = check_seed(seed)
        super().reset(seed=seed)
        self._seeded = seed is not None
        self._ep_seed = seed if seed is not None else int(self.np_random.integers(0, SEED_MAX + 1))
        self._x, self._y = (int(v) for v in self._reset(*self._phys_args, self._ep_seed, self._obs))
        self._heading, self._k, self._total = 0.0, 0, 0.0
        self._done, self._started, self._reached = False, True, False
        # A seeded reset restarts the env's sequence of episodes (and keeps step() deterministic
        # for gymnasium's checker).
        self._episodes = 1 if seed is not None else self._episodes + 1
        gx, gy = self.params.goal_location
        self._dist = math.sqrt((self._x - gx) ** 2 + (self._y - gy) ** 2)
        return self._obs[0].copy(), self._info()

    def step(self, action):
        if not self._started:
            raise RuntimeError("step() called before reset()")
        if self._done:
            raise RuntimeError("step() called after the episode ended; call reset()")
        if isinstance(action, np.ndarray) and action.shape == ():
            action = action.item()
        if isinstance(action, (bool, np.bool_)) or not isinstance(action, (int, np.integer)) \
                or not 0 <= action < self.action_space.n:
            raise ValueError(f"invalid action {action!r} for {self.action_space}")
        x, y, h, k, rw, d, te, tr = self._step(*self._phys_args, int(action), self._ep_seed, self._x, self._y,
                                               self._heading, self._k, self._obs)
        self._x, self._y, self._heading, self._k = int(x), int(y), float(h), int(k)
        self._total += rw
        self._dist = float(d)
        self._reached = bool(te)
        self._done = bool(te or tr)
        return self._obs[0].copy(), float(rw), bool(te), bool(tr), self._info()

    def _info(self):
        info = {
            "agent_position": (self._x, self._y),
            "agent_xy": (self._x, self._y),
            "heading": self._heading,
            "distance_to_goal": self._dist,
            "goal_location": self.goal_location,
            "source_location": self.goal_location,
            "step_count": self._k,
            "total_reward": self._total,
            "goal_reached": self._reached,
            "episode_count": self._episodes,
        }
        if self._seeded:
            info["seed"] = self._ep_seed
        return info
