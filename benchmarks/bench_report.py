"""Report benchmark (issue 19): ``plume-nav-report`` on a large real run, wall time and peak RSS.

    python -m benchmarks.bench_report [--steps 50000000] [--keep]

Captures the run once with ``plume-nav-capture`` (128x128, max_steps 1000, random policy, JSON
Lines + Parquet; cached under $TMPDIR), then times the report as a child process twice: reading
the Parquet files (the default when present) and from the JSON Lines only (Parquet hidden by a
directory of symlinks). Peak RSS is the child's ru_maxrss. Results: benchmarks/results/
report-<date>-<host>.json. Target: <= 30 s and <= 1 GB for a >= 50M-step run.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
CACHE = Path(tempfile.gettempdir()) / "plume-bench-report"

_CHILD = r"""
import json, resource, sys, time
t = time.perf_counter()
from plume_capture.cli.report import main
rc = main([sys.argv[1], "-o", sys.argv[2]])
wall = time.perf_counter() - t
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"rc": rc, "wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime,
                  "maxrss_mb": ru.ru_maxrss / 1024}))
"""


def capture(steps: int) -> Path:
    episodes = steps // 950 + 1  # random-policy episodes average ~967 of their 1000 steps
    root = CACHE / f"cap-{steps}"
    runs = sorted(root.glob("big/run-*/run.json")) if root.exists() else []
    if runs:
        return runs[0].parent
    shutil.rmtree(root, ignore_errors=True)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "plume_capture", "--output", str(root),
                    "--experiment", "big", "--episodes", str(episodes), "--grid", "128x128",
                    "--max-steps", "1000", "--parquet", "--quiet"], check=True)
    print(f"captured {episodes} episodes in {time.perf_counter() - t:.1f} s", flush=True)
    return sorted(root.glob("big/run-*/run.json"))[0].parent


def jsonl_view(run_dir: Path) -> Path:
    """The run without its Parquet files: symlinks to the JSON Lines, and a run.json that no longer
    lists the Parquet (the report checks every listed file's size and sha256)."""
    view = CACHE / "jsonl-view" / run_dir.name
    shutil.rmtree(view.parent, ignore_errors=True)
    view.mkdir(parents=True)
    for p in run_dir.iterdir():
        if not p.name.endswith(".parquet") and p.name != "run.json":
            (view / p.name).symlink_to(p)
    meta = json.loads((run_dir / "run.json").read_text())
    meta["extra"]["files"] = {k: v for k, v in meta["extra"]["files"].items() if ".parquet" not in k}
    (view / "run.json").write_text(json.dumps(meta))
    return view


def report(run_dir: Path) -> dict:
    out = CACHE / "report.html"
    load0 = os.getloadavg()[0]
    res = subprocess.run([sys.executable, "-c", _CHILD, str(run_dir), str(out)], check=True,
                         capture_output=True, text=True)
    r = json.loads(res.stdout.strip().splitlines()[-1])
    r["load_before"], r["load_after"] = load0, os.getloadavg()[0]
    return r


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=50_000_000)
    ap.add_argument("--keep", action="store_true", help="keep the captured run for next time")
    args = ap.parse_args(argv)
    run_dir = capture(args.steps)
    meta = json.loads((run_dir / "run.json").read_text())
    steps = meta["extra"]["counts"]["steps"]
    if steps < args.steps:
        print(f"note: the run has {steps:,} steps, fewer than the {args.steps:,} asked for")
    size = {p.name: p.stat().st_size for p in run_dir.iterdir()}
    rows = {}
    for label, d in (("parquet", run_dir), ("jsonl", jsonl_view(run_dir))):
        r = report(d)
        rows[label] = r
        print(f"{label}: {steps:,} steps: {r['wall_s']:.1f} s wall, CPU {r['cpu_s']:.1f} s, "
              f"peak RSS {r['maxrss_mb']:.0f} MB, rc {r['rc']}, load {r['load_before']:.1f} -> "
              f"{r['load_after']:.1f}", flush=True)
    doc = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "host": socket.gethostname(), "cores": os.cpu_count(),
           "command": "python -m benchmarks.bench_report " + " ".join(argv or sys.argv[1:]),
           "run": {"steps": steps, "episodes": meta["extra"]["counts"]["episodes"],
                   "bytes": size, "capture_steps_per_s": meta["extra"]["timing"]["steps_per_s"]},
           "report": rows,
           "note": "shared 2-core machine: other agents' work ran at the same time"}
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"report-{dt.date.today().isoformat()}-{socket.gethostname()}.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"results: {out}")
    if not args.keep:
        shutil.rmtree(CACHE, ignore_errors=True)


if __name__ == "__main__":
    main()
