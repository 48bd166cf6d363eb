"""How much one driver can ingest (issue 14, goal 2): Ray actors that return a precomputed shard
result at once (no kernel work), so the driver's own bookkeeping — fetching results, appending
JSON Lines, journaling, hashing and, with ``--parquet``, encoding Parquet — is all that is timed.

The driver's CPU time (``getrusage`` of this process, all its threads) and wall time per step are
reported for JSON Lines only and JSON Lines + Parquet. The files are real but every shard repeats
the template shard's records (the run does not validate; it is deleted).

    python -m benchmarks.bench_driver [--shards 400] [--actors 2] [--repeats 3]
    python -m benchmarks.bench_driver --real [--pairs 3] [--small 2000000] [--large 20000000]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .suite import RESULTS, loadavg, summary


class CannedRunner:
    """A Ray actor that answers every shard with one precomputed result (made once, on start). In a
    multi-shard run the template shard's files are written once; each shard gets hard links to them
    under new temporary names (what a worker's write leaves), so only the driver's commit is timed."""

    def __init__(self, threads: int = 1):
        self.template = None

    def load(self, job, shard):
        from plume_capture.sim.runner import ShardRunner

        self.template = ShardRunner(job, 1).run(shard)
        return self.template.steps

    def run(self, key, job, shards):
        return [self._one(job, shard) for shard in shards]

    def _one(self, job, shard):
        import os
        import uuid

        pieces = self.template.pieces
        if pieces and self.template.written:
            tag = uuid.uuid4().hex
            pieces = [dataclasses.replace(p, tmp=f"{p.tmp}.{tag}") for p in pieces]
            for old, new in zip(self.template.pieces, pieces):
                os.link(os.path.join(job.staging, old.tmp), os.path.join(job.staging, new.tmp))
        return dataclasses.replace(self.template, shard=shard, pieces=pieces)

    def ping(self):
        return 0


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(shards: int, actors: int, repeats: int) -> dict:
    import ray

    from plume_capture.capture.on_ray import RayPool, ray_init
    from plume_capture.capture.run import execute, open_new, prepare
    from plume_capture.config import complete_config, resolve
    from plume_capture.sim.plan import plan

    ray_init(None)
    tmp = Path(tempfile.mkdtemp(prefix="bench-driver-"))
    out = {}
    try:
        for parquet in (False, True):
            cpu_ns, wall_rate = [], []
            for r in range(repeats):
                cfg = complete_config({"output": str(tmp / f"{parquet}{r}"), "seed": 1, "parquet": parquet,
                                       "episodes": 0 + 1, "env": {"grid_size": [128, 128], "max_steps": 500},
                                       "engine": {"kind": "ray", "num_actors": actors, "quiet": True}})
                p = prepare(resolve(cfg))
                per = p.shard_episodes
                cfg["episodes"] = per * shards
                p = prepare(resolve(cfg))
                pool = RayPool(actors, 0, actor_cls=CannedRunner)
                first = plan(p.episodes, p.shard_episodes)[0]
                sink, lock = open_new(p)  # first: the canned shard is written where the run is
                steps_per_shard = ray.get([a.load.remote(p.job(), first) for a in pool.actors])[0]
                c0, t0 = _cpu(), time.perf_counter()
                execute(p, sink, lock, False, pool=pool)
                cpu, wall = _cpu() - c0, time.perf_counter() - t0
                pool.kill()
                steps = steps_per_shard * shards
                cpu_ns.append(cpu / steps * 1e9)
                wall_rate.append(steps / wall / 1e6)
                shutil.rmtree(tmp / f"{parquet}{r}", ignore_errors=True)
            key = "jsonl_parquet" if parquet else "jsonl"
            out[key] = {"driver_cpu_ns_per_step": summary(cpu_ns), "ingest_M_steps_per_s": summary(wall_rate),
                        "steps_per_shard": steps_per_shard, "shards": shards}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        ray.shutdown()
    return out


def measure_real(pairs: int, actors: int, small: int, large: int) -> dict:
    """Goal 1 as the issue measures it: the driver's CPU (this process, all threads) of real Ray
    captures (128x128, max 500 steps), marginal between a ``small``- and a ``large``-step run so
    start-up cancels; ``pairs`` pairs per output, the median reported."""
    import ray

    from plume_capture.capture import capture
    from plume_capture.capture.on_ray import ray_init
    from plume_capture.config import complete_config

    ray_init(None)
    tmp = Path(tempfile.mkdtemp(prefix="bench-driver-real-"))
    out = {}
    try:
        for parquet in (False, True):
            marginal, rates = [], []
            for r in range(pairs):
                got = {}
                for steps in (small, large):
                    cfg = complete_config({"output": str(tmp / f"{parquet}{r}{steps}"), "seed": r, "parquet": parquet,
                                           "episodes": steps // 500, "env": {"grid_size": [128, 128], "max_steps": 500},
                                           "engine": {"kind": "ray", "num_actors": actors, "quiet": True}})
                    c0 = _cpu()
                    res = capture(cfg)
                    got[steps] = (_cpu() - c0, res.steps)
                    rates.append(res.steps / res.wall_s / 1e6)
                    shutil.rmtree(tmp / f"{parquet}{r}{steps}", ignore_errors=True)
                (c_s, n_s), (c_l, n_l) = got[small], got[large]
                marginal.append((c_l - c_s) / (n_l - n_s) * 1e9)
            key = "jsonl_parquet" if parquet else "jsonl"
            out[key] = {"driver_cpu_ns_per_step": summary(marginal), "run_M_steps_per_s": summary(rates),
                        "pairs": pairs, "steps": [small, large]}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        ray.shutdown()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_driver")
    ap.add_argument("--shards", type=int, default=400)
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--real", action="store_true",
                    help="real captures: the driver's marginal CPU between a --small and a --large run")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--small", type=int, default=2_000_000)
    ap.add_argument("--large", type=int, default=20_000_000)
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    load = loadavg()
    body = measure_real(a.pairs, a.actors, a.small, a.large) if a.real else measure(a.shards, a.actors, a.repeats)
    res = {"command": "python -m benchmarks.bench_driver " + " ".join(sys.argv[1:] if argv is None else argv),
           "loadavg_before": load, **body, "loadavg_after": loadavg()}
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"driver{'-real' if a.real else ''}-{time.strftime('%Y-%m-%d-%H%M')}.json"
    path.write_text(json.dumps(res, indent=2) + "\n")
    rate = "run_M_steps_per_s" if a.real else "ingest_M_steps_per_s"
    for k in ("jsonl", "jsonl_parquet"):
        r = res[k]
        print(f"{k}: driver CPU {r['driver_cpu_ns_per_step']['median']:.1f} ns/step "
              f"({r['driver_cpu_ns_per_step']['min']:.1f}-{r['driver_cpu_ns_per_step']['max']:.1f}), "
              f"{rate} {r[rate]['median']:.1f}M")
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
