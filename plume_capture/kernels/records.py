"""The named records every kernel takes instead of positional arrays (Numba-compatible namedtuples).

* :class:`Params` — the static parameters of one environment configuration and policy, as NumPy
  scalars (passed by value, so compiled kernels keep them in registers; the interpreted path sees
  the same NumPy types as the compiled one).
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
    width: np.int64
    height: np.int64
    goal_x: np.int64
    goal_y: np.int64
    max_steps: np.int64
    step_size: np.int64
    n_sensors: np.int64
    clamp: np.bool_  # movie frames: clamp at the last frame (else wrap)
    start_x: np.int64  # -1: random start (SPEC §3.2)
    start_y: np.int64
    goal_radius: np.float64
    sensor_distance: np.float64
    wind_speed: np.float64
    wind_direction: np.float64
    wind_noise: np.float64
    threshold: np.float64  # policy parameters (SPEC §7.2)
    persistence: np.int64
    eps: np.float64


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
                        np.float64, np.float64, np.int64, np.bool_)
STEP_TYPES = StepRows(np.int64, np.int64, np.int64, np.float64, np.bool_, np.bool_, np.int64, np.int64,
                      np.float64, np.float64, np.float32)
_EPISODE_TYPES = EpisodeRows(np.int64, np.float64, np.bool_, np.bool_, np.int64, np.int64, np.float64)


@dataclass(frozen=True, eq=False)
class KernelArgs:
    """What every kernel call takes: ``codes`` (action, observation, reward, policy; Numba literals),
    ``params``, ``field`` and ``state`` (``envs`` slots, zeroed); ``rows``/``episodes`` allocate
    output buffers (``empty(n, dtype)`` allocates one column, e.g. in Arrow's pool)."""
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
    def new_state(envs: int) -> EnvState:
        return EnvState(*(np.zeros(envs, t) for t in _STATE_TYPES))
