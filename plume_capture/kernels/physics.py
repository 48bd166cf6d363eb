"""One environment step, split in the pieces every kernel shares (docs/spec.md §3.3–§6).

The functions take the static choice codes as arguments; callers pass Numba literals so the
untaken branches are pruned at compile time.
"""
import numpy as np

from plume_capture.kernels import codes as C
from plume_capture.kernels._jit import njit
from plume_capture.kernels import puff
from plume_capture.kernels.plume import sample
from plume_capture.kernels.rng import normal_pair, uniform
from plume_capture.spec import GOAL_REWARD, STEP_PENALTY

_DEG = np.pi / 180.0
# Discrete moves 0..3 and the oriented forward move for headings 0, 90, 180, 270 (multiples of
# 90° make s·cos θ and s·sin θ round to exactly these offsets).
_DX = np.array([0, 1, 0, -1], dtype=np.int64)
_DY = np.array([1, 0, -1, 0], dtype=np.int64)
_FX = np.array([1, 0, -1, 0], dtype=np.int64)
_FY = np.array([0, 1, 0, -1], dtype=np.int64)
_TURN = np.array([0, 1, 3], dtype=np.int64)  # oriented actions as quarter turns (mod 4): F, L, R


@njit
def _clamp(v, hi):
    return 0 if v < 0 else (hi if v > hi else v)


@njit
def _along(x, y, heading, s):
    """Cell reached from (x, y) going s along ``heading`` degrees, rounded half to even."""
    t = heading * _DEG
    return int(np.rint(x + s * np.cos(t))), int(np.rint(y + s * np.sin(t)))


@njit
def move(act_type, action, x, y, heading, step, key, s, width, height):
    """Apply ``action``; returns the clamped new position and heading (docs/spec.md §4)."""
    if act_type == C.DISCRETE:
        nx = x + s * _DX[action]
        ny = y + s * _DY[action]
    elif act_type == C.ORIENTED:
        # Branch-free: random actions would mispredict a branch per step (~2x slower).
        h = int(heading) // 90
        fwd = 1 if action == 0 else 0
        nx = x + s * _FX[h] * fwd
        ny = y + s * _FY[h] * fwd
        heading = ((h + _TURN[action]) & 3) * 90.0
    else:  # RUN_TUMBLE
        tumble = uniform(key, step, C.P_TUMBLE) * 360.0
        heading = tumble if action == 1 else heading
        nx, ny = _along(x, y, heading, s)
    return _clamp(nx, width - 1), _clamp(ny, height - 1), heading


@njit
def distance(x, y, gx, gy):
    dx = x - gx
    dy = y - gy
    return np.sqrt(float(dx * dx + dy * dy))


@njit
def reward(rew_type, reached):
    if rew_type == C.SPARSE:
        return GOAL_REWARD if reached else 0.0
    return GOAL_REWARD if reached else STEP_PENALTY


@njit
def concentration(PLM, p, field, frame, pt, x, y):
    """Concentration at cell (x, y): of ``frame`` of the field, or of the puff table ``pt``
    (``PLM == PUFF``)."""
    if PLM == C.PUFF:
        return puff.sample(p, pt, x, y)
    return sample(field, frame, x, y, p.width, p.height)


@njit
def observe(obs_type, PLM, p, out, row, field, frame, pt, x, y, heading, step, key):
    """Write the observation of the state after ``step`` into ``out[row]`` (float32, docs/spec.md §5)."""
    if obs_type == C.CONCENTRATION:
        out[row, 0] = concentration(PLM, p, field, frame, pt, x, y)
    elif obs_type == C.ANTENNAE:
        for i in range(p.n_sensors):
            sx, sy = _along(x, y, heading + i * 360.0 / p.n_sensors, p.sensor_distance)
            out[row, i] = concentration(PLM, p, field, frame, pt, sx, sy)
    else:  # WIND_VECTOR
        t = p.wind_direction * _DEG
        wx = p.wind_speed * np.cos(t)
        wy = p.wind_speed * np.sin(t)
        if p.wind_noise > 0.0:
            n1, n2 = normal_pair(key, step)
            wx += p.wind_noise * n1
            wy += p.wind_noise * n2
        out[row, 0] = wx
        out[row, 1] = wy


@njit
def obs_size(obs_type, n_sensors):
    if obs_type == C.CONCENTRATION:
        return 1
    if obs_type == C.ANTENNAE:
        return n_sensors
    return 2
