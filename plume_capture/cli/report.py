"""plume-nav-report: an HTML report (and optionally PNG figures) of runs or sweeps."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from plume_capture.cli.guard import ArgumentParser, run_command
from plume_capture.errors import BadInput

PROG = "plume-nav-report"


def _parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(prog=PROG, description="Report of one or more runs (a directory "
                                 "of runs, e.g. a sweep's experiment directory, expands to its runs).")
    ap.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    ap.add_argument("-o", "--output", default="report.html", help="HTML file (default report.html)")
    ap.add_argument("--png", metavar="DIR", help="also write the figures as PNG files into DIR")
    ap.add_argument("--sample", type=int, default=None,
                    help="trajectories drawn per run (default 300, chosen by episode seed)")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: 0 ok, 1 internal error, 2 bad input, 3 the machine refused, 130 interrupted."""
    return run_command(PROG, lambda: _report(_parser().parse_args(argv)))


def _report(args: argparse.Namespace) -> int:
    try:
        from plume_capture.report import ReportError, build_report
    except ModuleNotFoundError as e:
        if e.name != "matplotlib":
            raise
        raise BadInput("needs matplotlib (pip install -e '.[plot]' in the checkout)") from None
    from plume_capture.report.data import DEFAULT_SAMPLE

    sample = DEFAULT_SAMPLE if args.sample is None else args.sample
    if sample < 1:
        raise ReportError(f"--sample must be >= 1, got {sample}")
    out_parent = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(out_parent):
        raise ReportError(f"{args.output}: its directory does not exist")
    if os.path.isdir(args.output):
        raise ReportError(f"{args.output}: is a directory (give the HTML file to write)")
    if args.png and os.path.exists(args.png) and not os.path.isdir(args.png):
        raise ReportError(f"--png {args.png}: not a directory")
    result = build_report(args.run_dirs, args.output, args.png, sample)
    for n in result["notes"]:
        print(f"{PROG}: note: {n}", file=sys.stderr)
    print(f"{args.output}: {len(result['runs'])} run(s), {len(result['figures'])} figures")
    return 0

if __name__ == "__main__":
    sys.exit(main())
