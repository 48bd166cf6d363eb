"""The kernels that run environments: every entry point shares ``_advance``/``_reset`` (one
source of physics) and takes the static choices as Numba literals.

* ``run_episodes`` — capture: a shard's episodes one after another into preallocated columns,
  resumable when the columns fill up (rows come out ordered by episode, then step).
* ``run_batch`` — N env slots × T steps in parallel (``prange``), autoreset, env-major columns.
* ``reset_envs`` / ``step_envs`` — the gymnasium single and vector envs (actions from outside).
"""
import numpy as np
from plume_capture.kernels._jit import literally, prange

from plume_capture.kernels import codes as C
from plume_capture.kernels._jit import njit
from plume_capture.kernels.physics import distance, move, observe, reward
from plume_capture.kernels.plume import frame_index, sample
from plume_capture.kernels.policies import act
from plume_capture.kernels.rng import episode_key
from plume_capture.kernels.start import start_position


@njit
def _start(ip, seed):
    if ip[C.I_START_X] >= 0:
        return ip[C.I_START_X], ip[C.I_START_Y]
    return start_position(seed, ip[C.I_W], ip[C.I_H])


@njit
def _advance(ACT, REW, action, x, y, heading, k, key, s, W, H, gx, gy, radius, max_steps):
    """Steps 1–6 of SPEC §3.3 for the step numbered ``k``: new state, reward, distance and flags."""
    x, y, heading = move(ACT, action, x, y, heading, k, key, s, W, H)
    d = distance(x, y, gx, gy)
    term = d <= radius
    return x, y, heading, reward(REW, term), d, term, k >= max_steps


@njit
def _observe(OBS, out, row, field, k, x, y, heading, key, W, H, clamp, n_sensors, sd, ws, wd, wn):
    f = frame_index(k, field.shape[0], clamp)
    observe(OBS, out, row, field, f, x, y, heading, k, key, W, H, n_sensors, sd, ws, wd, wn)


@njit
def _conc(field, k, x, y, W, H, clamp):
    """The policies' own sensor: concentration at the agent's cell after step ``k``."""
    return float(sample(field, frame_index(k, field.shape[0], clamp), x, y, W, H))


@njit
def _unpack(ip, fp):
    """Parameters as scalars, so kernels keep them in registers (outputs cannot alias them)."""
    return (ip[C.I_W], ip[C.I_H], ip[C.I_GX], ip[C.I_GY], ip[C.I_MAX_STEPS], ip[C.I_STEP_SIZE],
            ip[C.I_N_SENSORS], ip[C.I_FRAME_POLICY] == C.CLAMP, ip[C.I_PERSISTENCE],
            fp[C.F_GOAL_RADIUS], fp[C.F_SENSOR_DISTANCE], fp[C.F_WIND_SPEED],
            fp[C.F_WIND_DIRECTION], fp[C.F_WIND_NOISE], fp[C.F_THRESHOLD], fp[C.F_EPS])


@njit
def run_episodes(ACT, OBS, REW, POL, ip, fp, field, seeds, si, sf,
                 o_ep, o_step, o_action, o_reward, o_term, o_trunc, o_x, o_y, o_heading, o_dist, o_obs,
                 e_steps, e_reward, e_term, e_trunc, e_x, e_y, e_dist):
    """Run ``seeds``' episodes in order, appending one row per step, until done or the row columns
    are full. Resumable: ``si`` = [episode cursor, in episode, x, y, k, m0, m1] and
    ``sf`` = [heading, total reward, concentration now, concentration before the last step].
    Episode ``e``'s summary goes to ``e_*[e]`` when it ends. Returns the number of rows written."""
    literally(ACT)
    literally(OBS)
    literally(REW)
    literally(POL)
    n_actions = 4 if ACT == C.DISCRETE else (3 if ACT == C.ORIENTED else 2)
    W, H, gx, gy, max_steps, s, n_sensors, clamp, persistence, radius, sd, ws, wd, wn, threshold, eps = \
        _unpack(ip, fp)
    capacity = o_step.shape[0]
    n_eps = seeds.shape[0]
    e = si[0]
    in_ep = si[1]
    x, y, k, m0, m1 = si[2], si[3], si[4], si[5], si[6]
    heading, total, c_now, c_prev = sf[0], sf[1], sf[2], sf[3]
    key = episode_key(seeds[e]) if (in_ep and e < n_eps) else np.uint64(0)
    r = 0
    while r < capacity and e < n_eps:
        if not in_ep:
            key = episode_key(seeds[e])
            x, y = _start(ip, seeds[e])
            heading, k, total, m0, m1 = 0.0, 0, 0.0, 0, 0
            if POL != C.EXTERNAL and POL != C.RANDOM:
                c_now = _conc(field, 0, x, y, W, H, clamp)
                c_prev = c_now
            in_ep = 1
        while r < capacity:
            k += 1
            action, m0, m1 = act(POL, n_actions, key, k, c_now - c_prev, m0, m1, threshold, persistence, eps)
            x, y, heading, rw, d, term, trunc = _advance(ACT, REW, action, x, y, heading, k, key, s, W, H, gx, gy, radius, max_steps)
            _observe(OBS, o_obs, r, field, k, x, y, heading, key, W, H, clamp, n_sensors, sd, ws, wd, wn)
            if POL != C.EXTERNAL and POL != C.RANDOM:
                c_prev = c_now
                c_now = _conc(field, k, x, y, W, H, clamp)
            total += rw
            o_ep[r] = e
            o_step[r] = k
            o_action[r] = action
            o_reward[r] = rw
            o_term[r] = term
            o_trunc[r] = trunc
            o_x[r] = x
            o_y[r] = y
            o_heading[r] = heading
            o_dist[r] = d
            r += 1
            if term or trunc:
                e_steps[e] = k
                e_reward[e] = total
                e_term[e] = term
                e_trunc[e] = trunc
                e_x[e] = x
                e_y[e] = y
                e_dist[e] = d
                e += 1
                in_ep = 0
                break
    si[0], si[1], si[2], si[3], si[4], si[5], si[6] = e, in_ep, x, y, k, m0, m1
    sf[0], sf[1], sf[2], sf[3] = heading, total, c_now, c_prev
    return r


@njit(parallel=True)
def run_batch(ACT, OBS, REW, POL, ip, fp, field, seeds, si, sf, n_steps,
              o_step, o_action, o_reward, o_term, o_trunc, o_x, o_y, o_heading, o_dist, o_obs):
    """``N = len(seeds)`` env slots × ``n_steps`` steps in parallel, with autoreset; resumable.

    Slot state: ``si[i] = [x, y, k, m0, m1]`` (``k = -1``: reset first), ``sf[i] = [heading,
    concentration now, concentration before the last step]``, ``seeds[i]`` the seed of the slot's
    current episode; the next episode of a slot has seed ``(seed + N) mod 2**32``. The row of
    (slot i, step t) is ``i·n_steps + t``."""
    literally(ACT)
    literally(OBS)
    literally(REW)
    literally(POL)
    n_actions = 4 if ACT == C.DISCRETE else (3 if ACT == C.ORIENTED else 2)
    W, H, gx, gy, max_steps, s, n_sensors, clamp, persistence, radius, sd, ws, wd, wn, threshold, eps = \
        _unpack(ip, fp)
    n = seeds.shape[0]
    for i in prange(n):
        seed = seeds[i]
        x, y, k, m0, m1 = si[i, 0], si[i, 1], si[i, 2], si[i, 3], si[i, 4]
        heading, c_now, c_prev = sf[i, 0], sf[i, 1], sf[i, 2]
        if k < 0:
            x, y = _start(ip, seed)
            heading, k, m0, m1 = 0.0, 0, 0, 0
            c_now = _conc(field, 0, x, y, W, H, clamp)
            c_prev = c_now
        key = episode_key(seed)
        for t in range(n_steps):
            r = i * n_steps + t
            k += 1
            action, m0, m1 = act(POL, n_actions, key, k, c_now - c_prev, m0, m1, threshold, persistence, eps)
            x, y, heading, rw, d, term, trunc = _advance(ACT, REW, action, x, y, heading, k, key, s, W, H, gx, gy, radius, max_steps)
            _observe(OBS, o_obs, r, field, k, x, y, heading, key, W, H, clamp, n_sensors, sd, ws, wd, wn)
            if POL != C.RANDOM:
                c_prev = c_now
                c_now = _conc(field, k, x, y, W, H, clamp)
            o_step[r] = k
            o_action[r] = action
            o_reward[r] = rw
            o_term[r] = term
            o_trunc[r] = trunc
            o_x[r] = x
            o_y[r] = y
            o_heading[r] = heading
            o_dist[r] = d
            if term or trunc:
                seed = (seed + n) % 4294967296
                key = episode_key(seed)
                x, y = _start(ip, seed)
                heading, k, m0, m1 = 0.0, 0, 0, 0
                c_now = _conc(field, 0, x, y, W, H, clamp)
                c_prev = c_now
        seeds[i] = seed
        si[i, 0], si[i, 1], si[i, 2], si[i, 3], si[i, 4] = x, y, k, m0, m1
        sf[i, 0], sf[i, 1], sf[i, 2] = heading, c_now, c_prev


@njit
def reset_one(OBS, ip, fp, field, seed, obs):
    """Start position of an episode with ``seed``; writes the reset observation into ``obs[0]``."""
    literally(OBS)
    W, H, gx, gy, max_steps, s, n_sensors, clamp, persistence, radius, sd, ws, wd, wn, threshold, eps = \
        _unpack(ip, fp)
    x, y = _start(ip, seed)
    _observe(OBS, obs, 0, field, 0, x, y, 0.0, episode_key(seed), W, H, clamp, n_sensors, sd, ws, wd, wn)
    return x, y


@njit
def step_one(ACT, OBS, REW, ip, fp, field, action, seed, x, y, heading, k, obs):
    """One step of one env; returns ``(x, y, heading, k, reward, distance, terminated, truncated)``."""
    literally(ACT)
    literally(OBS)
    literally(REW)
    W, H, gx, gy, max_steps, s, n_sensors, clamp, persistence, radius, sd, ws, wd, wn, threshold, eps = \
        _unpack(ip, fp)
    key = episode_key(seed)
    k += 1
    x, y, heading, rw, d, te, tr = _advance(ACT, REW, action, x, y, heading, k, key, s, W, H, gx, gy, radius, max_steps)
    _observe(OBS, obs, 0, field, k, x, y, heading, key, W, H, clamp, n_sensors, sd, ws, wd, wn)
    return x, y, heading, k, rw, d, te, tr


@njit(parallel=True)
def reset_envs(OBS, ip, fp, field, mask, seeds, x, y, heading, k, obs):
    """Reset the envs where ``mask`` is true with their ``seeds`` (SPEC §3.2) and observe them."""
    literally(OBS)
    W, H, gx, gy, max_steps, s, n_sensors, clamp, persistence, radius, sd, ws, wd, wn, threshold, eps = \
        _unpack(ip, fp)
    for i in prange(mask.shape[0]):
        if mask[i]:
            x[i], y[i] = _start(ip, seeds[i])
            heading[i] = 0.0
            k[i] = 0
            _observe(OBS, obs, i, field, 0, x[i], y[i], 0.0, episode_key(seeds[i]), W, H, clamp, n_sensors, sd, ws, wd, wn)


@njit(parallel=True)
def step_envs(ACT, OBS, REW, ip, fp, field, skip, actions, seeds, x, y, heading, k,
              obs, rewards, dist, term, trunc):
    """One step of every env not in ``skip`` with the given ``actions`` (validated by the caller)."""
    literally(ACT)
    literally(OBS)
    literally(REW)
    W, H, gx, gy, max_steps, s, n_sensors, clamp, persistence, radius, sd, ws, wd, wn, threshold, eps = \
        _unpack(ip, fp)
    for i in prange(actions.shape[0]):
        if skip[i]:
            continue
        key = episode_key(seeds[i])
        ki = k[i] + 1
        xi, yi, hi, rw, d, te, tr = _advance(ACT, REW, actions[i], x[i], y[i], heading[i], ki, key, s, W, H, gx, gy, radius, max_steps)
        _observe(OBS, obs, i, field, ki, xi, yi, hi, key, W, H, clamp, n_sensors, sd, ws, wd, wn)
        x[i], y[i], heading[i], k[i] = xi, yi, hi, ki
        rewards[i], dist[i], term[i], trunc[i] = rw, d, te, tr
