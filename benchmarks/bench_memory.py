"""Peak memory against run length with workers writing (issue 14, goal 6): the CLI as a child
process, JSON Lines + Parquet, a short and a 8x longer run on each engine; RSS and PSS summed over
the driver, the Ray workers and Ray's own processes, sampled every 100 ms (``capture_bench``).

    python -m benchmarks.bench_memory [--steps 5000000] [--factor 8]

Writes ``benchmarks/results/memory-<date>.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from . import capture_bench as cb
from .suite import RESULTS, loadavg


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_memory")
    ap.add_argument("--steps", type=int, default=5_000_000)
    ap.add_argument("--factor", type=int, default=8)
    a = ap.parse_args(argv)
    out = {"command": "python -m benchmarks.bench_memory " + " ".join(sys.argv[1:] if argv is None else argv),
           "loadavg_before": loadavg(), "engines": {}}
    for engine in ("local", "ray"):
        rows = {}
        for steps in (a.steps, a.steps * a.factor):
            r = cb.whole_process(steps, parquet=True, repeats=1, engine=engine, num_actors=2 if engine == "ray" else None)
            rows[steps] = {"steps": r["runs"][0]["steps"] if r["runs"] else None,
                           "peak_rss_mb": r["peak_rss_mb"]["median"], "peak_pss_mb": r["peak_pss_mb"]["median"],
                           "rate_M": r["rate"]["median"] / 1e6 if r["runs"] else None,
                           "layout": r["runs"][0]["engine"].get("layout") if r["runs"] else None}
        small, large = rows[a.steps], rows[a.steps * a.factor]
        out["engines"][engine] = {"runs": list(rows.values()),
                                  "rss_growth": large["peak_rss_mb"] / small["peak_rss_mb"] - 1,
                                  "pss_growth": large["peak_pss_mb"] / small["peak_pss_mb"] - 1}
    out["loadavg_after"] = loadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"memory-{time.strftime('%Y-%m-%d-%H%M')}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    for engine, e in out["engines"].items():
        s, l = e["runs"]
        print(f"{engine}: {s['steps']:,} steps {s['peak_rss_mb']:.0f} MB RSS / {s['peak_pss_mb']:.0f} MB PSS; "
              f"{l['steps']:,} steps {l['peak_rss_mb']:.0f} / {l['peak_pss_mb']:.0f} MB "
              f"(growth RSS {e['rss_growth'] * 100:+.1f}%, PSS {e['pss_growth'] * 100:+.1f}%)")
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
