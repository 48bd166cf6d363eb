"""Where a step's time goes (issue 30): ns per step of each stage of the pipeline, on the same
records, and the in-process steady state as a fraction of the bound those stages give on 2 cores.

    python -m benchmarks --stages          # in the suite (results file and table)
    python -m benchmarks.bench_stages child '<json spec>'   # one pass (the suite's child)
    python -m benchmarks.bench_stages --old CHECKOUT [--steps N] [--pairs K]   # old vs new, alternating

One pass, in a child process with one thread for each library (what an in-process shard worker
has): the run's shards (128x128, max_steps 1000, random policy, seed 0; the very records of the
steady state's larger run) are made one at a time, and every stage runs on them as a multi-shard
run of the engine does, each timed in wall and CPU (``time.process_time``, the whole process, so
helper threads count):

* kernels: the capture kernel's calls (``ShardRunner.kernel``, wrapped);
* records: the rest of making the shard's Arrow tables from the kernel's rows;
* JSON text: ``encode_jsonl`` of steps and episodes, less the gzip stage;
* gzip: isal (the encoder's level, gzip container) compressing that same text, alone;
* Parquet: ``encode_parquet`` of both tables (in memory);
* file writes: ``write_pieces`` of the shard's files (sha256, O_DIRECT where allowed, fsync);
* driver: ``ShardedSink.append`` (renames, journal) and its ``close``, as the driver commits.

Bound on 2 cores: in the engine every stage but the driver's runs on the shard worker threads (two
on this machine) and the driver commits on its own thread, all overlapping; so 2 cores give at
most ``2 / (sum of the stages' CPU ns per step)`` steps/s (the driver alone, far below one core,
does not bind). The JSON Lines bound leaves out Parquet and the Parquet files' writes. The actual
rate is the steady state of ``capture_bench.steady`` (in-process engine, 2 threads, marginal rate
between a run of ``n0`` and of ``n`` steps), measured right after each pass; fraction = rate / bound.
On a machine shared with other work the wall rate falls with the load while CPU times hardly move,
so a second, load-free fraction is reported too: the stages' CPU ns per step over the pipeline's own
(the steady-state process's CPU time, all threads, per marginal step) = the fraction the pipeline
would reach if it had the 2 cores to itself and overlapped perfectly.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .suite import CACHE, json_from_stdout, loadavg, run_child, summary

GRID = 128
MAX_STEPS = 1000
STAGES = ("kernels", "records", "json_text", "gzip", "parquet", "file_writes", "driver")
LABELS = {"kernels": "kernels (capture kernel calls)", "records": "records (Arrow tables from the kernel rows)",
          "json_text": "JSON text assembly (encode_jsonl − gzip)", "gzip": "gzip (isal, the encoder's level)",
          "parquet": "Parquet encoding (zstd, in memory)", "file_writes": "file writes (sha256, fsync)",
          "driver": "driver's share (commit: renames, journal)"}


class _Clock:
    """Accumulates wall and CPU seconds per stage."""

    def __init__(self):
        self.wall = dict.fromkeys(STAGES, 0.0)
        self.cpu = dict.fromkeys(STAGES, 0.0)

    def time(self, stage, fn, *args, **kw):
        w, c = time.perf_counter(), time.process_time()
        out = fn(*args, **kw)
        self.wall[stage] += time.perf_counter() - w
        self.cpu[stage] += time.process_time() - c
        return out


def one_pass(steps: int, work: Path) -> dict:
    """Every stage on the shards of a run of ``steps`` steps (see the module docstring)."""
    from isal import isal_zlib

    from plume_capture.capture.run import prepare
    from plume_capture.capture.sink import ShardedSink
    from plume_capture.config import complete_config, resolve
    from plume_capture.io import shardfiles
    from plume_capture.io.jsonl_encode import configure_threads, encode_jsonl, load_polars_for
    from plume_capture.sim.plan import plan
    from plume_capture.sim.runner import Job, ShardResult, ShardRunner
    from plume_capture.spec import SCHEMA_VERSION

    configure_threads(1)
    p = prepare(resolve(complete_config({"output": str(work), "episodes": max(1, steps // MAX_STEPS), "seed": 0,
                                         "env": {"grid_size": [GRID, GRID], "max_steps": MAX_STEPS},
                                         "engine": {"kind": "local", "quiet": True}})))
    job = Job(env=p.physics.params, policy=p.policy, run_id=p.run_id, base_seed=p.seed)
    runner = ShardRunner(job, threads=1, physics=p.physics)
    clock = _Clock()
    kernel = runner.kernel

    def timed_kernel(*args):
        return clock.time("kernels", kernel, *args)

    runner.kernel = timed_kernel
    # not timed: compile or load the kernels' cache; import polars and take its float path once
    load_polars_for(p.shard_episodes * MAX_STEPS)
    encode_jsonl(runner.run_table(plan(5, 5)[0]))
    clock = _Clock()
    staging = work / "staging"
    staging.mkdir()
    token = "bench-stages"
    meta = {"schema_version": SCHEMA_VERSION, "run_id": p.run_id, "config_hash": "bench"}
    sink = ShardedSink(staging, rotate_size=None, parquet=True, token=token, run_id=p.run_id, config_hash="bench")
    rows = text_bytes = gzip_bytes = parquet_bytes = 0
    for shard in plan(p.episodes, p.shard_episodes):
        k0w, k0c = clock.wall["kernels"], clock.cpu["kernels"]
        steps_t, episodes_t = clock.time("records", runner.run_tables, shard)
        clock.wall["records"] -= clock.wall["kernels"] - k0w  # the kernels' share is counted there
        clock.cpu["records"] -= clock.cpu["kernels"] - k0c
        rows += steps_t.num_rows
        encs = [clock.time("json_text", encode_jsonl, t) for t in (steps_t, episodes_t)]
        for enc in encs:  # the same text, compressed alone as the encoder does (one gzip member)
            for member in enc.members:
                text = isal_zlib.decompress(member, wbits=31)
                text_bytes += len(text)
                gz = clock.time("gzip", isal_zlib.compress, text, 1, wbits=31)
                gzip_bytes += len(gz)
        jsonl = shardfiles.encode_shard(encs[0], encs[1], None)
        pq_pieces = clock.time("parquet", shardfiles.encode_shard, _no_members(), _no_members(), None,
                               steps_t, episodes_t, meta)
        parquet_bytes += sum(len(b) for piece in pq_pieces for b in piece.data)
        w0w, w0c = clock.wall["file_writes"], clock.cpu["file_writes"]
        written = clock.time("file_writes", shardfiles.write_pieces, str(staging), shard.index, jsonl)
        jsonl_write = (clock.wall["file_writes"] - w0w, clock.cpu["file_writes"] - w0c)
        written += clock.time("file_writes", shardfiles.write_pieces, str(staging), shard.index, pq_pieces)
        clock.wall.setdefault("parquet_writes", 0.0)
        clock.cpu.setdefault("parquet_writes", 0.0)
        clock.wall["parquet_writes"] += clock.wall["file_writes"] - w0w - jsonl_write[0]
        clock.cpu["parquet_writes"] += clock.cpu["file_writes"] - w0c - jsonl_write[1]
        result = ShardResult(shard=shard, steps=steps_t.num_rows, steps_jsonl=None, episodes_jsonl=None,
                             pieces=written, written=True)
        clock.time("driver", sink.append, result)
        del steps_t, episodes_t, encs, jsonl, pq_pieces, result
    clock.time("driver", sink.close)
    for s in ("json_text",):  # encode_jsonl's time includes its gzip
        clock.wall[s] -= clock.wall["gzip"]
        clock.cpu[s] -= clock.cpu["gzip"]
    return {"steps": rows, "wall_s": clock.wall, "cpu_s": clock.cpu, "text_bytes_per_step": text_bytes / rows,
            "gzip_bytes_per_step": gzip_bytes / rows, "parquet_bytes_per_step": parquet_bytes / rows,
            "shards": p.shards, "shard_episodes": p.shard_episodes}


def _no_members():
    from plume_capture.io.jsonl_encode import EncodedJsonl

    return EncodedJsonl([], [], [])


def _child(spec: dict) -> dict:
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="stages-", dir=CACHE))
    try:
        load0 = loadavg()
        res = one_pass(spec["steps"], work)
        res["load"] = [load0, loadavg()]
        return res
    finally:
        shutil.rmtree(work, ignore_errors=True)


def stage_pass(steps: int, root: Path | None = None) -> dict:
    """One pass in a child process (one thread per library, like an in-process shard worker);
    ``root``: the checkout whose package (and this module) the child imports."""
    CACHE.mkdir(parents=True, exist_ok=True)
    root = root or Path(__file__).resolve().parent.parent
    env = {"POLARS_MAX_THREADS": "1", "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    r = run_child([sys.executable, "-m", "benchmarks.bench_stages", "child", json.dumps({"steps": steps})],
                  cwd=root, env=env, memory=False).check()
    return json_from_stdout(r.stdout)


def bound(ns_cpu: dict, parquet: bool, cores: int = 2) -> float:
    """Steps/s that ``cores`` cores allow for these CPU ns per step (see the module docstring)."""
    total = sum(v for k, v in ns_cpu.items() if k in STAGES and (parquet or k != "parquet"))
    if not parquet:
        total -= ns_cpu.get("parquet_writes", 0.0)
    return cores / total * 1e9 if total > 0 else float("inf")


def measure(steps: int, n0: int, repeats: int, cores: int = 2, log=print) -> dict:
    """``repeats`` times: a stage pass, then the steady state (JSON Lines; + Parquet) of the same
    run; per repeat the fraction rate / bound. Medians over the repeats."""
    from . import capture_bench as cb

    passes, fractions = [], {"jsonl": [], "both": []}
    cpu_fractions, pipeline_ns = {"jsonl": [], "both": []}, {"jsonl": [], "both": []}
    rates = {"jsonl": [], "both": []}
    bounds = {"jsonl": [], "both": []}
    bounds_wall = {"jsonl": [], "both": []}
    for _ in range(repeats):
        log(f"    stage pass, {steps / 1e6:g}M steps (load {loadavg()[0]:.2f}) ...")
        ps = stage_pass(steps)
        passes.append(ps)
        st = cb.steady([{"name": "jsonl", "engine": "local"}, {"name": "both", "parquet": True, "engine": "local"}],
                       n0=n0, n=steps, repeats=1, log=log)
        ns_cpu = {k: v / ps["steps"] * 1e9 for k, v in ps["cpu_s"].items()}
        ns_wall = {k: v / ps["steps"] * 1e9 for k, v in ps["wall_s"].items()}
        for name, pq in (("jsonl", False), ("both", True)):
            b, bw = bound(ns_cpu, pq, cores), bound(ns_wall, pq, cores)
            rate = st[name]["steady_rate"]["median"]
            bounds[name].append(b)
            bounds_wall[name].append(bw)
            rates[name].append(rate)
            fractions[name].append(rate / b if rate else None)
            # Load-free: the pipeline's own CPU per step against the stages' sum (the bound's cost).
            pipe = st[name]["cpu_ns_per_step"]["median"]
            pipeline_ns[name].append(pipe)
            cpu_fractions[name].append(cores * 1e9 / b / pipe if pipe else None)
        log("    " + ", ".join(f"{k} {ns_cpu[k]:.0f}" for k in STAGES) + " CPU ns/step; fraction of the bound "
            + ", ".join(f"{k} {v[-1]:.2f}" for k, v in fractions.items() if v[-1] is not None))
    keys = list(passes[0]["cpu_s"])
    ns = {k: {"cpu": summary(p["cpu_s"][k] / p["steps"] * 1e9 for p in passes),
              "wall": summary(p["wall_s"][k] / p["steps"] * 1e9 for p in passes)} for k in keys}
    return {"steps": passes[0]["steps"], "n0": n0, "cores": cores, "ns_per_step": ns, "passes": passes,
            "bound": {k: summary(v) for k, v in bounds.items()},
            "bound_wall": {k: summary(v) for k, v in bounds_wall.items()},
            "steady_rate": {k: summary(v) for k, v in rates.items()},
            "fraction": {k: summary(v) for k, v in fractions.items()},
            "pipeline_cpu_ns_per_step": {k: summary(v) for k, v in pipeline_ns.items()},
            "cpu_fraction": {k: summary(v) for k, v in cpu_fractions.items()},
            "bytes_per_step": {k: passes[0][f"{k}_bytes_per_step"] for k in ("text", "gzip", "parquet")},
            "load": [passes[0]["load"][0], loadavg()]}


def paired(old: Path, steps: int, pairs: int, log=print) -> dict:
    """Stage passes of an old checkout (it must have this module) and this one, alternating; CPU
    ns per step of each stage, and new / old per pair."""
    import subprocess

    new = Path(__file__).resolve().parent.parent
    runs = {"old": [], "new": []}
    load0 = loadavg()
    for i in range(pairs):
        for side in ("old", "new") if i % 2 == 0 else ("new", "old"):
            ps = stage_pass(steps, old if side == "old" else new)
            runs[side].append({k: v / ps["steps"] * 1e9 for k, v in ps["cpu_s"].items()})
            log(f"    {side}: " + ", ".join(f"{k} {runs[side][-1][k]:.0f}" for k in STAGES) + " CPU ns/step")

    def rev(root):
        return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()

    keys = list(runs["old"][0])
    return {"steps": steps, "pairs": pairs, "old": str(old), "old_commit": rev(old), "new_commit": rev(new),
            "load": [load0, loadavg()], "runs": runs,
            "cpu_ns_per_step": {k: {"old": summary(r[k] for r in runs["old"]), "new": summary(r[k] for r in runs["new"]),
                                    "new_over_old": summary(b[k] / a[k] if a[k] else None
                                                            for a, b in zip(runs["old"], runs["new"]))} for k in keys}}


def main(argv=None):
    import argparse

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"]:
        print(json.dumps(_child(json.loads(argv[1]))))
        return 0
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_stages", description="stage passes, old vs new")
    ap.add_argument("--old", type=Path, required=True, help="checkout of the old code (with this module)")
    ap.add_argument("--steps", type=int, default=5_000_000)
    ap.add_argument("--pairs", type=int, default=3)
    a = ap.parse_args(argv)
    res = paired(a.old.resolve(), a.steps, a.pairs)
    from .suite import RESULTS

    path = RESULTS / f"stages-paired-{time.strftime('%Y-%m-%d-%H%M')}.json"
    path.write_text(json.dumps({"command": "python -m benchmarks.bench_stages " + " ".join(argv), **res}, indent=1) + "\n")
    for k, v in res["cpu_ns_per_step"].items():
        print(f"{k:12s} old {v['old']['median']:6.0f}  new {v['new']['median']:6.0f}  new/old "
              f"{v['new_over_old']['median']:.3f} ({v['new_over_old']['min']:.3f}-{v['new_over_old']['max']:.3f}) CPU ns/step")
    print(f"load {res['load']}; written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
