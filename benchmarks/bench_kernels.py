"""Kernel benchmark: env-steps/s of the kernels writing their rows.

    python -m benchmarks.bench_kernels [--steps TOTAL] [--repeat R] [--json]

* ``run_episodes`` (capture): 1 and 2 threads, each running its own episodes into its own rows as
  the engine's shard runners do (``n_envs`` = threads: one env slot per thread). As in the engine,
  the rows (``--chunk-rows``) are allocated once and refilled by repeated resumable kernel calls.
* ``step_envs`` (the vector env's kernel): N = 64, 1024, 16384 env slots, 1 and 2 Numba threads,
  actions from outside (drawn beforehand).

Random policy (capture) and random actions (vector) on a 128x128 grid. Compile (or cache-load)
time is reported separately.
"""
from __future__ import annotations

import argparse
import json
import threading
import time

import numba
import numpy as np

from plume_capture.kernels import specialize
from plume_capture.kernels.rollout import reset_envs, run_episodes, step_envs
from plume_capture.sim.params import EnvParams, PolicyParams


def _rates(run_once, repeat, steps_per_run):
    rates = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run_once()
        rates.append(steps_per_run / (time.perf_counter() - t0))
    return {"median": float(np.median(rates)), "min": float(min(rates)), "max": float(max(rates))}


def measure_capture(threads, total_steps, repeat, chunk_rows=65536, policy="random", grid=128):
    """``threads`` concurrent ``run_episodes`` callers, ``total_steps`` rows in all per repeat."""
    phys = EnvParams(grid_size=(grid, grid)).build()
    calls = max(1, total_steps // (threads * chunk_rows))
    n_eps = (repeat + 1) * calls * chunk_rows  # every episode has >= 1 row: never runs out
    slots = []
    for t in range(threads):
        ka = phys.kernel_args(PolicyParams(policy))
        seeds = np.arange(t * n_eps, (t + 1) * n_eps, dtype=np.int64) % 2**32
        args = (ka.params, ka.field, seeds, ka.state, ka.rows(chunk_rows), ka.episodes(n_eps))
        slots.append((specialize(run_episodes, ka.codes, args), args))
    for kernel, args in slots:
        kernel(*args)

    def work(kernel, args):
        for _ in range(calls):
            kernel(*args)

    def run_once():
        ts = [threading.Thread(target=work, args=s) for s in slots]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    return {"kernel": "run_episodes", "n_envs": threads, "threads": threads, "steps_per_call": chunk_rows,
            "steps": calls * threads * chunk_rows, **_rates(run_once, repeat, calls * threads * chunk_rows)}


def measure_vector(n_envs, threads, total_steps, repeat, grid=128, distinct_actions=64):
    """``step_envs`` over ``n_envs`` slots with ``threads`` Numba threads (no autoreset: an ended
    env keeps stepping from where it is, which costs the same)."""
    phys = EnvParams(grid_size=(grid, grid)).build()
    ka = phys.kernel_args(envs=n_envs)
    ka.state.seed[:] = np.arange(n_envs)
    out = ka.rows(n_envs)
    reset = specialize(reset_envs, ka.codes, (ka.params, ka.field, np.ones(n_envs, np.bool_), ka.state, out))
    reset(ka.params, ka.field, np.ones(n_envs, np.bool_), ka.state, out)
    skip = np.zeros(n_envs, np.bool_)
    actions = np.random.default_rng(0).integers(0, phys.n_actions, (distinct_actions, n_envs))
    step = specialize(step_envs, ka.codes, (ka.params, ka.field, skip, actions[0], ka.state, out))
    calls = max(1, total_steps // n_envs)
    numba.set_num_threads(threads)
    step(ka.params, ka.field, skip, actions[0], ka.state, out)

    def run_once():
        for c in range(calls):
            step(ka.params, ka.field, skip, actions[c % distinct_actions], ka.state, out)

    return {"kernel": "step_envs", "n_envs": n_envs, "threads": threads, "steps_per_call": n_envs,
            "steps": calls * n_envs, **_rates(run_once, repeat, calls * n_envs)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=50_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--chunk-rows", type=int, default=65536)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    measure_capture(1, 10, 1, chunk_rows=10)
    measure_vector(1, 1, 10, 1)
    compile_s = time.perf_counter() - t0
    out = {"compile_or_cache_load_s": compile_s, "results": []}
    all_threads = sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)})
    runs = [(measure_capture, (t, a.steps, a.repeat, a.chunk_rows)) for t in all_threads]
    runs += [(measure_vector, (n, t, a.steps // 5 if n < 1024 else a.steps, a.repeat))
             for t in all_threads for n in (64, 1024, 16384)]
    for fn, args in runs:
        r = fn(*args)
        out["results"].append(r)
        if not a.json:
            print(f"{r['kernel']:12s} N={r['n_envs']:6d} threads={r['threads']} {r['median'] / 1e6:8.1f}M env-steps/s "
                  f"(min {r['min'] / 1e6:.1f}, max {r['max'] / 1e6:.1f})", flush=True)
    if a.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"compile (or cache load): {compile_s:.2f} s")
    return out


if __name__ == "__main__":
    main()
