"""Old code vs new code, paired: each figure is measured alternately with the two checkouts
(``PYTHONPATH`` selects the package), so load on a shared machine hits both alike; ratios new/old
are reported per pair.

    python -m benchmarks.paired --old /path/to/old/checkout [--repeats 5] [--episodes 10000]

Figures: the runbook demo (whole process); end-to-end capture in-process on 128x128, max 500 steps,
JSON Lines and JSON Lines + Parquet (steps/s from the run's own run.json, whole process wall too,
and the process's CPU time per step: user + system of all its threads);
validation of the same run (steps/s). Results: ``benchmarks/results/paired-<date>.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .suite import RESULTS, loadavg, machine, summary

NEW = Path(__file__).resolve().parents[1]
_last_cpu = 0.0  # CPU seconds of the last _capture's process


def _env(root: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root)
    env.pop("PLUME_CAPTURE_DEBUG", None)
    return env


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _capture(root: Path, out: Path, args: list) -> tuple[float, Path]:
    global _last_cpu
    t0, c0 = time.perf_counter(), _children_cpu()
    subprocess.run([sys.executable, "-m", "plume_capture", "--output", str(out), "--quiet", *args],
                   check=True, capture_output=True, timeout=3600, env=_env(root), cwd=out.parent)
    wall = time.perf_counter() - t0
    _last_cpu = _children_cpu() - c0  # the capture process's CPU time, all its threads
    (run,) = [p for d in out.iterdir() for p in d.iterdir() if not p.name.startswith(".")]
    return wall, run


def _validate(root: Path, run: Path) -> float:
    code = ("import json, sys, time; from plume_capture import validate_run_artifacts as v; t = time.perf_counter(); "
            "r = v(sys.argv[1]); print(json.dumps([r['ok'], time.perf_counter() - t]))")
    done = subprocess.run([sys.executable, "-c", code, str(run)], check=True, capture_output=True, text=True,
                          timeout=3600, env=_env(root))
    ok, seconds = json.loads(done.stdout.strip().splitlines()[-1])
    assert ok, f"{run} does not validate with {root}"
    return seconds


def measure(old: Path, repeats: int, episodes: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-paired-"))
    demo = ["--experiment", "demo", "--episodes", "2", "--seed", "100", "--grid", "8x8"]
    big = ["--episodes", str(episodes), "--grid", "128x128", "--max-steps", "500", "--seed", "3",
           "--engine", "local"]
    rows: dict = {}

    def add(name, side, value):
        rows.setdefault(name, {"old": [], "new": []})[side].append(value)

    try:
        for side, root in (("old", old), ("new", NEW)):  # warm-up (fills each side's Numba cache), not counted
            d = tmp / f"warm-{side}"
            d.mkdir()
            for extra in ([], ["--parquet"]):
                _, run = _capture(root, d / f"w{len(extra)}", ["--episodes", "50", "--grid", "128x128",
                                                               "--max-steps", "500", "--engine", "local", *extra])
            _validate(root, run)
        for i in range(repeats):
            for side, root in (("old", old), ("new", NEW)) if i % 2 == 0 else (("new", NEW), ("old", old)):
                d = tmp / f"{side}{i}"
                d.mkdir()
                wall, _ = _capture(root, d / "demo", demo)
                add("runbook demo, whole process (s)", side, wall)
                for label, extra in (("JSON Lines", []), ("JSON Lines + Parquet", ["--parquet"])):
                    wall, run = _capture(root, d / label.replace(" ", "").replace("+", "p"), [*big, *extra])
                    meta = json.loads((run / "run.json").read_text())
                    steps = meta["extra"]["counts"]["steps"]
                    add(f"capture {label}, in-process (M steps/s, engine timing)", side,
                        meta["extra"]["timing"]["steps_per_s"] / 1e6)
                    add(f"capture {label}, whole process (M steps/s)", side, steps / wall / 1e6)
                    # steadier than wall time on a machine shared with other work
                    add(f"capture {label}, whole process CPU per step (ns, all threads)", side, _last_cpu / steps * 1e9)
                    if not extra:
                        add("validation of that run (M steps/s)", side, steps / _validate(root, run) / 1e6)
                shutil.rmtree(d)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = {}
    for name, sides in rows.items():
        out[name] = {"old": summary(sides["old"]), "new": summary(sides["new"]),
                     "new_over_old": summary([b / a for a, b in zip(sides["old"], sides["new"])])}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.paired")
    ap.add_argument("--old", type=Path, required=True, help="checkout of the old code (its repository root)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--episodes", type=int, default=10000, help="episodes of the 128x128 capture (~4.9M steps)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    old_commit = subprocess.run(["git", "-C", str(a.old), "rev-parse", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
    new_commit = subprocess.run(["git", "-C", str(NEW), "rev-parse", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "-C", str(NEW), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True).stdout.strip())
    load_before = loadavg()
    t0 = time.time()
    figures = measure(a.old, a.repeats, a.episodes)
    doc = {"command": "python -m benchmarks.paired " + " ".join(argv if argv is not None else sys.argv[1:]),
           "old_commit": old_commit, "new_commit": new_commit, "new_dirty": dirty, "machine": machine(),
           "loadavg_before": load_before, "loadavg_after": loadavg(), "minutes": (time.time() - t0) / 60,
           "figures": figures}
    a.out.mkdir(parents=True, exist_ok=True)
    stem = a.out / f"paired-{time.strftime('%Y-%m-%d-%H%M')}"
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [f"## Paired old vs new, {time.strftime('%Y-%m-%d %H:%M')}", "",
             f"`{doc['command']}` · old `{old_commit[:10]}` · new `{new_commit[:10]}`{' (dirty)' if dirty else ''} · "
             f"load average before {load_before}, after {doc['loadavg_after']} · {doc['minutes']:.1f} min", "",
             "Median (min–max) of the repeats, old and new measured alternately; new/old per pair.", "",
             "| figure | old | new | new / old |", "|---|---|---|---|"]

    def fmt(s):
        return f"{s['median']:.3g} ({s['min']:.3g}–{s['max']:.3g})"

    for name, f in figures.items():
        lines.append(f"| {name} | {fmt(f['old'])} | {fmt(f['new'])} | {fmt(f['new_over_old'])} |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
