"""The puff plume's settings (the ``puff`` config group, docs/puff.md): their ranges, the one check of
them, and the per-step coefficients the kernel takes (``kernels.puff``)."""
from __future__ import annotations

import math
import numbers
from typing import Any, Mapping

#: key -> inclusive range (floats, except the two integer keys)
RANGES = {
    "birth_rate": (0.0, 1e6),  # puffs per second
    "init_radius": (1e-3, 1e6),  # cells
    "spread_rate": (0.0, 1e9),  # cells^2 per second
    "meander_std": (0.0, 1e9),  # cells per second
    "meander_time": (1e-6, 1e12),  # seconds
    "noise_std": (0.0, 1e9),  # cells per sqrt(second)
    "dt": (1e-6, 1e6),  # seconds per environment step
    "max_puffs": (1, 65536),  # live puffs per env: (1 + max_puffs) * 24 bytes of state
    "warmup_steps": (0, 100_000),  # plume steps before each episode
}
INTEGER_KEYS = ("max_puffs", "warmup_steps")
MAX_BIRTHS_PER_STEP = 32.0  # birth_rate * dt: the Poisson draw's exp(-mean) stays a normal float


def problem(puff: Mapping[str, Any]) -> str | None:
    """Why the ``puff`` group ``puff`` (complete) cannot run, or None."""
    for key, (lo, hi) in RANGES.items():
        v = puff[key]
        if key in INTEGER_KEYS:
            ok = isinstance(v, numbers.Integral) and not isinstance(v, bool) and lo <= v <= hi
            kind = "an integer"
        else:
            ok = (isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
                  and lo <= v <= hi)
            kind = "a number"
        if not ok:
            return f"puff.{key} must be {kind} in [{lo:g}, {hi:g}], got {v!r}"
    if puff["birth_rate"] * puff["dt"] > MAX_BIRTHS_PER_STEP:
        return (f"puff.birth_rate * puff.dt (mean births per step) must be <= {MAX_BIRTHS_PER_STEP:g}, "
                f"got {puff['birth_rate'] * puff['dt']:g}")
    return None


def normalized(puff: Mapping[str, Any]) -> dict:
    """A checked ``puff`` group with Python ints and floats (as ``run.json`` records them)."""
    return {k: (int(v) if k in INTEGER_KEYS else float(v)) for k, v in puff.items()}


def state_bytes(max_puffs: int) -> int:
    """Memory of one env's puff table (``kernels.puff``)."""
    return (1 + max_puffs) * 3 * 8


def coefficients(puff: Mapping[str, Any], wind_speed: float, wind_direction_deg: float) -> dict:
    """The ``records.Params.puff_*`` values (per plume step) of a checked ``puff`` group and the wind."""
    dt = float(puff["dt"])
    t = wind_direction_deg * (math.pi / 180.0)
    decay = math.exp(-dt / puff["meander_time"])
    return dict(
        puff_lam=float(puff["birth_rate"]) * dt, puff_r0sq=float(puff["init_radius"]) ** 2,
        puff_grow=float(puff["spread_rate"]) * dt, puff_ux=wind_speed * math.cos(t) * dt,
        puff_uy=wind_speed * math.sin(t) * dt, puff_dt=dt, puff_decay=decay,
        puff_kick=float(puff["meander_std"]) * math.sqrt(1.0 - decay * decay),
        puff_jitter=float(puff["noise_std"]) * math.sqrt(3.0 * dt), puff_warmup=int(puff["warmup_steps"]))


ZERO = dict(puff_lam=0.0, puff_r0sq=0.0, puff_grow=0.0, puff_ux=0.0, puff_uy=0.0, puff_dt=0.0, puff_decay=0.0,
            puff_kick=0.0, puff_jitter=0.0, puff_warmup=0)


def mean_field(physics, seed: int, frames: int = 20, max_cells: int = 128):
    """A picture of the puff plume of the episode with ``seed``: the mean of ``frames`` frames spread
    over the episode's first ``min(max_steps, 200)`` steps, on at most ``max_cells`` cells per
    axis (every ``stride``-th cell). Returns ``(field (rows, cols) float32, stride, every)``."""
    import numpy as np

    from plume_capture.kernels import puff as kpuff
    from plume_capture.kernels.rng import episode_key, plume_key

    p = physics.params
    w, h = p.grid_size
    stride = max(1, -(-max(w, h) // max_cells))
    every = max(1, min(p.max_steps, 200) // frames)
    ka = physics.kernel_args()
    out = np.zeros((-(-h // stride), -(-w // stride)), np.float64)
    pkey = np.uint64(int(plume_key(np.uint64(int(episode_key(seed))))))
    kpuff.mean_field(ka.params, ka.state.puff[0], pkey, frames, every, stride, out)
    return out.astype(np.float32), stride, every
