"""End-to-end capture figures: whole process (the CLI as a child process, as an operator runs it),
steady state, the serialization ceiling on the same rows, and peak memory.

Steady state is the *marginal* rate of the capture itself: in one child process (one Ray
instance), pairs of runs of the same config with ``n0`` and ``n`` steps;
``(n - n0) / (t(n) - t(n0))`` with ``t`` = ``run.json`` ``extra.timing.wall_s`` (the capture
without interpreter and Ray start-up). The fixed cost of a run (actor start, Numba cache load,
pipeline fill and drain, finalize) cancels out. ``capture only`` = ``n / t(n)`` keeps it in.

The ceiling is the writer *alone* on the same rows: two processes (one per core) each generate
half of the run's shards with the engine's own ``ShardRunner`` (not timed) and time only the
writing of the step rows (episode rows are 0.1% of them): polars ``write_ndjson`` + isal gzip
level 1 (the fastest *standard* JSON Lines writer), our ``encode_jsonl`` (2.5x faster, same
bytes; the strict ceiling), and pyarrow Parquet (zstd). Rates are reported against both. In the
suite it runs inside the steady-state child after each repeat, so rate / ceiling is measured side
by side. Child entry points::

    python -m benchmarks.capture_bench steady '<json spec>'
    python -m benchmarks.capture_bench ceiling '<json spec>'
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .suite import CACHE, cli, fmt_stat, json_from_stdout, load_str, only_run_dir, run_child, summary

GRID = "128x128"
MAX_STEPS = 1000


def capture_args(output, episodes: int, *, parquet=False, engine="ray", num_actors=None, grid=GRID,
                 max_steps=MAX_STEPS, seed=0, experiment="bench") -> list:
    args = ["--output", str(output), "--experiment", experiment, "--episodes", str(episodes), "--seed", str(seed),
            "--grid", grid, "--max-steps", str(max_steps), "--engine", engine, "--quiet"]
    if parquet:
        args.append("--parquet")
    if num_actors:
        args += ["--num-actors", str(num_actors)]
    return args


def _workdir(tag: str) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{tag}-", dir=CACHE))


def whole_process(steps: int, *, parquet: bool, repeats: int, keep_last: bool = False, engine="ray",
                  num_actors=None, log=print) -> dict:
    """The CLI as a child process: wall time of the whole process, ``run.json`` capture time, and
    peak RSS/PSS summed over the process family. With ``keep_last`` the last run directory is
    kept (returned as ``run_dir``; the caller deletes it)."""
    episodes = max(1, steps // MAX_STEPS)
    runs, failures = [], []
    kept = None
    for k in range(repeats):
        out = _workdir("wp")
        r = run_child(cli(*capture_args(out, episodes, parquet=parquet, engine=engine, num_actors=num_actors)))
        try:
            if r.rc != 0:
                reason = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.rc}"
                failures.append({"rc": r.rc, "reason": reason, **r.memory, "load": [r.load_before, r.load_after]})
                log(f"    FAILED after {r.wall_s:.1f} s: {reason} (peak RSS {r.memory.get('peak_rss_mb', 0):.0f} MB, "
                    f"PSS {r.memory.get('peak_pss_mb', 0):.0f} MB)")
                continue
            run_dir = only_run_dir(out)
            meta = json.loads((run_dir / "run.json").read_text())
            n = meta["extra"]["counts"]["steps"]
            cap = meta["extra"]["timing"]["wall_s"]
            size = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file())
            runs.append({"steps": n, "wall_s": r.wall_s, "rate": n / r.wall_s, "capture_s": cap,
                         "capture_rate": n / cap, "bytes": size, "engine": meta["extra"].get("engine", {}),
                         **r.memory, "load": [r.load_before, r.load_after], "leftovers": r.leftovers})
            log(f"    {n:,} steps{' +parquet' if parquet else ''}: {r.wall_s:.2f} s whole process "
                f"= {n / r.wall_s / 1e6:.2f} M/s (capture {cap:.2f} s), peak RSS {r.memory['peak_rss_mb']:.0f} MB, "
                f"PSS {r.memory['peak_pss_mb']:.0f} MB, load {load_str(r.load_before, r.load_after)}")
            if keep_last and k == repeats - 1:
                kept = run_dir
                out = None
        finally:
            if out is not None:
                shutil.rmtree(out, ignore_errors=True)
    return {"steps": steps, "parquet": parquet, "runs": runs, "failures": failures,
            "run_dir": str(kept) if kept else None,
            "rate": summary(r["rate"] for r in runs), "capture_rate": summary(r["capture_rate"] for r in runs),
            "wall_s": summary(r["wall_s"] for r in runs),
            # a killed run's peak counts too (as a lower bound of what it would have needed)
            "peak_rss_mb": summary(r.get("peak_rss_mb") for r in runs + failures),
            "peak_pss_mb": summary(r.get("peak_pss_mb") for r in runs + failures),
            "load": [(runs or failures)[0]["load"][0], (runs or failures)[-1]["load"][1]] if runs or failures else None}


# ------------------------------------------------------------------------------------------------
# Steady state (child process)

def steady(variants: list[dict], *, n0: int, n: int, repeats: int, ceiling_steps: int | None = None,
           log=print) -> dict:
    """Marginal capture rate per variant (``{"name", "parquet", "num_actors", "engine"}``), all in
    one child process. With ``ceiling_steps``, each repeat also measures the serialization ceiling
    right after the variants' runs, so that rate / ceiling is taken side by side (``fraction``)."""
    spec = {"variants": variants, "n0": n0, "n": n, "repeats": repeats, "ceiling_steps": ceiling_steps}
    r = run_child([sys.executable, "-m", "benchmarks.capture_bench", "steady", json.dumps(spec)],
                  cwd=Path(__file__).resolve().parent.parent, memory=False).check()
    res = json_from_stdout(r.stdout)
    out = {}
    for v in variants:
        pairs = res["variants"][v["name"]]
        # A pair whose larger run was not slower (noise on a shared machine) has no marginal rate.
        marg = [(b["steps"] - a["steps"]) / (b["wall_s"] - a["wall_s"]) if b["wall_s"] > a["wall_s"] else None
                for a, b in pairs]
        only = [b["steps"] / b["wall_s"] for _, b in pairs]
        # the process's CPU per marginal step (all threads; meaningful for the in-process engine only)
        cpu = [(b["cpu_s"] - a["cpu_s"]) / (b["steps"] - a["steps"]) * 1e9 if b["steps"] > a["steps"] else None
               for a, b in pairs]
        out[v["name"]] = {"steady_rate": summary(marg), "capture_rate": summary(only), "marginal": marg,
                          "cpu_ns_per_step": summary(cpu),
                          "fixed_s": summary(a["wall_s"] - a["steps"] / m for (a, _), m in zip(pairs, marg) if m),
                          "actor_utilization": summary(b.get("utilization") for _, b in pairs),
                          "pairs": pairs, "load": [pairs[0][0]["load"], pairs[-1][1]["load"]]}
        log(f"    steady {v['name']}: {fmt_stat(out[v['name']]['steady_rate'], 1e6)} M/s; "
            f"capture only {fmt_stat(out[v['name']]['capture_rate'], 1e6)} M/s; actor utilization "
            f"{fmt_stat(out[v['name']]['actor_utilization'])}")
    ceils = res.get("ceilings") or []
    if ceils:
        keys = list(ceils[0]["rates"])
        c = {"rates": {k: summary(x["rates"][k] for x in ceils) for k in keys}, "runs": ceils,
             "best_jsonl_writer": ceils[0]["best_jsonl_writer"], "procs": ceils[0]["procs"], "fraction": {}}
        c["fraction_standard"] = {}
        for v in variants:  # every variant against the ceiling of what it writes
            name = v["name"]
            key = "jsonl+parquet" if v.get("parquet") else "jsonl"
            c["fraction"][name] = summary(m / x["rates"][key] if m else None
                                          for m, x in zip(out[name]["marginal"], ceils))
            c["fraction_standard"][name] = summary(m / x["rates"][key + "_standard"]
                                                   if m and key + "_standard" in x["rates"] else None
                                                   for m, x in zip(out[name]["marginal"], ceils))
        out["ceiling"] = c
        for k in keys:
            log(f"    ceiling {k}: {fmt_stat(c['rates'][k], 1e6)} M rows/s on {c['procs']} processes")
    out["_load"] = [r.load_before, r.load_after]
    return out


def _steady_child(spec: dict) -> dict:
    import ray

    from plume_capture.capture import capture
    from plume_capture.config import complete_config

    # One Ray instance for every run: the engine uses an initialized Ray instead of starting one.
    if any(v.get("engine", "ray") == "ray" for v in spec["variants"]):
        ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    work = _workdir("st")

    def cfg(v, steps):
        eng = {"kind": v.get("engine", "ray"), "quiet": True}
        if v.get("num_actors"):
            eng["num_actors"] = v["num_actors"]
        return complete_config({"output": str(work), "experiment": v["name"], "seed": 0,
                                "episodes": max(1, steps // MAX_STEPS), "parquet": bool(v.get("parquet")),
                                "env": {"grid_size": [128, 128], "max_steps": MAX_STEPS}, "engine": eng})

    try:
        # Not timed: the first capture of this process loads the Numba cache, imports polars and
        # pyarrow.parquet; in a timed n0 run that would have inflated the first variant's marginal rate.
        warm = {(v.get("engine", "ray"), bool(v.get("parquet"))): v for v in spec["variants"]}
        for v in warm.values():
            shutil.rmtree(capture(cfg(v, 5 * MAX_STEPS)).run_dir, ignore_errors=True)
        out = {"variants": {v["name"]: [] for v in spec["variants"]}, "ceilings": []}
        for _ in range(spec["repeats"]):  # repeats outermost: every figure samples the same stretches of load
            for v in spec["variants"]:
                pair = []
                for steps in (spec["n0"], spec["n"]):
                    c0 = time.process_time()
                    res = capture(cfg(v, steps))
                    cpu = time.process_time() - c0  # every thread of this process (in-process engine)
                    meta = json.loads((res.run_dir / "run.json").read_text())
                    pair.append({"steps": res.steps, "wall_s": meta["extra"]["timing"]["wall_s"], "cpu_s": cpu,
                                 "utilization": meta["extra"].get("engine", {}).get("actor_utilization"),
                                 "load": round(os.getloadavg()[0], 2)})
                    shutil.rmtree(res.run_dir, ignore_errors=True)
                out["variants"][v["name"]].append(pair)
            if spec.get("ceiling_steps"):
                out["ceilings"].append(_ceiling_child({"steps": spec["ceiling_steps"], "procs": 2}))
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if ray.is_initialized():
            ray.shutdown()


# ------------------------------------------------------------------------------------------------
# Serialization ceiling (child process with two worker processes)

def ceiling(steps: int, *, procs: int = 2, log=print) -> dict:
    spec = {"steps": steps, "procs": procs}
    r = run_child([sys.executable, "-m", "benchmarks.capture_bench", "ceiling", json.dumps(spec)],
                  cwd=Path(__file__).resolve().parent.parent, memory=False).check()
    res = json_from_stdout(r.stdout)
    res["load"] = [r.load_before, r.load_after]
    for k, v in res["rates"].items():
        log(f"    ceiling {k}: {v / 1e6:.2f} M rows/s on {procs} processes")
    return res


def _ceiling_worker(args):
    os.environ["POLARS_MAX_THREADS"] = "1"
    os.environ["NUMBA_NUM_THREADS"] = "1"
    import io

    import polars as pl
    import pyarrow.parquet as pq
    from isal import isal_zlib

    from plume_capture.capture.run import prepare
    from plume_capture.sim.plan import plan
    from plume_capture.sim.runner import Job, ShardRunner
    from plume_capture.io.jsonl_encode import encode_jsonl
    from plume_capture.config import complete_config, resolve
    from plume_capture.spec import STEP_SCHEMA

    worker, procs, episodes, tmp = args
    p = prepare(resolve(complete_config({"output": tmp, "episodes": episodes, "seed": 0,
                                         "env": {"grid_size": [128, 128], "max_steps": MAX_STEPS},
                                         "engine": {"kind": "local", "quiet": True}})))
    runner = ShardRunner(Job(env=p.physics.params, policy=p.policy, run_id=p.run_id, base_seed=p.seed),
                         threads=1, physics=p.physics)
    shards = plan(p.episodes, p.shard_episodes)[worker::procs]
    times = {"polars_ndjson_isal1": 0.0, "encode_jsonl": 0.0, "parquet_zstd": 0.0}
    rows = 0
    pq_path = Path(tmp) / f"w{worker}"
    writer = None
    for shard in shards:
        steps = runner.run_table(shard)  # the shard's exact step rows (Arrow), not timed
        rows += steps.num_rows
        t = time.perf_counter()
        buf = io.BytesIO()
        pl.from_arrow(steps).write_ndjson(buf)
        isal_zlib.compress(buf.getbuffer(), 1, wbits=31)
        times["polars_ndjson_isal1"] += time.perf_counter() - t
        t = time.perf_counter()
        encode_jsonl(steps)
        times["encode_jsonl"] += time.perf_counter() - t
        t = time.perf_counter()
        if writer is None:
            writer = pq.ParquetWriter(f"{pq_path}-steps.parquet", STEP_SCHEMA, compression="zstd")
        writer.write_table(steps)
        times["parquet_zstd"] += time.perf_counter() - t
    if writer is not None:
        t = time.perf_counter()
        writer.close()
        times["parquet_zstd"] += time.perf_counter() - t
    return {"worker": worker, "rows": rows, "times": times}


def _ceiling_child(spec: dict) -> dict:
    import multiprocessing as mp

    procs = spec["procs"]
    episodes = max(1, spec["steps"] // MAX_STEPS)
    tmp = tempfile.mkdtemp(prefix="ceil-", dir=CACHE)
    try:
        with mp.get_context("spawn").Pool(procs) as pool:
            parts = pool.map(_ceiling_worker, [(w, procs, episodes, tmp) for w in range(procs)])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = sum(p["rows"] for p in parts)
    # The processes run side by side: a writer's wall time is the slower process's total.
    wall = {k: max(p["times"][k] for p in parts) for k in parts[0]["times"]}
    best_jsonl = min(("polars_ndjson_isal1", "encode_jsonl"), key=lambda k: wall[k])
    rates = {k: rows / v for k, v in wall.items()}
    rates["jsonl"] = rows / wall[best_jsonl]
    rates["jsonl+parquet"] = rows / max(p["times"][best_jsonl] + p["times"]["parquet_zstd"] for p in parts)
    # the fastest *standard* writer (issue 3's wording): polars write_ndjson + isal, and pyarrow
    rates["jsonl_standard"] = rates["polars_ndjson_isal1"]
    rates["jsonl+parquet_standard"] = rows / max(p["times"]["polars_ndjson_isal1"] + p["times"]["parquet_zstd"]
                                                 for p in parts)
    return {"rows": rows, "procs": procs, "wall_s": wall, "best_jsonl_writer": best_jsonl, "rates": rates}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    cmd, spec = argv[0], json.loads(argv[1])
    if cmd == "steady":
        print(json.dumps(_steady_child(spec)))
    elif cmd == "ceiling":
        print(json.dumps(_ceiling_child(spec)))
    else:
        raise SystemExit(f"unknown command {cmd!r}")


if __name__ == "__main__":
    main()
