"""Writes small, internally consistent run directories of our format with plain Python (gzip,
json, pyarrow), for tests that must not depend on the engine.

The episodes follow the env semantics the validator checks (docs/spec.md §3, §6): a random walk with
discrete actions on a static Gaussian plume, positions clamped to the grid, ``distance_to_goal``
from the goal, ``terminated`` when within ``goal_radius``, ``truncated`` at ``max_steps``,
step-penalty rewards, and episode records that agree with their steps.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from plume_capture import spec as records

RUN_ID = "run-20260101-120000-abc123"
_MOVES = {0: (0, 1), 1: (1, 0), 2: (0, -1), 3: (-1, 0)}


def simulate(episodes: int, steps_per_episode: int, *, seed: int = 123, grid=(16, 16),
             goal=None, goal_radius: float = 1.0, sigma: float = 20.0, run_id: str = RUN_ID):
    """-> (step records, episode records) as dicts, in order."""
    W, H = grid
    gx, gy = goal if goal is not None else (W - 1, H - 1)
    steps, eps = [], []
    ts = 1_767_268_800.0
    for i in range(episodes):
        s = seed + i
        start = np.random.default_rng(s)
        x, y = int(start.integers(0, W)), int(start.integers(0, H))
        rng = random.Random(s)
        total, t0 = 0.0, ts
        for k in range(1, steps_per_episode + 1):
            a = rng.randrange(4)
            dx, dy = _MOVES[a]
            x, y = min(max(x + dx, 0), W - 1), min(max(y + dy, 0), H - 1)
            d = math.sqrt(float((x - gx) ** 2 + (y - gy) ** 2))
            reached = d <= goal_radius
            r = 1.0 if reached else -0.01
            total += r
            c = float(np.float32(min(1.0, math.exp(-((x - gx) ** 2 + (y - gy) ** 2)
                                                   / (2 * sigma * sigma)))))
            ts += 0.000137
            steps.append({
                "schema_version": records.SCHEMA_VERSION, "ts": ts, "run_id": run_id,
                "episode_id": records.episode_id(i), "step": k, "action": a, "reward": r,
                "terminated": reached, "truncated": k >= steps_per_episode,
                "agent_position": {"x": x, "y": y}, "distance_to_goal": d,
                "observation_summary": [c], "seed": s,
            })
            if reached or k >= steps_per_episode:
                break
        dur = (ts - t0) * 1000.0
        eps.append({
            "schema_version": records.SCHEMA_VERSION, "run_id": run_id,
            "episode_id": records.episode_id(i), "terminated": steps[-1]["terminated"],
            "truncated": steps[-1]["truncated"], "total_steps": k, "total_reward": total,
            "final_position": {"x": x, "y": y},
            "final_distance_to_goal": steps[-1]["distance_to_goal"],
            "duration_ms": dur, "avg_step_time_ms": dur / k,
        })
    return steps, eps


def write_jsonl_gz(path, recs, member_lines: int = 7):
    """Write records as JSON Lines in a multi-member gzip (one member per ``member_lines``)."""
    with open(path, "wb") as f:
        for i in range(0, len(recs), member_lines):
            text = "".join(json.dumps(r) + "\n" for r in recs[i:i + member_lines])
            f.write(gzip.compress(text.encode(), mtime=0))


def read_lines(path) -> list[bytes]:
    with gzip.open(path, "rb") as f:
        return f.read().splitlines(keepends=True)


def write_lines(path, lines: list[bytes]):
    with open(path, "wb") as f:
        f.write(gzip.compress(b"".join(lines), mtime=0))


def sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def file_entry(path) -> dict:
    if path.endswith(".parquet"):
        rows = pq.ParquetFile(path).metadata.num_rows
    elif path.endswith(".jsonl.gz"):
        rows = len(read_lines(path))
    else:
        rows = 0
    return {"bytes": os.path.getsize(path), "rows": rows, "sha256": sha256(path)}


def refresh_manifest(run_dir):
    """Recompute ``extra.files`` of run.json from the files present (after deliberate damage)."""
    meta = read_meta(run_dir)
    names = [n for n in sorted(os.listdir(run_dir)) if n != "run.json"]
    meta["extra"]["files"] = {n: file_entry(os.path.join(run_dir, n)) for n in names}
    write_meta(run_dir, meta)


def read_meta(run_dir) -> dict:
    with open(os.path.join(run_dir, "run.json")) as f:
        return json.load(f)


def write_meta(run_dir, meta: dict):
    with open(os.path.join(run_dir, "run.json"), "w") as f:
        json.dump(meta, f, indent=2)


def write_parquet(path, recs, schema, run_id=RUN_ID, config_hash="0" * 64):
    table = pa.Table.from_pylist(recs, schema=schema).replace_schema_metadata(
        {"schema_version": records.SCHEMA_VERSION, "run_id": run_id, "config_hash": config_hash})
    pq.write_table(table, path, row_group_size=50)


def make_run(run_dir, *, episodes: int = 4, steps_per_episode: int = 30, rotate: int | None = None,
             parquet: bool = True, seed: int = 123, grid=(16, 16), goal_radius: float = 1.0,
             run_id: str = RUN_ID, member_lines: int = 7) -> str:
    """Write a complete run directory; ``rotate`` = records per JSON Lines file (parts).

    Returns the directory. max_steps is ``steps_per_episode``.
    """
    os.makedirs(run_dir, exist_ok=True)
    steps, eps = simulate(episodes, steps_per_episode, seed=seed, grid=grid,
                          goal_radius=goal_radius, run_id=run_id)
    config_hash = hashlib.sha256(b"runfactory").hexdigest()
    for base, recs in ((records.STEPS_BASENAME, steps), (records.EPISODES_BASENAME, eps)):
        size = rotate or max(len(recs), 1)
        for part, i in enumerate(range(0, max(len(recs), 1), size)):
            write_jsonl_gz(os.path.join(run_dir, records.part_name(base, part)), recs[i:i + size],
                           member_lines)
        if parquet:
            schema = records.STEP_SCHEMA if base == records.STEPS_BASENAME else \
                records.EPISODE_SCHEMA
            write_parquet(os.path.join(run_dir, f"{base}.parquet"), recs, schema, run_id,
                          config_hash)
    W, H = grid
    env = {"grid_size": [W, H], "max_steps": steps_per_episode, "goal_radius": goal_radius,
           "action_type": "discrete", "observation_type": "concentration",
           "reward_type": "step_penalty", "plume": "static", "step_size": 1, "sigma": 20.0,
           "goal_location": [W - 1, H - 1], "start_location": None}
    meta = {
        "run_id": run_id,
        "experiment": "factory",
        "start_time": "2026-01-01T12:00:00Z",
        "env_config": {"grid_size": [W, H], "source_location": [W - 1, H - 1],
                       "max_steps": steps_per_episode, "goal_radius": goal_radius,
                       "enable_rendering": False,
                       "plume_params": {"source_location": [W - 1, H - 1], "sigma": 20.0}},
        "base_seed": seed,
        "episode_seeds": [seed + i for i in range(episodes)],
        "package_version": "0.1.0",
        "config_hash": config_hash,
        "git_sha": None,
        "system": {"hostname": "host", "platform": "linux", "python_version": "3.11",
                   "pid": 1, "user": None},
        "extra": {"status": "complete", "env": env, "policy": {"name": "random"},
                  "config": {"episodes": episodes, "seed": seed, "env": env},
                  "counts": {"steps": len(steps), "episodes": len(eps)}, "files": {}},
        "schema_version": records.SCHEMA_VERSION,
    }
    assert tuple(meta) == records.RUN_JSON_KEYS
    write_meta(run_dir, meta)
    refresh_manifest(run_dir)
    return str(run_dir)
