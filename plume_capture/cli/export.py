"""``plume-nav-export RUN_DIR --to {minari,rllib,hf} [OUT] [--full-validation]``: export a run for learners."""
from __future__ import annotations

import argparse
import sys

from plume_capture.cli.guard import ArgumentParser, run_command

PROG = "plume-nav-export"


def _parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(prog=PROG, description="Export a run for learners: a Minari dataset, "
                                 "RLlib offline transitions or a Hugging Face dataset (docs/export.md).")
    ap.add_argument("run_dir", help="the run directory")
    ap.add_argument("--to", required=True, choices=("minari", "rllib", "hf"), help="the target format")
    ap.add_argument("out", nargs="?", default=None,
                    help="output (minari: the datasets root); default <run_dir>.<target>")
    ap.add_argument("--full-validation", action="store_true",
                    help="also parse the JSON Lines of a run with Parquet (by default they are checked by "
                         "size and sha256 against run.json; the records are checked on the Parquet)")
    return ap


def main(argv=None) -> int:
    return run_command(PROG, lambda: _export(_parser().parse_intermixed_args(argv)))


def _export(args: argparse.Namespace) -> int:
    from plume_capture.export import TARGETS, ExportError

    try:  # SIGTERM is an interrupt here (the guard), so the staging directory is removed
        out = TARGETS[args.to](args.run_dir, args.out, full_validation=args.full_validation)
    except FileExistsError as exc:
        raise ExportError(str(exc)) from None
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
