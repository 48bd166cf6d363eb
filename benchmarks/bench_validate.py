"""Validation speed and memory on a large run (issue 5: >= 1M steps/s, peak RSS <= 500 MB for
10M steps with JSON Lines + Parquet).

    python -m benchmarks.bench_validate --steps 2000000          # generate (cached) and validate
    python -m benchmarks.bench_validate --run RESULTS/exp/run-...  # validate an existing run

The generated run is internally consistent (the validator reports it ok): episodes of
``--steps-per-episode`` steps on a 64x64 grid, JSON Lines written like the engine writes them
(polars ndjson text, gzip members of ~2 MiB, rotated parts of ``--rotate-mb``), Parquet (zstd)
with row groups of 256Ki rows. It is cached under ``benchmarks/.cache/``. Validation runs in a fresh
subprocess so that its peak RSS (``ru_maxrss``) is its own.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CACHE = Path(__file__).resolve().parent / ".cache"
RUN_ID = "run-20260101-000000-bench0"
GRID, GOAL, RADIUS, SIGMA = (64, 64), (63, 63), 0.5, 20.0


class _Out:
    """A binary file that counts and hashes what is written (for extra.files)."""

    def __init__(self, path: Path):
        self.path, self.f = path, open(path, "wb")
        self.h, self.bytes, self.rows = hashlib.sha256(), 0, 0

    def write(self, data: bytes, rows: int = 0):
        self.f.write(data)
        self.h.update(data)
        self.bytes += len(data)
        self.rows += rows

    def close(self) -> dict:
        self.f.close()
        return {"bytes": self.bytes, "rows": self.rows, "sha256": self.h.hexdigest()}


class _Parts:
    """JSON Lines as gzip members of ~2 MiB text, rotated into parts of ``rotate`` bytes."""

    def __init__(self, run_dir: Path, base: str, rotate: int, files: dict):
        from plume_capture.spec import part_name
        self.run_dir, self.base, self.rotate, self.files = run_dir, base, rotate, files
        self.part_name, self.part, self.out = part_name, 0, None

    def write(self, text: bytes):
        from isal import isal_zlib
        pos = 0
        while pos < len(text):
            end = text.rfind(b"\n", pos, pos + (2 << 20)) + 1
            if end <= pos:
                end = text.find(b"\n", pos) + 1
            block = text[pos:end]
            pos = end
            if self.out is None or self.out.bytes >= self.rotate:
                self._next()
            self.out.write(isal_zlib.compress(block, 1, wbits=31), block.count(b"\n"))

    def _next(self):
        if self.out is not None:
            self.files[self.out.path.name] = self.out.close()
            self.part += 1
        self.out = _Out(self.run_dir / self.part_name(self.base, self.part))

    def close(self):
        if self.out is not None:
            self.files[self.out.path.name] = self.out.close()


def generate(run_dir: Path, steps: int, steps_per_episode: int = 1000, parquet: bool = True,
             rotate_mb: int = 256, seed: int = 123) -> Path:
    import polars as pl
    import pyarrow.parquet as pq

    from plume_capture import spec as records

    L = steps_per_episode
    E = max(1, math.ceil(steps / L))
    run_dir.mkdir(parents=True, exist_ok=True)
    files: dict = {}
    config_hash = hashlib.sha256(b"bench").hexdigest()
    meta_kv = {"schema_version": "0.1", "run_id": RUN_ID, "config_hash": config_hash}
    sparts = _Parts(run_dir, "steps", rotate_mb << 20, files)
    eparts = _Parts(run_dir, "episodes", rotate_mb << 20, files)
    pqw = {}
    if parquet:
        for base, schema in (("steps", records.STEP_SCHEMA), ("episodes", records.EPISODE_SCHEMA)):
            pqw[base] = pq.ParquetWriter(run_dir / f"{base}.parquet",
                                         schema.with_metadata(meta_kv), compression="zstd")
    total = 0.0
    for _ in range(L):
        total += -0.01  # the float64 sum in step order
    rng = np.random.default_rng(seed)
    t0 = 1_767_225_600.0
    per_chunk = max(1, 262144 // L)
    k0 = 0
    for e0 in range(0, E, per_chunk):
        e1 = min(E, e0 + per_chunk)
        n = (e1 - e0) * L
        ep = np.repeat(np.arange(e0, e1), L)
        step = np.tile(np.arange(1, L + 1), e1 - e0)
        x = rng.integers(0, GOAL[0] - 1, n)  # never within RADIUS of the goal
        y = rng.integers(0, GRID[1], n)
        d2 = (x - GOAL[0]) ** 2 + (y - GOAL[1]) ** 2
        dist = np.sqrt(d2.astype(np.float64))
        obs = np.exp(-d2 / (2 * SIGMA * SIGMA)).astype(np.float32).astype(np.float64)
        ts = t0 + (k0 + np.arange(n)) * 1.37e-5
        k0 += n
        ids = pl.Series([records.episode_id(i) for i in range(e0, e1)])
        df = pl.DataFrame({
            "action": rng.integers(0, 4, n), "x": x, "y": y, "distance_to_goal": dist,
            "episode_id": ids.gather(ep - e0), "o": obs, "reward": np.full(n, -0.01),
            "run_id": pl.repeat(RUN_ID, n, eager=True),
            "schema_version": pl.repeat("0.1", n, eager=True),
            "seed": seed + ep, "step": step, "terminated": np.zeros(n, bool),
            "truncated": step == L, "ts": ts,
        }).select(
            "action", pl.struct("x", "y").alias("agent_position"), "distance_to_goal",
            "episode_id", pl.concat_list("o").alias("observation_summary"), "reward", "run_id",
            "schema_version", "seed", "step", "terminated", "truncated", "ts")
        buf = io.BytesIO()
        df.write_ndjson(buf)
        sparts.write(buf.getvalue())
        last = np.arange(L - 1, n, L)
        dur = (ts[last] - ts[last - (L - 1)]) * 1000.0
        edf = pl.DataFrame({
            "avg_step_time_ms": dur / L, "duration_ms": dur, "episode_id": ids,
            "final_distance_to_goal": dist[last], "fx": x[last], "fy": y[last],
            "run_id": pl.repeat(RUN_ID, e1 - e0, eager=True),
            "schema_version": pl.repeat("0.1", e1 - e0, eager=True),
            "terminated": np.zeros(e1 - e0, bool), "total_reward": np.full(e1 - e0, total),
            "total_steps": np.full(e1 - e0, L), "truncated": np.ones(e1 - e0, bool),
        }).select(
            "avg_step_time_ms", "duration_ms", "episode_id", "final_distance_to_goal",
            pl.struct(pl.col("fx").alias("x"), pl.col("fy").alias("y")).alias("final_position"),
            "run_id", "schema_version", "terminated", "total_reward", "total_steps", "truncated")
        buf = io.BytesIO()
        edf.write_ndjson(buf)
        eparts.write(buf.getvalue())
        if parquet:
            for base, frame, schema in (("steps", df, records.STEP_SCHEMA),
                                        ("episodes", edf, records.EPISODE_SCHEMA)):
                table = frame.to_arrow().cast(schema)
                pqw[base].write_table(table, row_group_size=1 << 18)
    sparts.close()
    eparts.close()
    for base, w in pqw.items():
        w.close()
        p = run_dir / f"{base}.parquet"
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        files[p.name] = {"bytes": p.stat().st_size, "rows": pq.ParquetFile(p).metadata.num_rows,
                         "sha256": h.hexdigest()}
    env = {"grid_size": list(GRID), "max_steps": L, "goal_radius": RADIUS,
           "action_type": "discrete", "observation_type": "concentration",
           "reward_type": "step_penalty", "plume": "static", "step_size": 1, "sigma": SIGMA,
           "goal_location": list(GOAL)}
    meta = {
        "run_id": RUN_ID, "experiment": "bench", "start_time": "2026-01-01T00:00:00Z",
        "env_config": {"grid_size": list(GRID), "source_location": list(GOAL), "max_steps": L,
                       "goal_radius": RADIUS, "enable_rendering": False,
                       "plume_params": {"source_location": list(GOAL), "sigma": SIGMA}},
        "base_seed": seed, "episode_seeds": list(range(seed, seed + E)),
        "package_version": "0.1.0", "config_hash": config_hash, "git_sha": None,
        "system": {"hostname": "bench", "platform": sys.platform, "python_version": "3",
                   "pid": os.getpid(), "user": None},
        "extra": {"status": "complete", "env": env, "policy": {"name": "random"},
                  "counts": {"steps": E * L, "episodes": E}, "files": files},
        "schema_version": "0.1",
    }
    (run_dir / "run.json").write_text(json.dumps(meta, indent=2))
    return run_dir


_CHILD = r"""
import json, resource, sys, time
from plume_capture.readback.validate import validate_run_artifacts
t = time.perf_counter()
u0 = resource.getrusage(resource.RUSAGE_SELF)
res = validate_run_artifacts(sys.argv[1], check_parquet=sys.argv[2] == "1")
dt = time.perf_counter() - t
u = resource.getrusage(resource.RUSAGE_SELF)
cpu = u.ru_utime + u.ru_stime - u0.ru_utime - u0.ru_stime
print(json.dumps({"seconds": dt, "cpu_s": cpu, "maxrss_mb": u.ru_maxrss / 1024,
                  "ok": res["ok"], "counts": res["counts"], "errors": res["errors"][:5]}))
"""


def validate_in_child(run_dir: Path, parquet: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(run_dir), "1" if parquet else "0"],
                         check=True, capture_output=True, text=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=2_000_000)
    ap.add_argument("--steps-per-episode", type=int, default=1000)
    ap.add_argument("--rotate-mb", type=int, default=256)
    ap.add_argument("--no-parquet", action="store_true")
    ap.add_argument("--run", type=Path, help="validate this run directory instead")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args(argv)
    parquet = not args.no_parquet
    if args.run is None:
        run_dir = CACHE / (f"validate-{args.steps}-{args.steps_per_episode}-{args.rotate_mb}"
                           f"{'-pq' if parquet else ''}")
        if not (run_dir / "run.json").exists():
            t = time.perf_counter()
            generate(run_dir, args.steps, args.steps_per_episode, parquet, args.rotate_mb)
            print(f"generated {run_dir} in {time.perf_counter() - t:.1f} s", flush=True)
    else:
        run_dir = args.run
    size = sum(p.stat().st_size for p in run_dir.iterdir())
    for _ in range(args.repeat):
        res = validate_in_child(run_dir, parquet)
        steps = res["counts"]["steps"]
        print(f"{run_dir.name}: {steps} steps, {res['counts']['episodes']} episodes, "
              f"{size / 2**20:.0f} MiB on disk, parquet {'on' if parquet else 'off'}: "
              f"{res['seconds']:.2f} s = {steps / res['seconds'] / 1e6:.2f} M steps/s, "
              f"CPU {res['cpu_s']:.1f} s ({res['cpu_s'] / steps * 1e6:.2f} us/step), "
              f"peak RSS {res['maxrss_mb']:.0f} MB, ok={res['ok']}, "
              f"load avg {os.getloadavg()[0]:.1f}", flush=True)
        if not res["ok"]:
            print("  errors:", *res["errors"], sep="\n    ")


if __name__ == "__main__":
    main()
