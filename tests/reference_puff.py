"""A slow, obvious model of the puff plume (docs/puff.md) for the differential tests.

Written from the documented model (``plume_capture/kernels/puff.py``'s and ``rng.py``'s docstrings),
not from the kernel code: plain Python floats and ints, ``math`` only, a list of puffs.
"""
from __future__ import annotations

import math

from reference_model import GAMMA, MASK64, mix64

CUT = 6.0
MAX_BIRTHS = 255


def plume_key(seed: int) -> int:
    return mix64(mix64((seed + GAMMA) & MASK64) ^ 0xA5A5A5A5DEADBEEF)


def plume_uniform(pkey: int, n: int, lane: int) -> float:
    u = mix64((pkey + (n * 2**24 + lane) * GAMMA) & MASK64)
    return (u >> 11) * 2.0**-53


class PuffPlume:
    """One episode's plume: ``warmup`` steps at construction, then ``step()`` once per env step."""

    def __init__(self, seed, width, height, source, wind_speed, wind_direction_deg, *, birth_rate, init_radius,
                 spread_rate, meander_std, meander_time, noise_std, dt, max_puffs, warmup_steps):
        self.w, self.h, self.source = width, height, source
        self.cap = max_puffs
        self.lam = birth_rate * dt
        self.r0sq = init_radius ** 2
        self.grow = spread_rate * dt
        a = wind_direction_deg * (math.pi / 180.0)
        self.ux, self.uy = wind_speed * math.cos(a) * dt, wind_speed * math.sin(a) * dt
        self.dt = dt
        self.decay = math.exp(-dt / meander_time)
        self.kick = meander_std * math.sqrt(1.0 - self.decay * self.decay)
        self.jitter = noise_std * math.sqrt(3.0 * dt)
        self.key = plume_key(seed)
        self.puffs: list[list[float]] = []  # [x, y, r2], oldest first
        self.mx = self.my = 0.0
        self.n = 0
        for _ in range(warmup_steps):
            self.step()

    def _births(self) -> int:
        u = plume_uniform(self.key, self.n, 0)
        p = math.exp(-self.lam)
        cdf, b = p, 0
        while cdf <= u and b < MAX_BIRTHS:
            b += 1
            p = p * self.lam / b
            cdf = cdf + p
        return b

    def step(self) -> None:
        self.n += 1
        n = self.n
        u1, u2 = plume_uniform(self.key, n, 1), plume_uniform(self.key, n, 2)
        r = math.sqrt(-2.0 * math.log(1.0 - u1))
        g1, g2 = r * math.cos(2.0 * math.pi * u2), r * math.sin(2.0 * math.pi * u2)
        self.mx = self.decay * self.mx + self.kick * g1
        self.my = self.decay * self.my + self.kick * g2
        moved = []
        for j, (x, y, r2) in enumerate(self.puffs):
            x = x + (self.ux + self.mx * self.dt) + self.jitter * (2.0 * plume_uniform(self.key, n, 3 + 2 * j) - 1.0)
            y = y + (self.uy + self.my * self.dt) + self.jitter * (2.0 * plume_uniform(self.key, n, 4 + 2 * j) - 1.0)
            r2 = r2 + self.grow
            out_x = max(0.0, -x, x - (self.w - 1))
            out_y = max(0.0, -y, y - (self.h - 1))
            if out_x ** 2 <= CUT * CUT * r2 and out_y ** 2 <= CUT * CUT * r2:
                moved.append([x, y, r2])
        b = min(self._births(), self.cap)
        moved += [[float(self.source[0]), float(self.source[1]), self.r0sq] for _ in range(b)]
        self.puffs = moved[-self.cap:]

    def concentration(self, x: int, y: int) -> float:
        """float64 of the float32 reading at cell (x, y)."""
        import numpy as np

        if not (0 <= x < self.w and 0 <= y < self.h):
            return 0.0
        c = 0.0
        for px, py, r2 in self.puffs:
            d2 = (x - px) ** 2 + (y - py) ** 2
            if d2 <= CUT * CUT * r2:
                c = c + (self.r0sq / r2) * math.exp(-d2 / (2.0 * r2))
        return float(np.float32(min(max(c, 0.0), 1.0)))
