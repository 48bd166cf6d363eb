"""Calls the capture kernel ``run_episodes`` the way the engine does and returns its columns as
dicts named like ``reference_model.COLUMNS``."""
from __future__ import annotations

import numpy as np

from plume_capture.kernels import specialize
from plume_capture.kernels.rollout import run_episodes
from plume_capture.sim.params import EnvParams, PolicyParams
from reference_model import COLUMNS, Config, Policy


def kernel_episodes(cfg: Config, seeds, policy: Policy, capacity: int = 257) -> tuple[dict, dict]:
    """All of ``seeds``' episodes through resumable ``run_episodes`` calls of ``capacity`` rows."""
    ph = EnvParams(**cfg.kwargs()).build()
    pol = PolicyParams(policy.name, policy.threshold, policy.persistence, policy.eps).validated(cfg.action_type)
    ka = ph.kernel_args(pol)
    seeds = np.asarray(seeds, np.int64)
    out, summary = ka.rows(capacity), ka.episodes(len(seeds))
    args = (ka.params, ka.field, seeds, ka.state, out, summary)
    kernel = specialize(run_episodes, ka.codes, args)
    parts = []
    while ka.state.episode[0] < len(seeds):
        r = kernel(*args)
        assert r > 0
        parts.append({c: getattr(out, c)[:r].copy() for c in (*COLUMNS, "episode")})
    rows = {c: np.concatenate([p[c] for p in parts]) for c in (*COLUMNS, "episode")}
    return rows, summary._asdict()
