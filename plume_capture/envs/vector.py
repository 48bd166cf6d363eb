"""A gymnasium VectorEnv stepping N plume-navigation envs in one kernel call."""
from __future__ import annotations

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from plume_capture.kernels import specialize
from plume_capture.kernels.rollout import reset_envs, step_envs
from plume_capture.envs.plume_nav import SEED_MAX, StepLimitSpec, check_seed


class PlumeNavVectorEnv(StepLimitSpec, VectorEnv):
    """``num_envs`` envs with the same parameters as :class:`PlumeNavEnv`, state as arrays with a
    leading env axis.

    Seeds: ``reset(seed=s)`` gives env i the seed ``s + i``; each later episode of env i (after
    autoreset) has seed ``(previous + num_envs) mod 2**32``. Autoreset mode is NEXT_STEP: the step
    after an episode ended resets that env (its action is ignored, reward 0, flags false).
    ``max_episode_steps`` (passed on by ``make_vec`` from a spec's step limit) truncates as a
    ``TimeLimit`` would: episodes end at the smaller of it and ``max_steps``.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, render_mode=None, **kwargs):
        from plume_capture.envs.plume_nav import PlumeNavEnv

        if render_mode is not None:
            raise ValueError(f"the vector env does not render (render_mode={render_mode!r}); "
                             "render a single PlumeNav-v0 with render_mode='rgb_array'")

        self.num_envs = int(num_envs)
        limit = kwargs.pop("max_episode_steps", None)
        probe = PlumeNavEnv(**kwargs)
        if limit is not None and limit != probe.params.max_steps:
            probe = PlumeNavEnv(**{**kwargs, "max_steps": min(int(limit), probe.params.max_steps)})
        self.physics, self.params = probe.physics, probe.params
        self.single_action_space = probe.action_space
        self.single_observation_space = probe.observation_space
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        n = self.num_envs
        ka = self.physics.kernel_args(envs=n)
        st, out = self._kstate, self._kout = ka.state, ka.rows(n)
        self._seeds, self._x, self._y, self._heading, self._k = st.seed, st.x, st.y, st.heading, st.k
        self._obs, self._rew, self._dist = out.obs, out.reward, out.distance
        self._term, self._trunc = out.terminated, out.truncated
        self._total = np.zeros(n, np.float64)
        self._needs_reset = np.ones(n, np.bool_)
        self._started = False
        self._kargs = (ka.params, ka.field)
        self._reset_k = specialize(reset_envs, ka.codes, (*self._kargs, self._needs_reset, st, out))
        self._step_k = specialize(step_envs, ka.codes, (*self._kargs, self._needs_reset, self._k, st, out))

    def reset(self, *, seed=None, options=None):
        # Validate before gymnasium's seeding, which takes only a Python int.
        if seed is None:
            base = None
        elif isinstance(seed, (list, tuple)):
            if len(seed) != self.num_envs:
                raise ValueError(f"expected {self.num_envs} seeds, got {len(seed)}")
            base = [check_seed(s) for s in seed]
        else:
            s = check_seed(seed)
            base = [(s + i) % (SEED_MAX + 1) for i in range(self.num_envs)]
        super().reset(seed=None if base is None else base[0])
        if base is None:
            base = [int(self.np_random.integers(0, SEED_MAX + 1)) for _ in range(self.num_envs)]
        self._seeds[:] = base
        mask = np.ones(self.num_envs, np.bool_)
        self._reset_k(*self._kargs, mask, self._kstate, self._kout)
        self._total[:] = 0.0
        self._needs_reset[:] = False
        self._started = True
        return self._obs.copy(), self._infos()

    def step(self, actions):
        if not self._started:
            raise RuntimeError("step() called before reset()")
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(f"actions must be {self.num_envs} integers, got {actions!r}")
        a = actions.astype(np.int64)
        live = ~self._needs_reset
        if np.any((a[live] < 0) | (a[live] >= self.single_action_space.n)):
            raise ValueError(f"invalid action for {self.single_action_space}: {actions!r}")
        resetting = self._needs_reset.copy()
        if resetting.any():
            self._seeds[resetting] = (self._seeds[resetting] + self.num_envs) % (SEED_MAX + 1)
            self._reset_k(*self._kargs, resetting, self._kstate, self._kout)
            self._total[resetting] = 0.0
        self._step_k(*self._kargs, resetting, a, self._kstate, self._kout)
        self._rew[resetting] = 0.0
        self._term[resetting] = False
        self._trunc[resetting] = False
        self._total += self._rew
        self._needs_reset = self._term | self._trunc
        return (self._obs.copy(), self._rew.copy(), self._term.copy(), self._trunc.copy(), self._infos())

    def _infos(self):
        gx, gy = self.params.goal_location
        dist = np.sqrt((self._x - gx) ** 2 + (self._y - gy) ** 2)
        return {
            "agent_position": np.stack([self._x, self._y], axis=1),
            "distance_to_goal": dist,
            "step_count": self._k.copy(),
            "total_reward": self._total.copy(),
            "seed": self._seeds.copy(),
        }
