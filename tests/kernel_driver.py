"""Calls the capture kernels (``run_episodes``, ``run_batch``) the way the engine does and returns
their columns as dicts named like ``reference_model.COLUMNS``."""
from __future__ import annotations

import numpy as np

from plume_capture.kernels import codes as C, specialize
from plume_capture.kernels.rollout import run_batch, run_episodes
from plume_capture.sim.params import EnvParams, PolicyParams
from reference_model import COLUMNS, Config, Policy


def build(cfg: Config, policy: Policy):
    """``(physics, ip, fp)`` for ``cfg`` driven by ``policy`` (ip/fp are copies)."""
    ph = EnvParams(**cfg.kwargs()).build()
    pol = PolicyParams(policy.name, policy.threshold, policy.persistence, policy.eps).validated(cfg.action_type)
    ip = ph.ip.copy()
    ip[C.I_PERSISTENCE] = pol.persistence
    return ph, ip, ph.with_policy(pol)


def _columns(rows: int, obs_size: int) -> dict:
    return {"step": np.zeros(rows, np.int64), "action": np.zeros(rows, np.int64),
            "reward": np.zeros(rows, np.float64), "terminated": np.zeros(rows, np.bool_),
            "truncated": np.zeros(rows, np.bool_), "x": np.zeros(rows, np.int64), "y": np.zeros(rows, np.int64),
            "heading": np.zeros(rows, np.float64), "distance": np.zeros(rows, np.float64),
            "obs": np.zeros((rows, obs_size), np.float32)}


def kernel_episodes(cfg: Config, seeds, policy: Policy, capacity: int = 257) -> tuple[dict, dict]:
    """All of ``seeds``' episodes through resumable ``run_episodes`` calls of ``capacity`` rows."""
    ph, ip, fp = build(cfg, policy)
    seeds = np.asarray(seeds, np.int64)
    n = len(seeds)
    cols = _columns(capacity, ph.obs_size)
    o_ep = np.zeros(capacity, np.int64)
    summ = {"steps": np.zeros(n, np.int64), "reward": np.zeros(n, np.float64),
            "terminated": np.zeros(n, np.bool_), "truncated": np.zeros(n, np.bool_),
            "x": np.zeros(n, np.int64), "y": np.zeros(n, np.int64), "distance": np.zeros(n, np.float64)}
    si, sf = np.zeros(7, np.int64), np.zeros(4, np.float64)
    args = (ip, fp, ph.field, seeds, si, sf, o_ep, *(cols[c] for c in COLUMNS), *summ.values())
    kernel = specialize(run_episodes, (ph.act, ph.obs, ph.rew, C.POLICIES[policy.name]), args)
    parts = []
    while si[0] < n:
        r = kernel(*args)
        assert r > 0
        part = {c: cols[c][:r].copy() for c in COLUMNS}
        part["episode"] = o_ep[:r].copy()
        parts.append(part)
    rows = {c: np.concatenate([p[c] for p in parts]) for c in (*COLUMNS, "episode")}
    return rows, summ


def kernel_batch(cfg: Config, seeds, n_steps: int, policy: Policy, calls: int = 1) -> tuple[dict, np.ndarray]:
    """``run_batch`` over ``len(seeds)`` slots, ``calls`` resumed calls of ``n_steps`` steps.

    Returns per-slot columns of shape ``(N, calls * n_steps[, obs])`` and the final slot seeds."""
    ph, ip, fp = build(cfg, policy)
    seeds = np.array(seeds, np.int64)
    n = len(seeds)
    si = np.zeros((n, 5), np.int64)
    si[:, 2] = -1
    sf = np.zeros((n, 3), np.float64)
    cols = _columns(n * n_steps, ph.obs_size)
    args = (ip, fp, ph.field, seeds, si, sf, n_steps, *(cols[c] for c in COLUMNS))
    kernel = specialize(run_batch, (ph.act, ph.obs, ph.rew, C.POLICIES[policy.name]), args)
    parts = []
    for _ in range(calls):
        kernel(*args)
        parts.append({c: v.reshape(n, n_steps, *v.shape[1:]).copy() for c, v in cols.items()})
    return {c: np.concatenate([p[c] for p in parts], axis=1) for c in COLUMNS}, seeds
