"""Immutable, validated environment and policy parameters, and their kernel-side form.

``EnvParams`` holds what a user sets (SPEC §3.1 defaults); ``EnvParams.build()`` resolves
defaults, validates, computes the concentration field once and returns a ``Physics`` — the
arrays and literal codes every kernel call takes.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field as dc_field
from typing import Any

import numpy as np

from plume_capture.errors import ConfigError
from plume_capture.kernels import codes as C

FLOAT32_EPS = float(np.finfo(np.float32).eps)
MAX_FIELD_BYTES = 8 << 30


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


def _int(name: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name} must be an integer >= {lo}, got {value!r}")
    if value < lo:
        raise ConfigError(f"{name} must be >= {lo}, got {value}")
    return int(value)


def _float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return v


def _choice(name: str, value: Any, options) -> str:
    if value not in options:
        raise ConfigError(f"{name} must be one of {', '.join(options)}, got {value!r}")
    return value


@dataclass(frozen=True)
class PolicyParams:
    name: str = "random"
    threshold: float = 1e-6
    persistence: int = 1
    eps: float = 0.0

    def validated(self, action_type: str) -> "PolicyParams":
        name = _choice("policy.name", self.name, tuple(C.POLICIES))
        fits = C.POLICY_ACTION_TYPES[name]
        if fits is not None and action_type not in fits:
            raise ConfigError(
                f"policy {name!r} needs action_type {' or '.join(fits)}, got {action_type!r}")
        eps = _float("policy.eps", self.eps)
        if not 0.0 <= eps <= 1.0:
            raise ConfigError(f"policy.eps must be in [0, 1], got {self.eps!r}")
        return PolicyParams(name, _float("policy.threshold", self.threshold),
                            _int("policy.persistence", self.persistence, 0), eps)


@dataclass(frozen=True)
class EnvParams:
    grid_size: tuple[int, int] = (64, 64)
    goal_location: tuple[int, int] | None = None
    goal_radius: float | None = 5.0
    sigma: float = 20.0
    max_steps: int | None = 1000
    action_type: str = "oriented"
    observation_type: str = "concentration"
    reward_type: str = "step_penalty"
    step_size: int = 1
    start_location: tuple[int, int] | None = None
    n_sensors: int = 2
    sensor_distance: float = 2.0
    wind_direction_deg: float = 0.0
    wind_speed: float = 1.0
    wind_noise_std: float = 0.0
    plume: str = "static"
    movie_path: str | None = None
    movie_step_policy: str = "wrap"
    movie_source_location: tuple[int, int] | None = None

    @classmethod
    def from_config(cls, cfg: dict) -> "EnvParams":
        """From the resolved config tree (``env``, ``wind``, ``movie`` groups)."""
        env = dict(cfg.get("env") or {})
        wind = dict(cfg.get("wind") or {})
        movie = dict(cfg.get("movie") or {})
        return cls(
            grid_size=_pair("env.grid_size", env.get("grid_size", (64, 64))),
            goal_location=_pair("env.goal_location", env.get("goal_location")),
            goal_radius=env.get("goal_radius"),
            sigma=env.get("sigma", 20.0),
            max_steps=env.get("max_steps"),
            action_type=env.get("action_type", "oriented"),
            observation_type=env.get("observation_type", "concentration"),
            reward_type=env.get("reward_type", "step_penalty"),
            step_size=env.get("step_size", 1),
            start_location=_pair("env.start_location", env.get("start_location")),
            n_sensors=env.get("n_sensors", 2),
            sensor_distance=env.get("sensor_distance", 2.0),
            wind_direction_deg=wind.get("direction_deg", 0.0),
            wind_speed=wind.get("speed", 1.0),
            wind_noise_std=wind.get("noise_std", 0.0),
            plume=env.get("plume", "static"),
            movie_path=movie.get("path"),
            movie_step_policy=movie.get("step_policy", "wrap"),
            movie_source_location=_pair("movie.source_location", movie.get("source_location")),
        )

    def build(self) -> "Physics":
        """Validate, resolve defaults, compute (or load) the field; raises ConfigError on bad input."""
        return self._build(None)

    def build_with_field(self, field: np.ndarray) -> "Physics":
        """As ``build`` for already-resolved params, reusing a field (e.g. movie frames shared
        through Ray's object store instead of re-read from disk)."""
        return self._build(field)

    def _build(self, given_field) -> "Physics":
        plume = _choice("env.plume", self.plume, ("static", "movie"))
        movie_info = None
        field = given_field
        if plume == "movie":
            from plume_capture.sim.movie import load_movie  # optional feature, imported on use

            step_policy = _choice("movie.step_policy", self.movie_step_policy, tuple(C.STEP_POLICIES))
            if field is None:
                field, movie_info = load_movie(self.movie_path, step_policy)
            else:
                movie_info = None
            height, width = field.shape[1], field.shape[2]
        else:
            width, height = _pair("env.grid_size", self.grid_size)
            if width < 1 or height < 1:
                raise ConfigError(f"env.grid_size must be >= 1x1, got {width}x{height}")
            need = width * height * 4
            if need > MAX_FIELD_BYTES:
                raise ConfigError(
                    f"env.grid_size {width}x{height} needs a {need / 2**30:.1f} GiB concentration field; "
                    f"at most {MAX_FIELD_BYTES / 2**30:.0f} GiB is allowed")
        if plume == "movie":
            attr = (movie_info or {}).get("source_location_px")
            goal = (_pair("movie.source_location", self.movie_source_location)
                    or _pair("env.goal_location", self.goal_location)
                    or (tuple(attr) if attr is not None else None)
                    or (width // 2, height // 2))
        else:
            goal = _pair("env.goal_location", self.goal_location)
            if goal is None:
                goal = (min(64, width - 1), min(64, height - 1))
        if not (0 <= goal[0] < width and 0 <= goal[1] < height):
            raise ConfigError(f"goal location {list(goal)} is outside the {width}x{height} grid")
        start = _pair("env.start_location", self.start_location)
        if start is not None and not (0 <= start[0] < width and 0 <= start[1] < height):
            raise ConfigError(f"start location {list(start)} is outside the {width}x{height} grid")
        radius = 5.0 if self.goal_radius is None else _float("env.goal_radius", self.goal_radius)
        if radius < 0:
            raise ConfigError(f"env.goal_radius must be >= 0, got {self.goal_radius!r}")
        if radius == 0:
            radius = FLOAT32_EPS
        sigma = _float("env.sigma", self.sigma)
        if sigma <= 0:
            raise ConfigError(f"env.sigma must be > 0, got {self.sigma!r}")
        max_steps = 1000 if self.max_steps is None else _int("env.max_steps", self.max_steps, 1)
        action_type = _choice("env.action_type", self.action_type, tuple(C.ACTION_TYPES))
        obs_type = _choice("env.observation_type", self.observation_type, tuple(C.OBSERVATION_TYPES))
        reward_type = _choice("env.reward_type", self.reward_type, tuple(C.REWARD_TYPES))
        step_size = _int("env.step_size", self.step_size, 1)
        n_sensors = _int("env.n_sensors", self.n_sensors, 1)
        sensor_distance = _float("env.sensor_distance", self.sensor_distance)
        wind_dir = _float("wind.direction_deg", self.wind_direction_deg)
        wind_speed = _float("wind.speed", self.wind_speed)
        wind_noise = _float("wind.noise_std", self.wind_noise_std)
        if wind_noise < 0:
            raise ConfigError(f"wind.noise_std must be >= 0, got {self.wind_noise_std!r}")
        step_policy = _choice("movie.step_policy", self.movie_step_policy, tuple(C.STEP_POLICIES))
        resolved = EnvParams(
            grid_size=(width, height), goal_location=goal, goal_radius=radius, sigma=sigma,
            max_steps=max_steps, action_type=action_type, observation_type=obs_type,
            reward_type=reward_type, step_size=step_size, start_location=start,
            n_sensors=n_sensors, sensor_distance=sensor_distance, wind_direction_deg=wind_dir,
            wind_speed=wind_speed, wind_noise_std=wind_noise, plume=plume,
            movie_path=self.movie_path if plume == "movie" else None,
            movie_step_policy=step_policy, movie_source_location=goal if plume == "movie" else None,
        )
        if field is None:
            from plume_capture.kernels.plume import gaussian_field

            field = gaussian_field(width, height, goal[0], goal[1], sigma)
        return Physics(resolved, field, movie_info)


@dataclass(frozen=True, eq=False)
class Physics:
    """Resolved parameters plus what the kernels take: literal codes, ``ip``/``fp`` vectors, field."""
    params: EnvParams
    field: np.ndarray
    movie: dict | None = None
    ip: np.ndarray = dc_field(init=False)
    fp: np.ndarray = dc_field(init=False)

    def __post_init__(self):
        p = self.params
        ip = np.zeros(C.N_IPARAMS, dtype=np.int64)
        ip[C.I_W], ip[C.I_H] = p.grid_size
        ip[C.I_GX], ip[C.I_GY] = p.goal_location
        ip[C.I_MAX_STEPS] = p.max_steps
        ip[C.I_STEP_SIZE] = p.step_size
        ip[C.I_N_SENSORS] = p.n_sensors
        ip[C.I_FRAME_POLICY] = C.STEP_POLICIES[p.movie_step_policy]
        ip[C.I_START_X], ip[C.I_START_Y] = p.start_location if p.start_location else (-1, -1)
        fp = np.zeros(C.N_FPARAMS, dtype=np.float64)
        fp[C.F_GOAL_RADIUS] = p.goal_radius
        fp[C.F_SENSOR_DISTANCE] = p.sensor_distance
        fp[C.F_WIND_SPEED] = p.wind_speed
        fp[C.F_WIND_DIRECTION] = p.wind_direction_deg
        fp[C.F_WIND_NOISE] = p.wind_noise_std
        object.__setattr__(self, "ip", ip)
        object.__setattr__(self, "fp", fp)

    @property
    def act(self) -> int:
        return C.ACTION_TYPES[self.params.action_type]

    @property
    def obs(self) -> int:
        return C.OBSERVATION_TYPES[self.params.observation_type]

    @property
    def rew(self) -> int:
        return C.REWARD_TYPES[self.params.reward_type]

    @property
    def n_actions(self) -> int:
        return C.N_ACTIONS[self.act]

    @property
    def obs_size(self) -> int:
        t = self.params.observation_type
        return 1 if t == "concentration" else (self.params.n_sensors if t == "antennae" else 2)

    def with_policy(self, policy: PolicyParams) -> np.ndarray:
        """``fp`` with the policy's parameters filled in."""
        fp = self.fp.copy()
        fp[C.F_THRESHOLD] = policy.threshold
        fp[C.F_EPS] = policy.eps
        return fp

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
        if p.plume == "movie":
            d.pop("sigma")
        return d
