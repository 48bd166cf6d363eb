"""The puff plume (``env.plume = puff``; docs/puff.md): a seeded, time-varying plume computed where the
agent senses, never as a field.

One env slot's plume is a table ``T`` of shape ``(1 + max_puffs, 3)`` float64: ``T[0] = (live
puffs n, meander mx, my)``, ``T[1 + j] = (x, y, r²)`` of the ``j``-th oldest live puff. Plume step
``n`` (draws from ``rng.plume_uniform(pkey, n, lane)``), in this order:

1. meander: ``g1, g2 = plume_normal_pair``; ``mx = decay*mx + kick*g1``; ``my = decay*my + kick*g2``;
2. every live puff ``j`` (oldest first): ``x = x + (ux + mx*dt) + jitter*(2*u_x - 1)``, same for
   ``y`` (``u_x``, ``u_y`` on lanes ``3 + 2j``, ``4 + 2j``); ``r² = r² + grow``;
3. puffs whose centre is more than ``CUT`` radii outside the grid on either axis are dropped
   (the others keep their order);
4. ``b`` births (Poisson with mean ``lam``, inverse CDF of lane 0, at most ``MAX_BIRTHS``) at the
   source with ``r² = r0²``, appended; when more than ``max_puffs`` would live, the oldest go.

Concentration at cell ``(x, y)`` inside the grid: ``Σ_j (r0² / r²_j) · exp(-d²_j / (2 r²_j))``
over the puffs with ``d²_j <= CUT² r²_j``, summed oldest first in float64, clipped to [0, 1], as
float32; 0 outside the grid. Coefficients (``records.Params.puff_*``): ``lam = birth_rate*dt``,
``grow = spread_rate*dt``, ``ux, uy = wind*dt``, ``decay = exp(-dt/meander_time)``, ``kick =
meander_std*sqrt(1 - decay²)``, ``jitter = noise_std*sqrt(3*dt)``.
"""
import numpy as np

from plume_capture.kernels._jit import njit
from plume_capture.kernels.rng import plume_normal_pair, plume_uniform

CUT = 6.0  # a puff reaches this many radii (exp(-18) ≈ 1.5e-8 of its peak beyond)
MAX_BIRTHS = 255  # births per plume step at most (the mean is at most 32)


@njit
def _births(lam, u):
    """Poisson(lam) by inverse CDF of ``u``."""
    p = np.exp(-lam)
    s = p
    b = 0
    while s <= u and b < MAX_BIRTHS:
        b += 1
        p = p * lam / b
        s = s + p
    return b


@njit
def advance(p, t, pkey, n):
    """Plume step ``n`` of table ``t`` (see the module docstring)."""
    cap = t.shape[0] - 1
    live = int(t[0, 0])
    g1, g2 = plume_normal_pair(pkey, n)
    mx = p.puff_decay * t[0, 1] + p.puff_kick * g1
    my = p.puff_decay * t[0, 2] + p.puff_kick * g2
    t[0, 1] = mx
    t[0, 2] = my
    vx = p.puff_ux + mx * p.puff_dt
    vy = p.puff_uy + my * p.puff_dt
    xmax = p.width - 1.0
    ymax = p.height - 1.0
    kept = 0
    for j in range(live):
        x = t[1 + j, 0] + vx + p.puff_jitter * (2.0 * plume_uniform(pkey, n, 3 + 2 * j) - 1.0)
        y = t[1 + j, 1] + vy + p.puff_jitter * (2.0 * plume_uniform(pkey, n, 4 + 2 * j) - 1.0)
        r2 = t[1 + j, 2] + p.puff_grow
        reach = CUT * CUT * r2
        ox = -x if x < 0.0 else (x - xmax if x > xmax else 0.0)
        oy = -y if y < 0.0 else (y - ymax if y > ymax else 0.0)
        if ox * ox > reach or oy * oy > reach:
            continue
        t[1 + kept, 0] = x
        t[1 + kept, 1] = y
        t[1 + kept, 2] = r2
        kept += 1
    b = _births(p.puff_lam, plume_uniform(pkey, n, 0))
    if b > cap:
        b = cap
    drop = kept + b - cap
    if drop > 0:
        for j in range(drop, kept):
            t[1 + j - drop, 0] = t[1 + j, 0]
            t[1 + j - drop, 1] = t[1 + j, 1]
            t[1 + j - drop, 2] = t[1 + j, 2]
        kept -= drop
    for j in range(b):
        t[1 + kept, 0] = float(p.goal_x)
        t[1 + kept, 1] = float(p.goal_y)
        t[1 + kept, 2] = p.puff_r0sq
        kept += 1
    t[0, 0] = kept


@njit
def reset(p, t, pkey):
    """An empty plume advanced through the warm-up steps ``1..puff_warmup``."""
    t[0, 0] = 0.0
    t[0, 1] = 0.0
    t[0, 2] = 0.0
    for n in range(1, p.puff_warmup + 1):
        advance(p, t, pkey, n)


@njit
def sample(p, t, x, y):
    """Concentration at cell ``(x, y)`` (see the module docstring)."""
    if x < 0 or y < 0 or x >= p.width or y >= p.height:
        return np.float32(0.0)
    fx = float(x)
    fy = float(y)
    c = 0.0
    for j in range(int(t[0, 0])):
        dx = fx - t[1 + j, 0]
        dy = fy - t[1 + j, 1]
        d2 = dx * dx + dy * dy
        r2 = t[1 + j, 2]
        if d2 <= CUT * CUT * r2:
            c = c + (p.puff_r0sq / r2) * np.exp(-d2 / (2.0 * r2))
    return np.float32(min(max(c, 0.0), 1.0))


@njit
def mean_field(p, t, pkey, frames, every, stride, out):
    """The plume of the episode with plume key ``pkey`` averaged over ``frames`` frames, one every
    ``every`` steps from the reset's, on the cells ``(stride*i, stride*j)`` into ``out[j, i]``
    (float64). For pictures (the report), never on a hot path."""
    reset(p, t, pkey)
    out[:, :] = 0.0
    n = p.puff_warmup
    for f in range(frames):
        for _ in range(every if f > 0 else 0):
            n += 1
            advance(p, t, pkey, n)
        for j in range(out.shape[0]):
            for i in range(out.shape[1]):
                out[j, i] += sample(p, t, i * stride, j * stride)
    out /= frames


@njit
def snapshot(p, t, stride, out):
    """The plume of table ``t`` now, on the cells ``(stride*i, stride*j)`` into ``out[j, i]``
    (for pictures: the env's ``render``)."""
    for j in range(out.shape[0]):
        for i in range(out.shape[1]):
            out[j, i] = sample(p, t, i * stride, j * stride)
