"""The named records every kernel takes instead of positional arrays (Numba-compatible namedtuples).

* :class:`Params` — the static parameters of one environment configuration and policy, as Python
  scalars (passed by value, so compiled kernels keep them in registers; Numba types them as
  int64/float64/boolean and unboxes them faster than NumPy scalars, which matters for the single
  env's one call per step).
* :class:`EnvState` — per-env state buffers, entry ``i`` = env slot ``i`` (the capture kernel runs
  one slot through a shard's episodes; the vector env has one slot per env).
* :class:`StepRows` — output buffers, one row per step (or per env for the env kernels).
* :class:`EpisodeRows` — output buffers, one row per episode (capture only).

:class:`KernelArgs` bundles them with the static choice codes; ``Physics.kernel_args``
(``plume_capture.sim.params``) is the one factory that fills it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


class Params(NamedTuple):
    width: int
    height: int
    goal_x: int
    goal_y: int
    max_steps: int
    step_size: int
    n_sensors: int
    clamp: bool  # movie frames: clamp at the last frame (else wrap)
    start_x: int  # -1: random start (docs/spec.md §3.2)
    start_y: int
    goal_radius: float
    sensor_distance: float
    wind_speed: float
    wind_direction: float
    wind_noise: float
    threshold: float  # policy parameters (docs/spec.md §7.2)
    persistence: int
    eps: float
    # puff plume coefficients per plume step (kernels.puff; zeros for the other plumes)
    puff_lam: float
    puff_r0sq: float
    puff_grow: float
    puff_ux: float
    puff_uy: float
    puff_dt: float
    puff_decay: float
    puff_kick: float
    puff_jitter: float
    puff_warmup: int


class EnvState(NamedTuple):
    seed: np.ndarray  # int64: the seed of the slot's current episode
    x: np.ndarray  # int64
    y: np.ndarray  # int64
    heading: np.ndarray  # float64, degrees
    k: np.ndarray  # int64: steps taken in the episode
    m0: np.ndarray  # int64: policy memory (see kernels.policies)
    m1: np.ndarray  # int64
    c_now: np.ndarray  # float64: the policy's own sensor now ...
    c_prev: np.ndarray  # float64: ... and before the last step
    total: np.ndarray  # float64: reward so far in the episode
    episode: np.ndarray  # int64: capture: index of the current episode in the shard's seeds
    live: np.ndarray  # bool: capture: inside an episode (False: start the next one first)
    puff: np.ndarray  # float64 (slots, 1 + max_puffs, 3): the puff plume's tables (kernels.puff; max_puffs 0 otherwise)


class StepRows(NamedTuple):
    episode: np.ndarray  # int64: index into the shard's seeds (capture)
    step: np.ndarray  # int64
    action: np.ndarray  # int64
    reward: np.ndarray  # float64
    terminated: np.ndarray  # bool
    truncated: np.ndarray  # bool
    x: np.ndarray  # int64
    y: np.ndarray  # int64
    heading: np.ndarray  # float64
    distance: np.ndarray  # float64
    obs: np.ndarray  # float32, (rows, obs_size)


class EpisodeRows(NamedTuple):
    steps: np.ndarray  # int64
    reward: np.ndarray  # float64
    terminated: np.ndarray  # bool
    truncated: np.ndarray  # bool
    x: np.ndarray  # int64
    y: np.ndarray  # int64
    distance: np.ndarray  # float64


_STATE_TYPES = EnvState(np.int64, np.int64, np.int64, np.float64, np.int64, np.int64, np.int64, np.float64,
                        np.float64, np.float64, np.int64, np.bool_, np.float64)
STEP_TYPES = StepRows(np.int64, np.int64, np.int64, np.float64, np.bool_, np.bool_, np.int64, np.int64,
                      np.float64, np.float64, np.float32)
_EPISODE_TYPES = EpisodeRows(np.int64, np.float64, np.bool_, np.bool_, np.int64, np.int64, np.float64)


@dataclass(frozen=True, eq=False)
class KernelArgs:
    """What every kernel call takes: ``codes`` (action, observation, reward, policy, plume; Numba
    literals), ``params``, ``field`` (float32 frames ``(T, H, W)``, read-only, may be shared; a
    one-cell zero for the puff plume, whose state is ``state.puff``) and ``state`` (``envs`` slots,
    zeroed); ``rows``/``episodes`` allocate output buffers (``empty(n, dtype)`` allocates one
    column, e.g. in Arrow's pool)."""
    codes: tuple
    params: Params
    field: np.ndarray
    state: EnvState
    obs_size: int

    def rows(self, n: int, empty=np.zeros) -> StepRows:
        *cols, obs = STEP_TYPES
        return StepRows(*(empty(n, t) for t in cols), empty(n * self.obs_size, obs).reshape(n, self.obs_size))

    @staticmethod
    def episodes(n: int, empty=np.zeros) -> EpisodeRows:
        return EpisodeRows(*(empty(n, t) for t in _EPISODE_TYPES))

    @staticmethod
    def new_state(envs: int, max_puffs: int = 0) -> EnvState:
        *cols, puff = _STATE_TYPES
        return EnvState(*(np.zeros(envs, t) for t in cols), np.zeros((envs, 1 + max_puffs, 3), puff))
