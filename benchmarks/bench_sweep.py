"""A sweep of small runs: its points sharing the workers (``capture_many``: in-process threads, or
Ray actors) vs the same points run one after another (issue 14, goal 5).

Each point has fewer shards than there are threads (one shard of 8 episodes, 64x64, max 1000
steps), the case where running points one after another leaves threads idle. Shared and
one-after-another are measured alternately in one process (warm Numba cache).

    python -m benchmarks.bench_sweep [--points 16] [--repeats 5] [--threads 2] [--engine ray]

On Ray one local instance is started first (so neither side pays Ray's start-up); one after another,
each point starts and stops its own actors, as a sweep did before points shared them.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .suite import RESULTS, loadavg, summary


def measure(points: int, repeats: int, threads: int, engine: str = "local") -> dict:
    from plume_capture.capture import capture, capture_many
    from plume_capture.config import complete_config

    tmp = Path(tempfile.mkdtemp(prefix="bench-sweep-"))

    def cfgs(tag):
        return [complete_config({"output": str(tmp / tag), "episodes": 8, "seed": 100 + i, "env": {
            "grid_size": [64, 64], "max_steps": 1000}, "engine": eng}) for i in range(points)]

    eng = ({"kind": "local", "threads": threads, "quiet": True} if engine == "local"
           else {"kind": "ray", "num_actors": threads, "quiet": True})
    if engine == "ray":
        from plume_capture.capture.on_ray import ray_init

        ray_init(None)

    shared, sequential, steps = [], [], []
    try:
        capture(cfgs("warm")[0])  # compile/load the kernels once
        for r in range(repeats):
            for mode in (("shared", "sequential") if r % 2 == 0 else ("sequential", "shared")):
                t0 = time.perf_counter()
                if mode == "shared":
                    res = capture_many(cfgs(f"s{r}"))
                    shared.append(time.perf_counter() - t0)
                    steps.append(sum(x.steps for x in res))
                else:
                    for c in cfgs(f"q{r}"):
                        capture(c)
                    sequential.append(time.perf_counter() - t0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"points": points, "engine": engine, "workers": threads, "steps_per_sweep": summary(steps),
            "shared_s": summary(shared), "sequential_s": summary(sequential),
            "speedup": summary([b / a for a, b in zip(shared, sequential)]), "loadavg": loadavg()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_sweep")
    ap.add_argument("--points", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="worker threads, or Ray actors")
    ap.add_argument("--engine", choices=("local", "ray"), default="local")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    res = measure(a.points, a.repeats, a.threads, a.engine)
    res["command"] = "python -m benchmarks.bench_sweep " + " ".join(sys.argv[1:] if argv is None else argv)
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"sweep-{a.engine}-{time.strftime('%Y-%m-%d-%H%M')}.json"
    path.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps({k: (v["median"] if isinstance(v, dict) and "median" in v else v) for k, v in res.items()},
                     indent=2))
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
