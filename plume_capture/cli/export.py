"""``plume-nav-export RUN_DIR --to {minari,rllib,hf} [OUT] [--full-validation]``: export a run for learners."""
from __future__ import annotations

import argparse
import signal
import sys

PROG = "plume-nav-export"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__)
    ap.add_argument("run_dir")
    ap.add_argument("--to", required=True, choices=("minari", "rllib", "hf"))
    ap.add_argument("out", nargs="?", default=None,
                    help="output (minari: the datasets root); default <run_dir>.<target>")
    ap.add_argument("--full-validation", action="store_true",
                    help="also parse the JSON Lines of a run with Parquet (by default they are checked by "
                         "size and sha256 against run.json; the records are checked on the Parquet)")
    args = ap.parse_intermixed_args(argv)
    from plume_capture.export import TARGETS, ExportError

    old = signal.signal(signal.SIGTERM, _interrupt)  # like Ctrl-C: the staging directory is removed
    try:
        out = TARGETS[args.to](args.run_dir, args.out, full_validation=args.full_validation)
    except (ExportError, FileExistsError) as exc:
        print(f"{PROG}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, old)
    print(out)
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    sys.exit(main())
