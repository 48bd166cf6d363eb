"""``plume-nav-validate RUN_DIR [--json] [--no-parquet] [--max-errors N] [--replay [K]]``.

Exit 0 ok, 1 not ok, 2 bad usage or a run that cannot be read (a FIFO or a device in it) or
replayed (its movie changed since the capture), 3 the machine refused, 130 interrupted.
``--replay`` re-simulates the recorded episodes (the first K; all without K; ``--replay RUN_DIR``
works too). Output into a closed pipe (``| head -1``) ends quietly.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from plume_capture.cli.guard import ArgumentParser, run_command
from plume_capture.errors import BadInput

PROG = "plume-nav-validate"


def _parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(prog=PROG, description="Validate a plume-capture run directory.")
    ap.add_argument("run_dir", nargs="?", help="run directory (contains run.json, steps.jsonl.gz, ...)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--no-parquet", action="store_true", help="do not compare Parquet files")
    ap.add_argument("--max-errors", type=int, default=100, metavar="N",
                    help="list at most N errors (default 100)")
    ap.add_argument("--replay", nargs="?", const="all", default=None, metavar="K",
                    help="also re-simulate the recorded episodes (the first K; all without K) and "
                         "report the first divergence")
    return ap


class _Bar:
    """A progress bar of steps on stderr when it is a terminal (tqdm), else nothing."""

    def __init__(self, desc: str):
        self.desc, self.bar = desc, None
        self.on = sys.stderr.isatty()

    def __enter__(self):
        return self

    def update(self, n: int, total: int | None = None) -> None:
        if not self.on:
            return
        if self.bar is None:
            try:
                from tqdm import tqdm
            except ImportError:
                self.on = False
                return
            # tqdm draws nothing on a terminal that reports no size (a bare pty: script, some CI runners).
            try:
                sized = min(os.get_terminal_size(sys.stderr.fileno())) > 0
            except OSError:
                sized = False
            self.bar = tqdm(total=total, desc=self.desc, unit="step", unit_scale=True, file=sys.stderr,
                            dynamic_ncols=sized, ncols=None if sized else 80, nrows=None if sized else 24,
                            leave=False)
        self.bar.update(n)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()


def _parse(argv) -> tuple[argparse.Namespace, str | None]:
    """The arguments and the replay count (``"all"``, a count, or None); BadInput on bad usage."""
    args = _parser().parse_args(argv)
    replay = args.replay
    if replay is not None and replay != "all" and not replay.lstrip("-").isdigit():
        if args.run_dir is not None:  # --replay took a word that is not a count
            raise BadInput(f"--replay K needs an integer K, got {replay!r}")
        args.run_dir, replay = replay, "all"  # `--replay RUN_DIR`
    if args.run_dir is None:
        raise BadInput("a run directory is required")
    if args.max_errors < 1:
        raise BadInput("--max-errors must be >= 1")
    if not os.path.isdir(args.run_dir):
        raise BadInput(f"not a directory: {args.run_dir}")
    if replay not in (None, "all") and int(replay) < 1:
        raise BadInput("--replay K needs K >= 1")
    return args, replay


def main(argv=None) -> int:
    return run_command(PROG, lambda: _validate(*_parse(argv)))


def _validate(args: argparse.Namespace, replay: str | None) -> int:
    from plume_capture.readback.validate import format_report, validate_run_artifacts

    with _Bar("validating") as bar:
        res = validate_run_artifacts(args.run_dir, check_parquet=not args.no_parquet, max_errors=args.max_errors,
                                     progress=bar.update)
    unread = next((e for e in res["errors"] if e.startswith("FILE_NOT_REGULAR")), None)
    if unread:  # not a run that can be read at all (a FIFO, a device in it)
        raise BadInput(f"{args.run_dir}: {unread}")
    if replay is not None and res["ok"]:
        from plume_capture.errors import ConfigError
        from plume_capture.readback.replay import replay_run

        total = res["counts"]["steps"] if replay == "all" else None
        try:
            with _Bar("replaying") as bar:
                rep = replay_run(args.run_dir, episodes=None if replay == "all" else int(replay),
                                 progress=lambda n: bar.update(n, total))
        except ConfigError as exc:  # e.g. the movie changed since the capture: nothing to replay against
            raise BadInput(f"cannot replay {args.run_dir}: {str(exc).splitlines()[0]}") from None
        res["replay"] = rep
        if not rep["ok"]:
            d = rep["divergence"]
            res["ok"] = False
            res["errors"].append(f"REPLAY_DIVERGENCE: {d['episode']} step {d['step']}: {d['field']} "
                                 f"re-simulated {d['expected']!r}, recorded {d['actual']!r}")
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(format_report(res))
        if res.get("replay", {}).get("ok"):
            r = res["replay"]
            print(f"replay ({r['mode']}): {r['episodes_checked']} episodes, {r['steps_checked']} steps agree")
    return 0 if res["ok"] else 1

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
