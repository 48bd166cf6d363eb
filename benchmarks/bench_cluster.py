"""The cost model of docs/cluster.md against a 3-node local cluster (``ray.cluster_utils.Cluster``,
head + 2 nodes, 1 CPU each, node IP 127.0.0.2): capture throughput with 1, 2 and 3 actors (one per
node), the driver's CPU per step, and the model's prediction
``min(N * r, 1 / c_driver, B / b)`` with ``r`` the one-actor rate measured first.

    python -m benchmarks.bench_cluster [--steps 10000000] [--parquet]

Writes ``benchmarks/results/cluster-<date>.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .suite import RESULTS, loadavg


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_cluster")
    ap.add_argument("--steps", type=int, default=10_000_000)
    ap.add_argument("--parquet", action="store_true")
    a = ap.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray.cluster_utils import Cluster

    from plume_capture.capture import capture
    from plume_capture.config import complete_config

    c = Cluster(initialize_head=True, head_node_args=dict(num_cpus=1, node_ip_address="127.0.0.2",
                                                          include_dashboard=False))
    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    rows = []
    try:
        for _ in range(2):
            c.add_node(num_cpus=1, node_ip_address="127.0.0.2")
        ray.init(address=c.address, log_to_driver=False)
        for n in (1, 2, 3):
            cfg = complete_config({"output": str(tmp / str(n)), "seed": 1, "parquet": a.parquet,
                                   "episodes": a.steps // 500, "env": {"grid_size": [128, 128], "max_steps": 500},
                                   "engine": {"kind": "ray", "num_actors": n, "quiet": True}})
            c0 = _cpu()
            res = capture(cfg)
            cpu = _cpu() - c0
            meta = json.loads((res.run_dir / "run.json").read_text())
            eng = meta["extra"]["engine"]
            nbytes = sum(f["bytes"] for f in meta["extra"]["files"].values())
            rows.append({"actors": n, "nodes": eng["nodes"], "steps": res.steps, "wall_s": res.wall_s,
                         "M_steps_per_s": res.steps / res.wall_s / 1e6, "driver_cpu_ns_per_step": cpu / res.steps * 1e9,
                         "bytes_per_step": nbytes / res.steps,
                         "written_by_workers": eng.get("shards_written_by_workers"), "shards": eng["shards"]})
            shutil.rmtree(tmp / str(n), ignore_errors=True)
            print(rows[-1], flush=True)
    finally:
        ray.shutdown()
        c.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    r1 = rows[0]["M_steps_per_s"]
    cores = os.cpu_count() or 1
    for row in rows:
        # on this machine the N one-CPU nodes share `cores` cores with the driver: the model's N*r
        # is capped by the cores there are
        row["model_M_steps_per_s"] = min(row["actors"], cores) * r1
    res = {"command": "python -m benchmarks.bench_cluster " + " ".join(sys.argv[1:] if argv is None else argv),
           "machine_cores": cores, "loadavg": loadavg(), "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"cluster-{time.strftime('%Y-%m-%d-%H%M')}.json"
    path.write_text(json.dumps(res, indent=2) + "\n")
    for row in rows:
        print(f"{row['actors']} actors on {row['nodes']} nodes: {row['M_steps_per_s']:.2f}M steps/s "
              f"(model {row['model_M_steps_per_s']:.2f}M), driver {row['driver_cpu_ns_per_step']:.1f} ns/step")
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
