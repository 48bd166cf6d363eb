"""Export speed and memory (issue 16: >= 2M steps/s RLlib/HF, >= 0.5M Minari, peak RSS <= 1 GB
and flat in run length, on a >= 10M-step run).

    python -m benchmarks.bench_export                       # 1M and 10M steps, all targets
    python -m benchmarks.bench_export --steps 2000000 --targets rllib

Runs are real captures (random policy, 256x256 grid, max_steps 1000, JSON Lines + Parquet),
cached under ``benchmarks/.cache/export-<steps>``. Each export runs in a fresh subprocess so its
peak RSS (``ru_maxrss``) is its own; the child reports the wall time of the whole export and of
the validation that runs beside the conversion (a thread; the export is renamed into place only
when it passed; a run with Parquet is validated on its Parquet records, its JSON Lines by size and
sha256). For attribution each target also runs once with validation skipped ("conversion": the
same export minus validation), and once with ``--full-validation`` (the JSON Lines parsed too:
what a run without Parquet costs).
Results: ``benchmarks/results/export-<date>-<HHMM>.json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"

_CHILD = r"""
import json, resource, sys, time
from plume_capture.export import TARGETS, reader
from plume_capture.readback import validate
target, run_dir, out, mode = sys.argv[1:5]
spent = {"validate_s": 0.0}
orig = validate.validate_run_artifacts
def timed(*a, **k):
    t = time.perf_counter(); r = orig(*a, **k); spent["validate_s"] += time.perf_counter() - t; return r
def skipped(*a, **k):  # conversion alone, for attribution only
    return {"ok": True, "counts": counts}
counts = json.load(open(run_dir + "/run.json"))["extra"]["counts"]
reader.validate_run_artifacts = skipped if mode == "convert-only" else timed
t = time.perf_counter()
TARGETS[target](run_dir, out, full_validation=mode == "full-validation")
wall = time.perf_counter() - t
print(json.dumps({"wall_s": wall, **spent,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_run(steps: int) -> Path:
    from plume_capture.capture import capture
    from plume_capture.config import complete_config

    root = CACHE / f"export-{steps}"
    runs = sorted((root / "bench").glob("run-*[0-9a-f]")) if root.exists() else []
    if runs and (runs[-1] / "run.json").exists():
        return runs[-1]
    shutil.rmtree(root, ignore_errors=True)
    cfg = complete_config({"output": str(root), "experiment": "bench", "episodes": max(1, steps // 1000),
                           "seed": 7, "parquet": True,
                           "env": {"grid_size": [256, 256], "max_steps": 1000, "goal_radius": 0.5},
                           "policy": {"name": "random"}, "engine": {"quiet": True}})
    return capture(cfg).run_dir


def measure(target: str, run_dir: Path, mode: str) -> dict:
    tmp = tempfile.mkdtemp(prefix="bench-export-")
    try:
        out = subprocess.run([sys.executable, "-c", _CHILD, target, str(run_dir), os.path.join(tmp, "out"), mode],
                             check=True, capture_output=True, text=True)
        rec = json.loads(out.stdout.strip().splitlines()[-1])
        size = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {**rec, "out_mb": size / 2**20}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_export")
    ap.add_argument("--steps", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--targets", nargs="+", default=["rllib", "hf", "minari"])
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    from plume_capture.readback.load import load_run

    rows = []
    for n in args.steps:
        run_dir = make_run(n)
        meta = json.loads((run_dir / "run.json").read_text())
        n_steps = meta["extra"]["counts"]["steps"]
        print(f"{n_steps:,} steps, {meta['extra']['engine'].get('layout', 'one_file')} layout, Parquet: "
              f"{sorted(set(k.split('/')[0] for k in meta['extra']['files'] if 'parquet' in k))}", flush=True)
        for target in args.targets:
            r = measure(target, run_dir, "full")
            conv = measure(target, run_dir, "convert-only")
            fv = measure(target, run_dir, "full-validation")
            r.update(full_validation_wall_s=fv["wall_s"], full_validation_steps_per_s=n_steps / fv["wall_s"],
                     full_validation_peak_rss_mb=fv["peak_rss_mb"])
            r.update(target=target, steps=n_steps, episodes=meta["extra"]["counts"]["episodes"],
                     steps_per_s=n_steps / r["wall_s"], convert_wall_s=conv["wall_s"],
                     convert_peak_rss_mb=conv["peak_rss_mb"],
                     convert_steps_per_s=n_steps / conv["wall_s"])
            rows.append(r)
            print(json.dumps(r), flush=True)
    date = dt.datetime.now().strftime("%Y-%m-%d-%H%M")
    res = {"date": date, "command": "python -m benchmarks.bench_export " + " ".join(argv or sys.argv[1:]),
           "cpus": os.cpu_count(), "loadavg": os.getloadavg(), "rows": rows,
           "note": "shared 2-core machine (other agents running): figures are noisy"}
    os.makedirs(args.out, exist_ok=True)
    base = Path(args.out) / f"export-{date}"
    base.with_suffix(".json").write_text(json.dumps(res, indent=1))
    lines = ["| target | steps | wall s | of which validating s | steps/s | peak RSS MB | conversion alone s | "
             "conversion steps/s | its peak RSS MB | --full-validation steps/s | its peak RSS MB | output MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['target']} | {r['steps']:,} | {r['wall_s']:.1f} | {r['validate_s']:.1f} | "
              f"{r['steps_per_s'] / 1e6:.2f}M | {r['peak_rss_mb']:.0f} | {r['convert_wall_s']:.1f} | "
              f"{r['convert_steps_per_s'] / 1e6:.2f}M | {r['convert_peak_rss_mb']:.0f} | "
              f"{r['full_validation_steps_per_s'] / 1e6:.2f}M | {r['full_validation_peak_rss_mb']:.0f} | {r['out_mb']:.0f} |"
              for r in rows]
    md = f"# Export benchmark {date}\n\n`{res['command']}` (load avg {res['loadavg']}; {res['note']})\n\n" \
         + "\n".join(lines) + "\n"
    base.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
