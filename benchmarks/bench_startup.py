"""Start-up figures (issue 17), whole processes, ours and the reference alternating.

Runbook demo (2 episodes, seed 100, 8x8) warm, ours vs the reference (``benchmarks.reference``
installs it); ``import plume_capture.capture``; ``plume-nav-capture --help``; a 100-point sweep of
tiny runs; with an empty Numba cache, the demo and a compiled run (20 episodes 32x32, with its one-line
notice). Medians and ranges of ``--repeats`` runs each; the machine may be shared (say so).

    python -m benchmarks.bench_startup [--repeats 10] [--sweep-repeats 3] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .reference import ensure_reference, ref_args
from .suite import RESULTS, loadavg, summary

BIN = Path(sys.executable).parent


def _timed(argv: list, env: dict | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, timeout=600, env=env)
    return time.perf_counter() - t0


def measure(repeats: int = 10, sweep_repeats: int = 3, reference: bool = True) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    ref, why = ensure_reference(log=lambda *_: None) if reference else (None, "--skip-reference")
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
        cold_demo, cold_big, notice = [], [], []
        for i in range(3):  # empty Numba cache: the demo (tiny: interpreted), then a compiled run
            env = {**os.environ, "PLUME_CAPTURE_CACHE": str(tmp / f"cache{i}")}
            env.pop("NUMBA_CACHE_DIR", None)
            cold_demo.append(_timed([str(BIN / "plume-nav-capture"), "--output", str(tmp / "cold"), *demo], env))
            t0 = time.perf_counter()
            r = subprocess.run([str(BIN / "plume-nav-capture"), "--output", str(tmp / "cold"), "--experiment", "big",
                                "--episodes", "20", "--grid", "32x32", "--quiet"], env=env, check=True,
                               capture_output=True, text=True, timeout=600)
            cold_big.append(time.perf_counter() - t0)
            notice.append(next((ln for ln in r.stderr.splitlines() if "compiling kernels once" in ln), None))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res = {"demo_ours_s": summary(ours), "demo_reference_s": summary(theirs) if theirs else f"skipped: {why}",
           "import_capture_s": summary(imports), "help_s": summary(helps), "sweep100_s": summary(sweep),
           "demo_empty_cache_s": summary(cold_demo), "compiled_run_empty_cache_s": summary(cold_big),
           "compile_notice": notice,
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
