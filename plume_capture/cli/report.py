"""plume-nav-report: an HTML report (and optionally PNG figures) of runs or sweeps."""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Sequence

PROG = "plume-nav-report"


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: 0 ok, 2 bad input, 1 internal error."""
    ap = argparse.ArgumentParser(prog=PROG, description="Report of one or more runs (a directory "
                                 "of runs, e.g. a sweep's experiment directory, expands to its runs).")
    ap.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    ap.add_argument("-o", "--output", default="report.html", help="HTML file (default report.html)")
    ap.add_argument("--png", metavar="DIR", help="also write the figures as PNG files into DIR")
    ap.add_argument("--sample", type=int, default=None,
                    help="trajectories drawn per run (default 300, chosen by episode seed)")
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        from plume_capture.report import ReportError, build_report
    except ModuleNotFoundError as e:
        if e.name != "matplotlib":
            raise
        print(f"{PROG}: needs matplotlib (pip install -e '.[plot]' in the checkout)", file=sys.stderr)
        return 2
    from plume_capture.report.data import DEFAULT_SAMPLE

    sample = DEFAULT_SAMPLE if args.sample is None else args.sample
    try:
        if sample < 1:
            raise ReportError(f"--sample must be >= 1, got {sample}")
        out_parent = os.path.dirname(os.path.abspath(args.output))
        if not os.path.isdir(out_parent):
            raise ReportError(f"{args.output}: its directory does not exist")
        if args.png and os.path.exists(args.png) and not os.path.isdir(args.png):
            raise ReportError(f"--png {args.png}: not a directory")
        result = build_report(args.run_dirs, args.output, args.png, sample)
    except ReportError as e:
        print(f"{PROG}: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - the one place that turns failures into exit 1
        if os.environ.get("PLUME_CAPTURE_DEBUG", "") not in ("", "0"):
            traceback.print_exc()
        print(f"{PROG}: internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
              file=sys.stderr)
        return 1
    for n in result["notes"]:
        print(f"{PROG}: note: {n}", file=sys.stderr)
    print(f"{args.output}: {len(result['runs'])} run(s), {len(result['figures'])} figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
