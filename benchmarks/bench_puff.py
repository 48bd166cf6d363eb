"""Puff plume benchmark (issue 29): capture-kernel steps/s of the puff plume beside the static plume's,
on 128x128 and 1024x1024 grids.

    python -m benchmarks.bench_puff [--steps N] [--repeat R] [--out PATH]

``run_episodes`` on one thread, random policy, concentration observations, the shipped defaults
otherwise (source at (64, 64), wind 1 cell/s along +x, ``puff.max_puffs`` 256, 100 warm-up steps
per episode, counted in the time but not in the steps). Rates per wall-clock second and per CPU
second of the calling thread (steadier on a shared machine). ``live_puffs`` is the mean number of
live puffs sampled after every kernel call. Writes the results as JSON to ``--out`` (default
``benchmarks/results/puff-<date>.json``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

from plume_capture.kernels import specialize
from plume_capture.kernels.rollout import run_episodes
from plume_capture.sim.params import EnvParams, PolicyParams

CHUNK = 4093  # rows per kernel call (small: the live-puff count is sampled between calls)


def measure(plume: str, grid: int, steps: int, repeat: int, **puff) -> dict:
    phys = EnvParams(grid_size=(grid, grid), plume=plume, **puff).build()
    ka = phys.kernel_args(PolicyParams("random"))
    calls = max(1, steps // CHUNK)
    seeds = np.arange(0, (repeat + 1) * calls * CHUNK, dtype=np.int64)
    ep, out = ka.episodes(len(seeds)), ka.rows(CHUNK)
    kernel = specialize(run_episodes, ka.codes, (ka.params, ka.field, seeds, ka.state, out, ep))
    kernel(ka.params, ka.field, seeds, ka.state, out, ep)  # compile or load, warm
    rates, cpu_rates, live = [], [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.thread_time()
        for _ in range(calls):
            kernel(ka.params, ka.field, seeds, ka.state, out, ep)
            live.append(ka.state.puff[0, 0, 0])
        rates.append(calls * CHUNK / (time.perf_counter() - t0))
        cpu_rates.append(calls * CHUNK / (time.thread_time() - c0))
    res = {"plume": plume, "grid": grid, "steps": calls * CHUNK, "repeat": repeat,
           "steps_per_s_median": float(np.median(rates)), "steps_per_s_min": float(min(rates)),
           "steps_per_s_max": float(max(rates)), "steps_per_cpu_s_median": float(np.median(cpu_rates))}
    if plume == "puff":
        res["live_puffs_mean"] = float(np.mean(live))
        res["max_puffs"] = phys.params.puff_max_puffs
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2_000_000, help="steps per repeat of the puff plume")
    ap.add_argument("--static-steps", type=int, default=50_000_000, help="steps per repeat of the static plume")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    results = []
    for grid in (128, 1024):
        for plume, n in (("static", a.static_steps), ("puff", a.steps)):
            r = measure(plume, grid, n, a.repeat)
            results.append(r)
            extra = f"  live puffs {r['live_puffs_mean']:.0f} (cap {r['max_puffs']})" if plume == "puff" else ""
            print(f"{grid:5d}x{grid:<5d} {plume:7s} {r['steps_per_s_median'] / 1e6:9.3f}M steps/s "
                  f"(min {r['steps_per_s_min'] / 1e6:.3f}, max {r['steps_per_s_max'] / 1e6:.3f}; "
                  f"per CPU second {r['steps_per_cpu_s_median'] / 1e6:.3f}M){extra}", flush=True)
    args = sys.argv[1:] if argv is None else argv
    doc = {"benchmark": "bench_puff", "command": " ".join(["python -m benchmarks.bench_puff", *args]),
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": platform.node(),
           "cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg(), "results": results}
    out = a.out or os.path.join(os.path.dirname(__file__), "results", f"puff-{time.strftime('%Y-%m-%d')}.json")
    with open(out, "w") as f:
        json.dump(doc, f, indent=2)
    print(f"wrote {out}")
    return doc


if __name__ == "__main__":
    main()
