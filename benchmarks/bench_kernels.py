"""Kernel benchmark: env-steps/s of the batched kernel writing its columns.

    python -m benchmarks.bench_kernels [--steps TOTAL] [--repeat R] [--json]

N = 1, 64, 1024, 16384 env slots, 1 and 2 Numba threads. As in the engine, the columns are
allocated once (about ``--chunk-rows`` rows) and refilled by repeated resumable kernel calls.
Compile (or cache-load) time is reported separately.
"""
from __future__ import annotations

import argparse
import json
import time

import numba
import numpy as np

from plume_capture.kernels import codes as C, specialize
from plume_capture.kernels.rollout import run_batch
from plume_capture.sim.params import EnvParams, PolicyParams


def columns(rows, obs_size):
    return (np.zeros(rows, np.int64), np.zeros(rows, np.int64), np.zeros(rows, np.float64),
            np.zeros(rows, np.bool_), np.zeros(rows, np.bool_), np.zeros(rows, np.int64),
            np.zeros(rows, np.int64), np.zeros(rows, np.float64), np.zeros(rows, np.float64),
            np.zeros((rows, obs_size), np.float32))


def batch_state(n_envs, seed=0):
    seeds = np.arange(seed, seed + n_envs, dtype=np.int64)
    si = np.zeros((n_envs, 5), np.int64)
    si[:, 2] = -1
    return seeds, si, np.zeros((n_envs, 3), np.float64)


def measure(n_envs, threads, total_steps, repeat, chunk_rows=65536, policy="random", grid=128):
    phys = EnvParams(grid_size=(grid, grid)).build()
    fp = phys.with_policy(PolicyParams(policy))
    steps_per_call = max(1, chunk_rows // n_envs)
    calls = max(1, total_steps // (n_envs * steps_per_call))
    cols = columns(n_envs * steps_per_call, phys.obs_size)
    seeds, si, sf = batch_state(n_envs)
    args = (phys.ip, fp, phys.field, seeds, si, sf, steps_per_call, *cols)
    kernel = specialize(run_batch, (phys.act, phys.obs, phys.rew, C.POLICIES[policy]), args)
    numba.set_num_threads(threads)
    kernel(*args)
    rates = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(calls):
            kernel(*args)
        rates.append(calls * n_envs * steps_per_call / (time.perf_counter() - t0))
    return {"n_envs": n_envs, "threads": threads, "steps_per_call": steps_per_call,
            "steps": calls * n_envs * steps_per_call, "median": float(np.median(rates)),
            "min": float(min(rates)), "max": float(max(rates))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=50_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--chunk-rows", type=int, default=65536)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    measure(1, 1, 10, 1)
    compile_s = time.perf_counter() - t0
    out = {"compile_or_cache_load_s": compile_s, "results": []}
    for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
        for n in (1, 64, 1024, 16384):
            r = measure(n, threads, a.steps if n > 1 else a.steps // 5, a.repeat, a.chunk_rows)
            out["results"].append(r)
            if not a.json:
                print(f"N={n:6d} threads={threads} {r['median'] / 1e6:8.1f}M env-steps/s "
                      f"(min {r['min'] / 1e6:.1f}, max {r['max'] / 1e6:.1f})", flush=True)
    if a.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"compile (or cache load): {compile_s:.2f} s")
    return out


if __name__ == "__main__":
    main()
