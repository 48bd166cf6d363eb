"""A slow, obvious model of docs/spec.md §1–§7 for the differential tests.

Written from docs/spec.md, the random stream documented in ``plume_capture/kernels/rng.py`` and the
policies documented in ``plume_capture/kernels/policies.py`` — not from the kernel code. Plain
Python ints and floats (``round``, ``math``), NumPy only for the float32 field and the start draw.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

FLOAT32_EPS = float(np.finfo(np.float32).eps)
N_ACTIONS = {"discrete": 4, "oriented": 3, "run_tumble": 2}

# --- the counter-based random stream (docs/spec.md §7.1) ----------------------------------------------

MASK64 = 2**64 - 1
GAMMA = 0x9E3779B97F4A7C15
PURPOSE_POLICY, PURPOSE_TUMBLE, PURPOSE_WIND_A, PURPOSE_WIND_B, PURPOSE_EPS = 0, 1, 2, 3, 4


def mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def uniform(seed: int, step: int, purpose: int) -> float:
    """float64 in [0, 1) for (episode seed, 1-based step or 0 at reset, purpose)."""
    key = mix64((seed + GAMMA) & MASK64)
    u = mix64((key + (step * 256 + purpose) * GAMMA) & MASK64)
    return (u >> 11) * 2.0**-53


def randint(seed: int, step: int, purpose: int, n: int) -> int:
    return min(int(uniform(seed, step, purpose) * n), n - 1)


def normal_pair(seed: int, step: int) -> tuple[float, float]:
    """Box–Muller on purposes 2 and 3."""
    u1 = uniform(seed, step, PURPOSE_WIND_A)
    u2 = uniform(seed, step, PURPOSE_WIND_B)
    r = math.sqrt(-2.0 * math.log(1.0 - u1))
    t = 2.0 * math.pi * u2
    return r * math.cos(t), r * math.sin(t)


# --- configuration and field ------------------------------------------------------------------

@dataclass(frozen=True)
class Config:
    """The settings of docs/spec.md §3.1/§5 (names as ``gymnasium.make`` takes them)."""
    grid_size: tuple = (64, 64)
    goal_location: tuple | None = None
    goal_radius: float = 5.0
    sigma: float = 20.0
    max_steps: int = 1000
    action_type: str = "oriented"
    observation_type: str = "concentration"
    reward_type: str = "step_penalty"
    step_size: int = 1
    start_location: tuple | None = None
    n_sensors: int = 2
    sensor_distance: float = 2.0
    wind_direction_deg: float = 0.0
    wind_speed: float = 1.0
    wind_noise_std: float = 0.0

    def kwargs(self) -> dict:
        return asdict(self)

    @property
    def width(self) -> int:
        return self.grid_size[0]

    @property
    def height(self) -> int:
        return self.grid_size[1]

    @property
    def goal(self) -> tuple:
        if self.goal_location is not None:
            return tuple(self.goal_location)
        return (min(64, self.width - 1), min(64, self.height - 1))

    @property
    def radius(self) -> float:
        return FLOAT32_EPS if self.goal_radius == 0 else float(self.goal_radius)

    @property
    def n_actions(self) -> int:
        return N_ACTIONS[self.action_type]


def gaussian_field(width: int, height: int, source: tuple, sigma: float) -> np.ndarray:
    """``C[y, x] = exp(-((x-xs)² + (y-ys)²) / (2σ²))`` in float32, clipped to [0, 1]; shape (H, W)."""
    xx, yy = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    d2 = (xx - np.float32(source[0])) ** 2 + (yy - np.float32(source[1])) ** 2
    c = np.exp(-d2 / np.float32(2.0 * sigma * sigma))
    return np.clip(c, np.float32(0.0), np.float32(1.0)).astype(np.float32)


def start_position(seed: int, width: int, height: int) -> tuple:
    rng = np.random.default_rng(seed)
    x = int(rng.integers(0, width))
    y = int(rng.integers(0, height))
    return x, y


# --- one environment --------------------------------------------------------------------------

@dataclass
class Step:
    x: int
    y: int
    heading: float
    step: int
    action: int
    reward: float
    distance: float
    terminated: bool
    truncated: bool
    obs: np.ndarray


class RefEnv:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.field = gaussian_field(cfg.width, cfg.height, cfg.goal, cfg.sigma)

    def conc(self, x: int, y: int) -> np.float32:
        if 0 <= x < self.cfg.width and 0 <= y < self.cfg.height:
            return self.field[y, x]
        return np.float32(0.0)

    def reset(self, seed: int) -> np.ndarray:
        cfg = self.cfg
        self.seed = seed
        if cfg.start_location is not None:
            self.x, self.y = cfg.start_location
        else:
            self.x, self.y = start_position(seed, cfg.width, cfg.height)
        self.heading = 0.0
        self.step_count = 0
        self.total = 0.0
        self.obs = self.observe()
        return self.obs

    def step(self, action: int) -> Step:
        cfg = self.cfg
        if not 0 <= action < cfg.n_actions:
            raise ValueError(action)
        s = cfg.step_size
        k = self.step_count + 1
        x, y, h = self.x, self.y, self.heading
        if cfg.action_type == "discrete":
            dx, dy = [(0, s), (s, 0), (0, -s), (-s, 0)][action]
            x, y = x + dx, y + dy
        elif cfg.action_type == "oriented":
            if action == 0:
                x = round(x + s * math.cos(math.radians(h)))
                y = round(y + s * math.sin(math.radians(h)))
            elif action == 1:
                h = (h + 90.0) % 360.0
            else:
                h = (h - 90.0) % 360.0
        else:  # run_tumble: both actions move
            if action == 1:
                h = uniform(self.seed, k, PURPOSE_TUMBLE) * 360.0
            x = round(x + s * math.cos(math.radians(h)))
            y = round(y + s * math.sin(math.radians(h)))
        self.x = min(max(x, 0), cfg.width - 1)
        self.y = min(max(y, 0), cfg.height - 1)
        self.heading = h
        self.step_count = k
        dist = self.distance()
        reached = dist <= cfg.radius
        if cfg.reward_type == "sparse":
            reward = 1.0 if reached else 0.0
        else:
            reward = 1.0 if reached else -0.01
        self.total += reward
        truncated = k >= cfg.max_steps
        self.obs = self.observe()
        return Step(self.x, self.y, h, k, action, reward, dist, reached, truncated, self.obs)

    def distance(self) -> float:
        gx, gy = self.cfg.goal
        return math.sqrt((self.x - gx) ** 2 + (self.y - gy) ** 2)

    def observe(self) -> np.ndarray:
        cfg = self.cfg
        if cfg.observation_type == "concentration":
            return np.array([self.conc(self.x, self.y)], np.float32)
        if cfg.observation_type == "antennae":
            n, d = cfg.n_sensors, cfg.sensor_distance
            out = []
            for i in range(n):
                phi = math.radians(self.heading + i * 360 / n)
                out.append(self.conc(round(self.x + d * math.cos(phi)), round(self.y + d * math.sin(phi))))
            return np.array(out, np.float32)
        a = math.radians(cfg.wind_direction_deg)
        wx = cfg.wind_speed * math.cos(a)
        wy = cfg.wind_speed * math.sin(a)
        if cfg.wind_noise_std > 0:
            n1, n2 = normal_pair(self.seed, self.step_count)
            wx += cfg.wind_noise_std * n1
            wy += cfg.wind_noise_std * n2
        return np.array([wx, wy], np.float32)


# --- policies (kernels/policies.py docstring) ------------------------------------------------

@dataclass(frozen=True)
class Policy:
    name: str = "random"
    threshold: float = 1e-6
    persistence: int = 1
    eps: float = 0.0


class PolicyRunner:
    """A policy's memory over one episode; sees the concentration at the agent's own cell."""

    def __init__(self, policy: Policy, n_actions: int, seed: int, c0: float):
        self.p, self.n, self.seed = policy, n_actions, seed
        self.c_now = self.c_prev = float(c0)
        self.forward_budget = 0       # surge_cast
        self.last_was_turn = False    # temporal_derivative
        self.second_side = False      # turn side of the current bout is the second one
        self.in_bout = False          # casting/turning since the last rise

    def choose(self, k: int) -> int:
        p = self.p
        dc = self.c_now - self.c_prev
        if p.name == "random":
            return randint(self.seed, k, PURPOSE_POLICY, self.n)
        if p.name == "surge_cast":
            if k == 1:
                return 0
            if self.forward_budget > 0:
                self.forward_budget -= 1
                return 0
            if dc >= p.threshold:
                self._end_bout()
                return 0
            self.in_bout = True
            self.forward_budget = p.persistence
            return 2 if self.second_side else 1      # left side first
        if p.name == "temporal_derivative":
            if k == 1 or self.last_was_turn:
                self.last_was_turn = False
                return 0
            if dc >= p.threshold:
                self._end_bout()
                return 0
            self.in_bout = True
            self.last_was_turn = True
            return 1 if self.second_side else 2      # right side first
        if p.name == "run_tumble_chemotaxis":
            a = 0 if (k == 1 or dc >= p.threshold) else 1
            if uniform(self.seed, k, PURPOSE_EPS) < p.eps:
                a = randint(self.seed, k, PURPOSE_POLICY, self.n)
            return a
        raise ValueError(p.name)

    def _end_bout(self) -> None:
        """A rise ends a bout of turns; the next bout turns to the other side."""
        if self.in_bout:
            self.in_bout = False
            self.second_side = not self.second_side

    def sensed(self, c: float) -> None:
        self.c_prev, self.c_now = self.c_now, float(c)


# --- rollouts ---------------------------------------------------------------------------------

COLUMNS = ("step", "action", "reward", "terminated", "truncated", "x", "y", "heading", "distance", "obs")


def _rows(steps: list, obs_size: int) -> dict:
    return {
        "step": np.array([s.step for s in steps], np.int64),
        "action": np.array([s.action for s in steps], np.int64),
        "reward": np.array([s.reward for s in steps], np.float64),
        "terminated": np.array([s.terminated for s in steps], np.bool_),
        "truncated": np.array([s.truncated for s in steps], np.bool_),
        "x": np.array([s.x for s in steps], np.int64),
        "y": np.array([s.y for s in steps], np.int64),
        "heading": np.array([s.heading for s in steps], np.float64),
        "distance": np.array([s.distance for s in steps], np.float64),
        "obs": np.array([s.obs for s in steps], np.float32).reshape(len(steps), obs_size),
    }


def obs_size(cfg: Config) -> int:
    return {"concentration": 1, "antennae": cfg.n_sensors, "wind_vector": 2}[cfg.observation_type]


def episode(cfg: Config, seed: int, policy: Policy) -> list:
    """The steps of one whole episode with ``seed`` driven by ``policy``."""
    env = RefEnv(cfg)
    env.reset(seed)
    pol = PolicyRunner(policy, cfg.n_actions, seed, env.conc(env.x, env.y))
    steps = []
    while True:
        st = env.step(pol.choose(env.step_count + 1))
        pol.sensed(env.conc(env.x, env.y))
        steps.append(st)
        if st.terminated or st.truncated:
            return steps


def episodes(cfg: Config, seeds, policy: Policy, min_rows: int | None = None) -> tuple[dict, dict]:
    """Rows of ``seeds``' episodes one after another (plus ``episode`` index) and per-episode summaries.
    With ``min_rows``, stops after the episode that reaches that many rows (``len(summary["steps"])``
    tells how many seeds were used)."""
    all_steps, ep_index, summary = [], [], {k: [] for k in ("steps", "reward", "terminated", "truncated",
                                                            "x", "y", "distance")}
    for e, seed in enumerate(seeds):
        if min_rows is not None and len(all_steps) >= min_rows:
            break
        steps = episode(cfg, int(seed), policy)
        all_steps += steps
        ep_index += [e] * len(steps)
        total = 0.0
        for s in steps:
            total += s.reward
        last = steps[-1]
        for k, v in (("steps", last.step), ("reward", total), ("terminated", last.terminated),
                     ("truncated", last.truncated), ("x", last.x), ("y", last.y), ("distance", last.distance)):
            summary[k].append(v)
    rows = _rows(all_steps, obs_size(cfg))
    rows["episode"] = np.array(ep_index, np.int64)
    return rows, {k: np.array(v) for k, v in summary.items()}

