"""End-to-end capture throughput on a movie plume (steps/s), JSON Lines .gz output.

    python -m benchmarks.bench_movie [--episodes 10000] [--engine ray] [--repeat 2] [--static] [--json]

Writes a synthetic 128x128x200 puff movie (``plume_capture.sim.synth``) unless ``--movie PATH`` is
given, then runs ``--repeat`` captures on one Ray instance (``capture_many``). Reported per run:
``engine_steps_per_s`` = steps / the capture's own wall time (pool start, kernels, encoding,
writing, finalize; Ray start-up excluded) and ``total_steps_per_s`` = steps / the whole call
including ``ray.init`` (shared by the repeats). ``--static`` also runs the static Gaussian plume
on the same grid for comparison.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from plume_capture.capture import capture_many
from plume_capture.sim.synth import make_movie


def config(out: str, plume: str, movie: str, episodes: int, max_steps: int, engine: str, actors, grid) -> dict:
    cfg = {"output": out, "experiment": f"bench-{plume}", "episodes": episodes, "seed": 0,
           "env": {"plume": plume, "max_steps": max_steps, "grid_size": list(grid)},
           "engine": {"kind": engine, "num_actors": actors, "quiet": True}}
    if plume == "movie":
        cfg["movie"] = {"path": movie, "step_policy": "wrap"}
    return cfg


def run(plume, args, movie, out, grid) -> list[dict]:
    cfgs = [config(out, plume, movie, args.episodes, args.max_steps, args.engine, args.num_actors, grid)
            for _ in range(args.repeat)]
    t0 = time.perf_counter()
    results = capture_many(cfgs)
    total = time.perf_counter() - t0
    rows = []
    for r in results:
        files = sorted(p.name for p in r.run_dir.iterdir())
        size = sum(p.stat().st_size for p in r.run_dir.iterdir())
        rows.append({"plume": plume, "engine": r.engine, "steps": r.steps, "episodes": r.episodes,
                     "wall_s": round(r.wall_s, 3), "engine_steps_per_s": round(r.steps_per_s),
                     "output_bytes": size, "files": files})
        if not args.keep:
            shutil.rmtree(r.run_dir)
    steps = sum(r.steps for r in results)
    for row in rows:
        row["total_steps_per_s"] = round(steps / total)  # all repeats incl. Ray start-up
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=10_000)
    ap.add_argument("--max-steps", type=int, default=1000)
    ap.add_argument("--engine", choices=("ray", "local", "auto"), default="ray")
    ap.add_argument("--num-actors", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--movie", default=None, help="an existing movie (default: a synthetic one)")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--size", type=int, default=128, help="synthetic movie width = height")
    ap.add_argument("--static", action="store_true", help="also run the static Gaussian plume")
    ap.add_argument("--output", default=None, help="run directories go here (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the run directories")
    ap.add_argument("--json", action="store_true", help="one JSON object per run")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="bench-movie-"))
    try:
        out = args.output or str(tmp / "runs")
        t0 = time.perf_counter()
        movie = args.movie or str(make_movie(tmp / "puff.npy", frames=args.frames, height=args.size,
                                             width=args.size, seed=0))
        gen_s = time.perf_counter() - t0
        from plume_capture.sim.movie import describe_movie

        info = describe_movie(movie, "wrap")
        grid = (info["shape"][2], info["shape"][1])
        if not args.json:
            print(f"movie {info['shape']} ({info['format']}, identity {info['identity'][:12]}…), "
                  f"{'generated' if not args.movie else 'given'} in {gen_s:.2f} s")
        rows = run("movie", args, movie, out, grid)
        if args.static:
            rows += run("static", args, movie, out, grid)
        for row in rows:
            if args.json:
                print(json.dumps(row))
            else:
                print(f"{row['plume']:6s} {row['engine']:5s} {row['steps']:>11,} steps  {row['wall_s']:7.2f} s  "
                      f"{row['engine_steps_per_s']:>11,} steps/s (capture)  "
                      f"{row['total_steps_per_s']:>11,} steps/s (incl. Ray start)  "
                      f"{row['output_bytes'] / 2**20:7.1f} MiB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
