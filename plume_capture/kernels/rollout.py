"""The kernels that run environments. Every entry point takes the static choices (action,
observation, reward type, policy and plume codes) as Numba literals and the named records of
:mod:`plume_capture.kernels.records`; all of them start episodes with ``_reset`` and advance them
with ``_step`` (one source of the physics, docs/spec.md §3.2–§7).

* ``run_episodes`` — capture: a shard's episodes one after another into preallocated rows,
  resumable when the rows fill up (rows come out ordered by episode, then step).
* ``reset_one`` / ``step_one`` — the gymnasium single env (actions from outside; state as scalars).
* ``reset_envs`` / ``step_envs`` — the gymnasium vector env (env i = slot i = row i, in parallel).

A puff plume (``PLM == PUFF``) lives in each slot's table ``EnvState.puff[slot]`` (``kernels.puff``):
started by ``_reset``, advanced by ``_step`` right after the move, read only at the agent's sensors.
"""
import numpy as np
from plume_capture.kernels._jit import literally, prange

from plume_capture.kernels import codes as C
from plume_capture.kernels._jit import njit
from plume_capture.kernels import puff
from plume_capture.kernels.physics import concentration, distance, move, observe, reward
from plume_capture.kernels.plume import frame_index
from plume_capture.kernels.policies import act
from plume_capture.kernels.rng import episode_key, plume_key
from plume_capture.kernels.start import start_position


@njit
def _senses(POL):
    """Whether the policy reads its own concentration sensor (docs/spec.md §7.2): the built-in policies
    except ``random``; actions from outside (``EXTERNAL``, the envs) need no sensor."""
    return POL != C.EXTERNAL and POL != C.RANDOM


@njit
def _conc(PLM, p, field, pt, k, x, y):
    """The policies' own sensor: concentration at the agent's cell after step ``k``."""
    return float(concentration(PLM, p, field, frame_index(k, field.shape[0], p.clamp), pt, x, y))


@njit
def _observe(OBS, PLM, p, field, pt, obs, r, k, x, y, heading, key):
    """The observation after step ``k`` (0: reset) into ``obs[r]`` (docs/spec.md §5)."""
    observe(OBS, PLM, p, obs, r, field, frame_index(k, field.shape[0], p.clamp), pt, x, y, heading, k, key)


@njit
def _reset(POL, PLM, p, field, pt, seed):
    """Start of the episode with ``seed`` (docs/spec.md §3.2): ``(x, y, concentration)`` (0.0 when the
    policy does not sense). A puff plume starts in its table ``pt`` (warm-up, ``kernels.puff``)."""
    if p.start_x >= 0:
        x, y = p.start_x, p.start_y
    else:
        x, y = start_position(seed, p.width, p.height)
    if PLM == C.PUFF:
        puff.reset(p, pt, plume_key(episode_key(seed)))
    c = _conc(PLM, p, field, pt, 0, x, y) if _senses(POL) else 0.0
    return x, y, c


@njit(inline="always")
def _step(ACT, OBS, REW, POL, PLM, p, field, pt, key, action, k, x, y, heading, m0, m1, c_now, c_prev, obs, r):
    """Step ``k + 1`` of an episode (docs/spec.md §3.3): the policy's action (or ``action`` from outside),
    move, plume (a puff plume advances in its table ``pt``), distance, reward, flags; the
    observation goes to ``obs[r]``. Returns the new state
    ``(k, x, y, heading, m0, m1, c_now, c_prev)`` and ``(action, reward, distance, terminated,
    truncated)``. Inlined into every caller by Numba (``inline="always"``): as a plain call, LLVM
    left a call in the capture loop (~2.6x fewer steps/s)."""
    k += 1
    if POL != C.EXTERNAL:
        n_actions = 4 if ACT == C.DISCRETE else (3 if ACT == C.ORIENTED else 2)
        action, m0, m1 = act(POL, n_actions, key, k, c_now - c_prev, m0, m1,
                             p.threshold, p.persistence, p.eps)
    x, y, heading = move(ACT, action, x, y, heading, k, key, p.step_size, p.width, p.height)
    if PLM == C.PUFF:
        puff.advance(p, pt, plume_key(key), p.puff_warmup + k)
    d = distance(x, y, p.goal_x, p.goal_y)
    term = d <= p.goal_radius
    trunc = k >= p.max_steps
    rw = reward(REW, term)
    _observe(OBS, PLM, p, field, pt, obs, r, k, x, y, heading, key)
    if _senses(POL):
        c_prev = c_now
        c_now = _conc(PLM, p, field, pt, k, x, y)
    return k, x, y, heading, m0, m1, c_now, c_prev, action, rw, d, term, trunc


@njit(inline="always")
def _record(out, r, k, action, rw, term, trunc, x, y, heading, d):
    """Row ``r`` of ``out`` (all but ``episode`` and the observation, written by ``_step``)."""
    out.step[r] = k
    out.action[r] = action
    out.reward[r] = rw
    out.terminated[r] = term
    out.truncated[r] = trunc
    out.x[r] = x
    out.y[r] = y
    out.heading[r] = heading
    out.distance[r] = d


@njit
def run_episodes(ACT, OBS, REW, POL, PLM, p, field, seeds, st, out, ep):
    """Run ``seeds``' episodes in order in slot 0 of ``st``, appending one row per step to ``out``,
    until done or the rows are full. Resumable: ``st`` holds the cursor (``episode``, ``live``) and
    the episode's state. Episode ``e``'s summary goes to row ``e`` of ``ep`` when it ends. Returns
    the number of rows written."""
    literally(ACT)
    literally(OBS)
    literally(REW)
    literally(POL)
    literally(PLM)
    capacity = out.step.shape[0]
    n_eps = seeds.shape[0]
    e, live = st.episode[0], st.live[0]
    x, y, heading, k, m0, m1 = st.x[0], st.y[0], st.heading[0], st.k[0], st.m0[0], st.m1[0]
    c_now, c_prev, total = st.c_now[0], st.c_prev[0], st.total[0]
    key = episode_key(seeds[e]) if (live and e < n_eps) else np.uint64(0)
    pt = st.puff[0]
    r = 0
    while r < capacity and e < n_eps:
        if not live:
            key = episode_key(seeds[e])
            x, y, c_now = _reset(POL, PLM, p, field, pt, seeds[e])
            heading, k, m0, m1, c_prev, total = 0.0, 0, 0, 0, c_now, 0.0
            live = True
        while r < capacity:
            k, x, y, heading, m0, m1, c_now, c_prev, action, rw, d, term, trunc = _step(
                ACT, OBS, REW, POL, PLM, p, field, pt, key, 0, k, x, y, heading, m0, m1, c_now, c_prev, out.obs, r)
            _record(out, r, k, action, rw, term, trunc, x, y, heading, d)
            total += rw
            out.episode[r] = e
            r += 1
            if term or trunc:
                ep.steps[e] = k
                ep.reward[e] = total
                ep.terminated[e] = term
                ep.truncated[e] = trunc
                ep.x[e] = x
                ep.y[e] = y
                ep.distance[e] = d
                e += 1
                live = False
                break
    st.episode[0], st.live[0] = e, live
    st.x[0], st.y[0], st.heading[0], st.k[0], st.m0[0], st.m1[0] = x, y, heading, k, m0, m1
    st.c_now[0], st.c_prev[0], st.total[0] = c_now, c_prev, total
    return r


@njit
def reset_one(ACT, OBS, REW, POL, PLM, p, field, pt, seed, obs):
    """Start of the single env's episode with ``seed``: returns ``(x, y)``; the observation goes to
    ``obs[0]``; ``pt``: the env's puff table (``EnvState.puff[0]``)."""
    literally(ACT)
    literally(OBS)
    literally(REW)
    literally(POL)
    literally(PLM)
    x, y, c = _reset(POL, PLM, p, field, pt, seed)
    _observe(OBS, PLM, p, field, pt, obs, 0, 0, x, y, 0.0, episode_key(seed))
    return x, y


@njit
def step_one(ACT, OBS, REW, POL, PLM, p, field, pt, action, seed, x, y, heading, k, obs):
    """One step of the single env with ``action`` (validated by the caller); returns ``(x, y,
    heading, k, reward, distance, terminated, truncated)``, the observation goes to ``obs[0]``.
    (State as scalars: one Python call per step, so the call's argument count is its cost.)"""
    literally(ACT)
    literally(OBS)
    literally(REW)
    literally(POL)
    literally(PLM)
    k, x, y, heading, m0, m1, c_now, c_prev, action, rw, d, term, trunc = _step(
        ACT, OBS, REW, POL, PLM, p, field, pt, episode_key(seed), action, k, x, y, heading, 0, 0, 0.0, 0.0, obs, 0)
    return x, y, heading, k, rw, d, term, trunc


@njit
def _reset_env(OBS, POL, PLM, p, field, st, i, out):
    """Env ``i`` of ``st`` starts the episode with seed ``st.seed[i]``; its observation goes to
    ``out.obs[i]``. (A function of its own: written inline in the ``prange`` body, the state
    writes were lost — tests/envs/test_vector_env.py.)"""
    x, y, c = _reset(POL, PLM, p, field, st.puff[i], st.seed[i])
    st.x[i], st.y[i], st.heading[i], st.k[i], st.m0[i], st.m1[i] = x, y, 0.0, 0, 0, 0
    st.c_now[i], st.c_prev[i] = c, c
    _observe(OBS, PLM, p, field, st.puff[i], out.obs, i, 0, x, y, 0.0, episode_key(st.seed[i]))


@njit
def _step_env(ACT, OBS, REW, POL, PLM, p, field, action, st, i, out):
    """One step of env ``i`` of ``st``: its state is updated, row ``i`` of ``out`` written."""
    k, x, y, heading, m0, m1, c_now, c_prev, action, rw, d, term, trunc = _step(
        ACT, OBS, REW, POL, PLM, p, field, st.puff[i], episode_key(st.seed[i]), action, st.k[i], st.x[i], st.y[i],
        st.heading[i], st.m0[i], st.m1[i], st.c_now[i], st.c_prev[i], out.obs, i)
    _record(out, i, k, action, rw, term, trunc, x, y, heading, d)
    st.x[i], st.y[i], st.heading[i], st.k[i], st.m0[i], st.m1[i] = x, y, heading, k, m0, m1
    st.c_now[i], st.c_prev[i] = c_now, c_prev


@njit(parallel=True)
def reset_envs(ACT, OBS, REW, POL, PLM, p, field, mask, st, out):
    """Reset the envs where ``mask`` is true with their ``st.seed`` (docs/spec.md §3.2) and observe them
    into ``out.obs``."""
    literally(ACT)
    literally(OBS)
    literally(REW)
    literally(POL)
    literally(PLM)
    for i in prange(mask.shape[0]):
        if mask[i]:
            _reset_env(OBS, POL, PLM, p, field, st, i, out)


@njit(parallel=True)
def step_envs(ACT, OBS, REW, POL, PLM, p, field, skip, actions, st, out):
    """One step of every env not in ``skip`` with the given ``actions`` (validated by the caller):
    env ``i``'s state in ``st``, its step in row ``i`` of ``out``."""
    literally(ACT)
    literally(OBS)
    literally(REW)
    literally(POL)
    literally(PLM)
    for i in prange(actions.shape[0]):
        if not skip[i]:
            _step_env(ACT, OBS, REW, POL, PLM, p, field, actions[i], st, i, out)
