"""Immutable, validated environment and policy parameters, and their kernel-side form.

``EnvParams`` holds what a user sets; its defaults are those of the shipped config
(:mod:`plume_capture.defaults`). ``EnvParams.build()`` resolves what a null means (the rules below,
stated once), validates, computes the concentration field once and returns a ``Physics``, whose
``kernel_args`` makes the records and literal codes every kernel call takes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from plume_capture import defaults
from plume_capture.errors import ConfigError
from plume_capture.kernels import codes as C
from plume_capture.sim import puff
from plume_capture.spec import GRID_MAX, INT_RANGES, N_ACTIONS, PLUMES, policy_fit_problem, range_problem
from plume_capture.kernels.records import KernelArgs, Params

# What a null means (docs/spec.md §3.1): the one statement of each rule.
DEFAULT_MAX_STEPS = 1000  # max_steps null
DEFAULT_GOAL_RADIUS = 5.0  # goal_radius null
FLOAT32_EPS = float(np.finfo(np.float32).eps)  # goal_radius 0 (reached only on the goal cell)
MAX_FIELD_BYTES = 8 << 30  # largest static concentration field (float32 W x H) a run may allocate


def default_goal(width: int, height: int) -> tuple[int, int]:
    """The static plume's goal when ``goal_location`` is null."""
    return (min(64, width - 1), min(64, height - 1))


def resolve_nulls(plume: str, grid_size, max_steps, goal_radius, goal_location
                  ) -> tuple[int, float, tuple[int, int] | None]:
    """``(max_steps, goal_radius, goal_location)`` as they run, from checked values that may be
    null (docs/spec.md §3.1): the one statement of what a null means, for both what is hashed
    (:mod:`plume_capture.config.resolve`) and what runs (:meth:`EnvParams.build`). Pure.

    ``max_steps`` null -> 1000; ``goal_radius`` null -> 5.0, 0 -> float32 eps; ``goal_location``
    null -> :func:`default_goal` of the grid, except on a movie plume (the movie decides: None)."""
    steps = DEFAULT_MAX_STEPS if max_steps is None else int(max_steps)
    radius = DEFAULT_GOAL_RADIUS if goal_radius is None else float(goal_radius)
    if goal_location is not None:
        goal = (int(goal_location[0]), int(goal_location[1]))
    else:
        goal = None if plume == "movie" else default_goal(int(grid_size[0]), int(grid_size[1]))
    return steps, FLOAT32_EPS if radius == 0 else radius, goal


def field_problem(width: int, height: int) -> str | None:
    """Why a ``width x height`` static field cannot be allocated here, or None. The one rule: at
    most ``MAX_FIELD_BYTES`` and less than this machine's memory."""
    need = width * height * 4
    if need <= 1 << 30:
        return None
    if need > MAX_FIELD_BYTES:
        return (f"env.grid_size {width}x{height} needs a {need / 2**30:.1f} GiB concentration field; "
                f"at most {MAX_FIELD_BYTES / 2**30:.0f} GiB is allowed")
    import psutil

    total = psutil.virtual_memory().total
    if need >= total:
        return (f"env.grid_size {width}x{height} needs {need / 2**30:.1f} GiB for the concentration field, "
                f"more than this machine's memory ({total / 2**30:.1f} GiB)")
    return None


_ENV, _WIND, _MOVIE, _PUFF, _POLICY = (defaults.group(g) for g in ("env", "wind", "movie", "puff", "policy"))


def _default_pair(v):
    return None if v is None else tuple(v)


def _pair(name: str, value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, str) or not hasattr(value, "__len__") or len(value) != 2:
        raise ConfigError(f"{name} must be a pair [x, y], got {value!r}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ConfigError(f"{name} must hold integers, got {value!r}")
        out.append(int(v))
    return (out[0], out[1])


def _ranged(key: str, value: Any, nullable: bool = False):
    """``value`` of config key ``key`` checked against the one range table (plume_capture.spec,
    as the config check does), as a Python int or float; NumPy scalars are taken."""
    if isinstance(value, np.generic):
        value = value.item()
    problem = range_problem(key, value, nullable=nullable)
    if problem:
        raise ConfigError(problem)
    return int(value) if key in INT_RANGES else float(value)


def _choice(name: str, value: Any, options) -> str:
    if value not in options:
        raise ConfigError(f"{name} must be one of {', '.join(options)}, got {value!r}")
    return value


@dataclass(frozen=True)
class PolicyParams:
    name: str = _POLICY["name"]
    threshold: float = _POLICY["threshold"]
    persistence: int = _POLICY["persistence"]
    eps: float = _POLICY["eps"]

    @classmethod
    def from_config(cls, cfg: dict) -> "PolicyParams":
        """From the ``policy`` group of a config tree (missing keys take the defaults)."""
        pol = dict(cfg.get("policy") or {})
        return cls(**{k: pol[k] for k in cls.__dataclass_fields__ if k in pol})

    def validated(self, action_type: str) -> "PolicyParams":
        name = _choice("policy.name", self.name, tuple(C.POLICY_CODES))
        misfit = policy_fit_problem(name, action_type, key="action_type")
        if misfit:
            raise ConfigError(misfit)
        return PolicyParams(name, _ranged("policy.threshold", self.threshold),
                            _ranged("policy.persistence", self.persistence), _ranged("policy.eps", self.eps))


#: EnvParams field -> config key, where they differ
_KEY = {"wind_direction_deg": "wind.direction_deg", "wind_speed": "wind.speed", "wind_noise_std": "wind.noise_std",
        "movie_path": "movie.path", "movie_step_policy": "movie.step_policy",
        "movie_source_location": "movie.source_location", **{f"puff_{k}": f"puff.{k}" for k in _PUFF}}


@dataclass(frozen=True)
class EnvParams:
    grid_size: tuple[int, int] = tuple(_ENV["grid_size"])
    goal_location: tuple[int, int] | None = _default_pair(_ENV["goal_location"])
    goal_radius: float | None = _ENV["goal_radius"]
    sigma: float = _ENV["sigma"]
    max_steps: int | None = _ENV["max_steps"]
    action_type: str = _ENV["action_type"]
    observation_type: str = _ENV["observation_type"]
    reward_type: str = _ENV["reward_type"]
    step_size: int = _ENV["step_size"]
    start_location: tuple[int, int] | None = _default_pair(_ENV["start_location"])
    n_sensors: int = _ENV["n_sensors"]
    sensor_distance: float = _ENV["sensor_distance"]
    wind_direction_deg: float = _WIND["direction_deg"]
    wind_speed: float = _WIND["speed"]
    wind_noise_std: float = _WIND["noise_std"]
    plume: str = _ENV["plume"]
    movie_path: str | None = _MOVIE["path"]
    movie_step_policy: str = _MOVIE["step_policy"]
    movie_source_location: tuple[int, int] | None = _default_pair(_MOVIE["source_location"])
    puff_birth_rate: float = _PUFF["birth_rate"]
    puff_init_radius: float = _PUFF["init_radius"]
    puff_spread_rate: float = _PUFF["spread_rate"]
    puff_meander_std: float = _PUFF["meander_std"]
    puff_meander_time: float = _PUFF["meander_time"]
    puff_noise_std: float = _PUFF["noise_std"]
    puff_dt: float = _PUFF["dt"]
    puff_max_puffs: int = _PUFF["max_puffs"]
    puff_warmup_steps: int = _PUFF["warmup_steps"]

    @classmethod
    def from_config(cls, cfg: dict) -> "EnvParams":
        """From a config tree (``env``, ``wind``, ``movie``, ``puff`` groups; missing keys take the defaults)."""
        env = dict(cfg.get("env") or {})
        wind = dict(cfg.get("wind") or {})
        movie = dict(cfg.get("movie") or {})
        puffs = dict(cfg.get("puff") or {})
        pairs = ("grid_size", "goal_location", "start_location", "movie_source_location")
        given = {**{k: v for k, v in env.items() if k in cls.__dataclass_fields__},
                 **{f"wind_{k}": v for k, v in wind.items()},
                 **{f"movie_{k}": v for k, v in movie.items()},
                 **{f"puff_{k}": v for k, v in puffs.items()}}
        return cls(**{k: (_pair(_KEY.get(k, f"env.{k}"), v) if k in pairs else v)
                      for k, v in given.items() if k in cls.__dataclass_fields__})

    def puff_group(self) -> dict:
        """The ``puff`` config group of these parameters."""
        return {k: getattr(self, f"puff_{k}") for k in _PUFF}

    def build(self) -> "Physics":
        """Validate, resolve defaults, compute the static field or describe the movie (its frames
        are opened on first use of ``Physics.field``); raises ConfigError on bad input."""
        plume = _choice("env.plume", self.plume, PLUMES)
        movie_info = None
        field = None
        if plume == "movie":
            from plume_capture.sim.movie import describe_movie  # optional feature, imported on use

            step_policy = _choice("movie.step_policy", self.movie_step_policy, tuple(C.STEP_POLICY_CODES))
            movie_info = describe_movie(self.movie_path, step_policy)
            height, width = movie_info["shape"][1], movie_info["shape"][2]
        else:
            width, height = _pair("env.grid_size", self.grid_size)
            if not (1 <= width <= GRID_MAX and 1 <= height <= GRID_MAX):
                raise ConfigError(f"env.grid_size must have W, H in [1, {GRID_MAX}], got [{width}, {height}]")
            problem = field_problem(width, height) if plume == "static" else None
            if problem:
                raise ConfigError(problem)
        given_steps = None if self.max_steps is None else _ranged("env.max_steps", self.max_steps, True)
        given_radius = None if self.goal_radius is None else _ranged("env.goal_radius", self.goal_radius, True)
        max_steps, radius, goal = resolve_nulls(plume, (width, height), given_steps, given_radius,
                                                _pair("env.goal_location", self.goal_location))
        if plume == "movie":
            attr = (movie_info or {}).get("source_location_px")
            goal = (_pair("movie.source_location", self.movie_source_location)
                    or goal
                    or (tuple(attr) if attr is not None else None)
                    or (width // 2, height // 2))
        if not (0 <= goal[0] < width and 0 <= goal[1] < height):
            raise ConfigError(f"goal location {list(goal)} is outside the {width}x{height} grid")
        start = _pair("env.start_location", self.start_location)
        if start is not None and not (0 <= start[0] < width and 0 <= start[1] < height):
            raise ConfigError(f"start location {list(start)} is outside the {width}x{height} grid")
        sigma = _ranged("env.sigma", self.sigma)
        action_type = _choice("env.action_type", self.action_type, tuple(C.ACTION_CODES))
        obs_type = _choice("env.observation_type", self.observation_type, tuple(C.OBSERVATION_CODES))
        reward_type = _choice("env.reward_type", self.reward_type, tuple(C.REWARD_CODES))
        step_size = _ranged("env.step_size", self.step_size)
        n_sensors = _ranged("env.n_sensors", self.n_sensors)
        sensor_distance = _ranged("env.sensor_distance", self.sensor_distance)
        wind_dir = _ranged("wind.direction_deg", self.wind_direction_deg)
        wind_speed = _ranged("wind.speed", self.wind_speed)
        wind_noise = _ranged("wind.noise_std", self.wind_noise_std)
        step_policy = _choice("movie.step_policy", self.movie_step_policy, tuple(C.STEP_POLICY_CODES))
        bad = puff.problem(self.puff_group())
        if bad:
            raise ConfigError(bad)
        resolved = EnvParams(
            grid_size=(width, height), goal_location=goal, goal_radius=radius, sigma=sigma,
            max_steps=max_steps, action_type=action_type, observation_type=obs_type,
            reward_type=reward_type, step_size=step_size, start_location=start,
            n_sensors=n_sensors, sensor_distance=sensor_distance, wind_direction_deg=wind_dir,
            wind_speed=wind_speed, wind_noise_std=wind_noise, plume=plume,
            movie_path=self.movie_path if plume == "movie" else None,
            movie_step_policy=step_policy, movie_source_location=goal if plume == "movie" else None,
            **{f"puff_{k}": v for k, v in puff.normalized(self.puff_group()).items()},
        )
        if plume == "static":
            from plume_capture.kernels.plume import gaussian_field

            field = gaussian_field(width, height, goal[0], goal[1], sigma)
        return Physics(resolved, field, movie_info)


_NO_FIELD = np.zeros((1, 1, 1), np.float32)  # the field argument of a puff plume's kernels (never read)


@dataclass(frozen=True, eq=False)
class Physics:
    """Resolved parameters plus the concentration field (none for the puff plume);
    ``kernel_args`` gives what the kernels take. A movie's frames (``frames``) are opened,
    memory-mapped, on first use of ``field`` in the process that uses them
    (:func:`plume_capture.sim.movie.open_frames`)."""
    params: EnvParams
    frames: np.ndarray | None
    movie: dict | None = None

    @property
    def field(self) -> np.ndarray | None:
        if self.frames is None and self.movie is not None:
            from plume_capture.sim.movie import open_frames

            object.__setattr__(self, "frames", open_frames(self.movie))
        return self.frames

    def kernel_args(self, policy: PolicyParams | None = None, envs: int = 1) -> KernelArgs:
        """The one factory of kernel arguments: the literal codes, the :class:`Params` record of
        these parameters and ``policy`` (None: actions from outside, the envs), the field (a puff
        plume: none) and ``envs`` zeroed state slots (a puff plume's tables among them)."""
        p = self.params
        pol = PolicyParams(threshold=0.0, persistence=0) if policy is None else policy
        start = p.start_location if p.start_location else (-1, -1)
        i, f = int, float  # Python scalars: Numba types them as int64/float64 and unboxes them fastest
        params = Params(
            width=i(p.grid_size[0]), height=i(p.grid_size[1]), goal_x=i(p.goal_location[0]),
            goal_y=i(p.goal_location[1]), max_steps=i(p.max_steps), step_size=i(p.step_size),
            n_sensors=i(p.n_sensors), clamp=C.STEP_POLICY_CODES[p.movie_step_policy] == C.CLAMP,
            start_x=i(start[0]), start_y=i(start[1]), goal_radius=f(p.goal_radius),
            sensor_distance=f(p.sensor_distance), wind_speed=f(p.wind_speed),
            wind_direction=f(p.wind_direction_deg), wind_noise=f(p.wind_noise_std),
            threshold=f(pol.threshold), persistence=i(pol.persistence), eps=f(pol.eps),
            **(puff.coefficients(p.puff_group(), p.wind_speed, p.wind_direction_deg) if self.is_puff else puff.ZERO))
        codes = (self.act, self.obs, self.rew, C.EXTERNAL if policy is None else C.POLICY_CODES[policy.name],
                 C.PLUME_CODES[p.plume])
        if self.is_puff:
            field, state = _NO_FIELD, KernelArgs.new_state(envs, p.puff_max_puffs)
        else:
            field, state = self.field, KernelArgs.new_state(envs)
        return KernelArgs(codes, params, field, state, self.obs_size)

    @property
    def is_puff(self) -> bool:
        return self.params.plume == "puff"

    @property
    def act(self) -> int:
        return C.ACTION_CODES[self.params.action_type]

    @property
    def obs(self) -> int:
        return C.OBSERVATION_CODES[self.params.observation_type]

    @property
    def rew(self) -> int:
        return C.REWARD_CODES[self.params.reward_type]

    @property
    def n_actions(self) -> int:
        return N_ACTIONS[self.params.action_type]

    @property
    def obs_size(self) -> int:
        t = self.params.observation_type
        return 1 if t == "concentration" else (self.params.n_sensors if t == "antennae" else 2)

    def effective(self) -> dict:
        """The settings that actually run (``run.json`` ``extra.env``)."""
        p = self.params
        d = asdict(p)
        d["grid_size"] = list(p.grid_size)
        d["goal_location"] = list(p.goal_location)
        d["source_location"] = list(p.goal_location)
        d["start_location"] = list(p.start_location) if p.start_location else None
        d["wind"] = {"direction_deg": d.pop("wind_direction_deg"), "speed": d.pop("wind_speed"),
                     "noise_std": d.pop("wind_noise_std")}
        d.pop("movie_path"), d.pop("movie_step_policy"), d.pop("movie_source_location")
        d["movie"] = self.movie
        for k in p.puff_group():
            d.pop(f"puff_{k}")
        if p.plume == "puff":  # (absent for the other plumes: their extra.env is as before)
            d["puff"] = p.puff_group()
        if p.plume != "static":
            d.pop("sigma")
        return d

    def differs_from(self, recorded) -> str | None:
        """None when these settings are ``recorded`` (a run's ``extra.env``); else the first that
        differs, as ``key: recorded -> now`` (a ``movie.`` key first: the movie file changed)."""
        import json

        def leaves(v, key=""):
            if isinstance(v, dict):
                return {k: x for name, sub in v.items() for k, x in leaves(sub, f"{key}{name}.").items()}
            return {key[:-1]: v}

        now = leaves(json.loads(json.dumps(self.effective())))
        was = leaves(recorded) if isinstance(recorded, dict) else {}
        for key in sorted(set(now) | set(was), key=lambda k: (not k.startswith("movie."), k)):
            if key == "movie.file_version" and key not in was:  # a run made before it was recorded
                continue
            if now.get(key) != was.get(key):
                hint = ("; if its content is the same, give it back its modification time (touch -d)"
                        if key == "movie.file_version" else "")
                return f"{key}: {was.get(key)!r} -> {now.get(key)!r}{hint}"
        return None
