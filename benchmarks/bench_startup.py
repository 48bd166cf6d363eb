"""Start-up figures (issue 17), whole processes, ours and the reference alternating.

Runbook demo (2 episodes, seed 100, 8x8) warm, ours vs the reference (``benchmarks.reference``
installs it); ``import plume_capture.capture``; ``plume-nav-capture --help``; a 100-point sweep of
tiny runs. Medians and ranges of ``--repeats`` runs each; the machine may be shared (say so).

    python -m benchmarks.bench_startup [--repeats 10] [--sweep-repeats 3] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .reference import ensure_reference, ref_args
from .suite import RESULTS, loadavg, summary

BIN = Path(sys.executable).parent


def _timed(argv: list) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, timeout=600)
    return time.perf_counter() - t0


def measure(repeats: int = 10, sweep_repeats: int = 3) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    ref, why = ensure_reference(log=lambda *_: None)
    ours, theirs, imports, helps = [], [], [], []
    demo = ["--experiment", "demo", "--episodes", "2", "--seed", "100", "--grid", "8x8", "--quiet"]
    try:
        for i in range(repeats):
            ours.append(_timed([str(BIN / "plume-nav-capture"), "--output", str(tmp / "ours"), *demo]))
            if ref is not None:
                theirs.append(_timed([str(ref), *ref_args(tmp / "ref", 2, grid="8x8", max_steps=1000,
                                                           action_type="oriented", seed=100, parquet=False)]))
            imports.append(_timed([sys.executable, "-c", "import plume_capture.capture"]))
            helps.append(_timed([str(BIN / "plume-nav-capture"), "--help"]))
        sweep = [_timed([str(BIN / "plume-nav-capture"), "--output", str(tmp / "sweep"), "--experiment", "sw",
                         "--quiet", "-m", "seed=range(0,100)", "episodes=2", "env.grid_size=[8,8]"])
                 for _ in range(sweep_repeats)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res = {"demo_ours_s": summary(ours), "demo_reference_s": summary(theirs) if theirs else f"skipped: {why}",
           "import_capture_s": summary(imports), "help_s": summary(helps), "sweep100_s": summary(sweep),
           "repeats": repeats, "loadavg": loadavg()}
    if theirs:
        res["demo_ratio_ours_over_reference"] = summary([a / b for a, b in zip(ours, theirs)])
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_startup")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--sweep-repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    res = measure(a.repeats, a.sweep_repeats)
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"startup-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
