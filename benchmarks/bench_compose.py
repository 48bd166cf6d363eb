"""Composing a sweep's configs (issue 28): the value-override step of ``config.compose`` (Hydra's own
step on a cached base composition, :func:`plume_capture.config.compose.hydra_apply_value_overrides`)
against Hydra's public ``compose`` per point. Each mode in fresh processes, alternating.

    python -m benchmarks.bench_compose [--points 100] [--repeats 3] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from .suite import RESULTS, loadavg, summary

CHILD = r"""
import json, sys, time
from plume_capture.config import compose as C
mode, points = sys.argv[1], int(sys.argv[2])
root = C.default_config_root() / "data_capture"
ovs = [[f"seed={i}", "episodes=2", "env.grid_size=[8,8]"] for i in range(points)]
from hydra import compose, initialize_config_dir  # imported before timing, in both modes

if mode == "ours":
    fn = C.compose_config
else:
    def fn(o):
        with initialize_config_dir(config_dir=str(root), version_base=None):
            return compose(config_name="config", overrides=o)
times = []
for o in ovs:
    t = time.perf_counter(); fn(o); times.append(time.perf_counter() - t)
print(json.dumps(times))
"""


def measure(points: int = 100, repeats: int = 3) -> dict:
    runs = {"ours": [], "hydra_compose": []}
    for _ in range(repeats):
        for mode in runs:
            out = subprocess.run([sys.executable, "-c", CHILD, mode, str(points)], check=True,
                                 capture_output=True, text=True, timeout=600).stdout
            runs[mode].append(json.loads(out))
    return {mode: {"first_s": summary([t[0] for t in ts]), "next_point_s": summary([t for r in ts for t in r[1:]]),
                   "all_points_s": summary([sum(t) for t in ts])} for mode, ts in runs.items()}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_compose")
    ap.add_argument("--points", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    import hydra

    doc = {"benchmark": "compose", "points": args.points, "repeats": args.repeats, "hydra": hydra.__version__,
           "loadavg_before": loadavg(), **measure(args.points, args.repeats), "loadavg_after": loadavg()}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"compose-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    for mode in ("ours", "hydra_compose"):
        m = doc[mode]
        print(f"{mode}: first {m['first_s']['median'] * 1e3:.0f} ms, "
              f"next point {m['next_point_s']['median'] * 1e3:.1f} ms, "
              f"{args.points} points {m['all_points_s']['median']:.2f} s (min {m['all_points_s']['min']:.2f}, "
              f"max {m['all_points_s']['max']:.2f})")
    print(path)
    return doc


if __name__ == "__main__":
    main()
