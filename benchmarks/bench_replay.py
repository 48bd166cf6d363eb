"""Replay against capture: ``replay_run`` on a captured run, both timed in child processes.

    python -m benchmarks.bench_replay [--steps 1000000] [--threads 1]

Captures one run (64x64, max_steps 1000, random policy, in-process engine with ``--threads``
workers; cached under $TMPDIR), then times ``replay_run`` on it in a child process (warm kernel
cache, one thread). Capture's time is run.json's ``extra.timing.wall_s`` (records made, encoded and
written) and its process's CPU time (start-up included); replay's is the whole call (records
decoded, re-simulated and compared) and its process's CPU time. The machine's load makes wall
times noisy; CPU times are the steadier comparison. Results:
benchmarks/results/replay-<date>-<time>-<host>.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
CACHE = Path(tempfile.gettempdir()) / "plume-bench-replay"

_CHILD = r"""
import json, resource, sys, time
from plume_capture.readback.replay import replay_run
t = time.perf_counter()
res = replay_run(sys.argv[1])
wall = time.perf_counter() - t
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"ok": res["ok"], "steps_checked": res["steps_checked"], "wall_s": wall,
                  "cpu_s": ru.ru_utime + ru.ru_stime, "maxrss_mb": ru.ru_maxrss / 1024}))
"""


def capture(steps: int, threads: int) -> tuple[Path, float]:
    """A fresh run and the capture process's CPU seconds."""
    root = CACHE / f"cap-{steps}-{threads}"
    shutil.rmtree(root, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "plume_capture", "--output", str(root), "--experiment", "r",
                    "--episodes", str(steps // 950 + 1), "--max-steps", "1000", "--quiet",
                    "engine.kind=local", f"engine.threads={threads}"], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return sorted(root.glob("r/run-*/run.json"))[0].parent, cpu


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--label", default="", help="a note stored with the result (e.g. before/after)")
    args = ap.parse_args(argv)
    run_dir, cap_cpu = capture(args.steps, args.threads)
    meta = json.loads((run_dir / "run.json").read_text())
    load0 = os.getloadavg()[0]
    res = subprocess.run([sys.executable, "-c", _CHILD, str(run_dir)], check=True, capture_output=True, text=True)
    rep = json.loads(res.stdout.strip().splitlines()[-1])
    cap = meta["extra"]["timing"]
    doc = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "host": socket.gethostname(), "cores": os.cpu_count(), "label": args.label,
           "command": "python -m benchmarks.bench_replay " + " ".join(argv or sys.argv[1:]),
           "run": {"steps": meta["extra"]["counts"]["steps"], "episodes": meta["extra"]["counts"]["episodes"]},
           "capture": {"wall_s": cap["wall_s"], "steps_per_s": cap["steps_per_s"], "threads": args.threads,
                       "process_cpu_s": cap_cpu},
           "replay": {**rep, "steps_per_s": rep["steps_checked"] / rep["wall_s"]},
           "replay_over_capture": rep["wall_s"] / cap["wall_s"],
           "replay_cpu_over_capture_process_cpu": rep["cpu_s"] / cap_cpu,
           "load_before": load0, "load_after": os.getloadavg()[0],
           "note": "shared 2-core machine: other engineers' work ran at the same time"}
    print(json.dumps({k: doc[k] for k in ("run", "capture", "replay", "replay_over_capture",
                                                 "replay_cpu_over_capture_process_cpu")}, indent=1))
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y-%m-%d-%H%M")
    out = RESULTS / f"replay-{stamp}-{socket.gethostname()}.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
