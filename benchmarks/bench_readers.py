"""Reading a whole run: each documented one-call reader, wall time and peak RSS.

    python -m benchmarks.bench_readers [--steps 1000000] [--keep]

Captures one multi-shard run (64x64, max_steps 1000, random policy, JSON Lines + Parquet; cached
under $TMPDIR), then reads its steps with every reader that README.md and docs/format.md show, each
in its own child process (peak RSS is the child's ru_maxrss; the time includes importing the
library). Each child checks that it read run.json's step count. Results:
benchmarks/results/readers-<date>-<time>-<host>.json.
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
CACHE = Path(tempfile.gettempdir()) / "plume-bench-readers"

READERS = {
    "load_run (Parquet), Arrow": "from plume_capture.readback.load import load_run\n"
                                 "n = load_run(RUN).steps.num_rows",
    "load_run (Parquet), pandas": "from plume_capture.readback.load import load_run\n"
                                  "n = len(load_run(RUN).to_pandas()[0])",
    "load_run(prefer='jsonl'), Arrow": "from plume_capture.readback.load import load_run\n"
                                       "n = load_run(RUN, prefer='jsonl').steps.num_rows",
    "pandas.read_parquet": "import pandas\nn = len(pandas.read_parquet(f'{RUN}/steps.parquet'))",
    "polars.read_parquet": "import polars\nn = polars.read_parquet(f'{RUN}/steps.parquet').height",
    "pyarrow.parquet.read_table": "import pyarrow.parquet as pq\nn = pq.read_table(f'{RUN}/steps.parquet').num_rows",
    "duckdb read_parquet": "import duckdb\n"
                           "n = len(duckdb.sql(f\"SELECT * FROM read_parquet('{RUN}/steps.parquet')\").df())",
    "polars.read_ndjson (glob)": "import polars\nn = polars.read_ndjson(f'{RUN}/steps*.jsonl.gz').height",
    "duckdb read_json (glob)": "import duckdb\n"
                               "n = len(duckdb.sql(f\"SELECT * FROM read_json('{RUN}/steps*.jsonl.gz')\").df())",
    "pandas.read_json per part": "import glob, pandas\n"
                                 "n = len(pandas.concat(pandas.read_json(p, lines=True) "
                                 "for p in sorted(glob.glob(f'{RUN}/steps*.jsonl.gz'))))",
}

_CHILD = r"""
import json, resource, sys, time
t = time.perf_counter()
RUN = sys.argv[1]
exec(sys.argv[2])
wall = time.perf_counter() - t
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"rows": n, "wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "maxrss_mb": ru.ru_maxrss / 1024}))
"""


def capture(steps: int) -> Path:
    episodes = steps // 950 + 1  # random-policy episodes on 64x64 run ~all of their 1000 steps
    root = CACHE / f"cap-{steps}"
    runs = sorted(root.glob("big/run-*/run.json")) if root.exists() else []
    if runs:
        return runs[0].parent
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "plume_capture", "--output", str(root), "--experiment", "big",
                    "--episodes", str(episodes), "--max-steps", "1000", "--parquet", "--quiet",
                    "engine.kind=local"], check=True)
    return sorted(root.glob("big/run-*/run.json"))[0].parent


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--keep", action="store_true", help="keep the captured run for next time")
    args = ap.parse_args(argv)
    run_dir = capture(args.steps)
    meta = json.loads((run_dir / "run.json").read_text())
    steps = meta["extra"]["counts"]["steps"]
    parts = sorted(p.name for p in run_dir.glob("steps*.jsonl.gz"))
    rows = {}
    for label, code in READERS.items():
        load0 = os.getloadavg()[0]
        t = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", _CHILD, str(run_dir), code], capture_output=True, text=True)
        if res.returncode:
            r = {"error": res.stderr.strip().splitlines()[-1], "wall_s": time.perf_counter() - t}
        else:
            r = json.loads(res.stdout.strip().splitlines()[-1])
            assert r["rows"] == steps, (label, r["rows"], steps)
        r["load_before"], r["load_after"] = load0, os.getloadavg()[0]
        rows[label] = r
        print(f"{label:34s} {r.get('wall_s', 0):7.2f} s  {r.get('maxrss_mb', 0):7.0f} MB  {r.get('error', '')}",
              flush=True)
    doc = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "host": socket.gethostname(), "cores": os.cpu_count(),
           "command": "python -m benchmarks.bench_readers " + " ".join(argv or sys.argv[1:]),
           "run": {"steps": steps, "episodes": meta["extra"]["counts"]["episodes"], "jsonl_parts": len(parts),
                   "layout": meta["extra"]["engine"].get("layout")},
           "readers": rows,
           "note": "shared 2-core machine: other engineers' work ran at the same time; wall includes imports"}
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"readers-{dt.datetime.now().strftime('%Y-%m-%d-%H%M')}-{socket.gethostname()}.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"results: {out}")
    if not args.keep:
        shutil.rmtree(CACHE, ignore_errors=True)


if __name__ == "__main__":
    main()
