"""``plume-nav-capture``: the operator's command line (docs/spec.md §10).

Everything is validated before the engine is imported, so bad input fails fast (exit 2) and
leaves nothing on disk. Exit codes: 0 ok, 1 internal failure, 2 bad input, 130 interrupted.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any, Sequence

from plume_capture.cli.guard import run_command
from plume_capture.errors import EXIT_INTERNAL, EXIT_OK, ConfigError

PROG = "plume-nav-capture"

#: flag dest -> config key it sets (applied after overrides: an explicit flag always wins)
FLAG_KEYS: dict[str, str] = {
    "output": "output",
    "experiment": "experiment",
    "episodes": "episodes",
    "seed": "seed",
    "grid": "env.grid_size",
    "action_type": "env.action_type",
    "max_steps": "env.max_steps",
    "parquet": "parquet",
    "rotate_size": "rotate_size",
    "engine": "engine.kind",
    "num_actors": "engine.num_actors",
    "address": "engine.address",
    "quiet": "engine.quiet",
}

EPILOG = """\
overrides (Hydra grammar, after or between the flags):
  key=value        set an existing key          env.max_steps=250  env.grid_size=[64,64]
  +key=value       add a key that is missing    ++key=value  add or replace    ~key  delete
  preset=NAME      apply conf/data_capture/experiment/NAME.yaml (e.g. preset=default, the demo)
  experiment=NAME  name the experiment (output goes to <output>/<experiment>/<run_id>/)
  -m k=a,b j=range(1,3)   run the cartesian product, one run directory each

Flags beat overrides, overrides beat the preset, the preset beats config.yaml.
Set PLUME_CAPTURE_DEBUG=1 to get a traceback on errors.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (via main), no usage dump
        raise ConfigError(message)


def _int_type(text: str) -> int:
    if not re.fullmatch(r"\s*[+-]?\d+\s*", text):
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    return int(text)


def _grid_type(text: str) -> list[int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected WxH with integers (e.g. 64x64), got {text!r}")
    w, h = int(m.group(1)), int(m.group(2))
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"width and height must be >= 1, got {text!r}")
    return [w, h]


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        allow_abbrev=False,
        description="Capture odor-plume navigation episodes into a schema-0.1 run directory.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("overrides", nargs="*", metavar="OVERRIDE", help="Hydra override (see below)")
    p.add_argument("--output", metavar="DIR", help="output root (config: output)")
    p.add_argument("--experiment", metavar="NAME", help="experiment name (config: experiment)")
    p.add_argument("--episodes", type=_int_type, metavar="N", help="number of episodes")
    p.add_argument("--seed", type=_int_type, metavar="S", help="base seed; episode i uses S+i")
    p.add_argument("--grid", type=_grid_type, metavar="WxH", help="grid size (config: env.grid_size)")
    p.add_argument("--action-type", choices=("discrete", "oriented", "run_tumble"), help="env.action_type")
    p.add_argument("--max-steps", type=_int_type, metavar="N", help="env.max_steps")
    p.add_argument("--parquet", action=argparse.BooleanOptionalAction, default=None,
                   help="also write Parquet files (config: parquet)")
    p.add_argument("--rotate-size", type=_int_type, metavar="BYTES",
                   help="rotate JSONL parts at this many compressed bytes")
    p.add_argument("--config-name", default=None, metavar="NAME",
                   help="config to compose, relative to the config root (default: data_capture/config)")
    p.add_argument("--config-path", default=None, metavar="DIR",
                   help="config root replacing the packaged conf/")
    p.add_argument("--preset", default=None, metavar="NAME",
                   help="apply experiment/NAME.yaml next to the config (same as preset=NAME)")
    p.add_argument("--engine", choices=("auto", "local", "ray"), help="engine.kind")
    p.add_argument("--num-actors", type=_int_type, metavar="N", help="engine.num_actors")
    p.add_argument("--address", metavar="ADDR", help="Ray cluster address (default: $RAY_ADDRESS)")
    p.add_argument("--resume", metavar="RUN_DIR", help="finish an interrupted run in RUN_DIR")
    p.add_argument("--quiet", action="store_true", default=None, help="no progress bar, summary or sweep table")
    p.add_argument("-m", "--multirun", action="store_true", help="expand sweeps (k=a,b) into several runs")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    return p


def _version() -> str:
    from plume_capture._version import __version__

    return __version__


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return {key: getattr(args, dest) for dest, key in FLAG_KEYS.items() if getattr(args, dest) is not None}


def _resume_spec(args: argparse.Namespace):
    """The interrupted run's own config with the operator's overrides and flags applied (the
    engine then refuses any change but to execution settings), resolved; with --config-name,
    --config-path or --preset, the config composed from those as for a new run."""
    from plume_capture.capture.resume import read_manifest
    from plume_capture.config import DEFAULT_CONFIG_NAME, RunSpec, apply_overrides, load_spec

    settings = _settings(args)
    if args.config_name is not None or args.config_path is not None or args.preset is not None:
        return load_spec(args.overrides, settings=settings, preset=args.preset, config_path=args.config_path,
                         config_name=DEFAULT_CONFIG_NAME if args.config_name is None else args.config_name)
    cfg = apply_overrides(read_manifest(args.resume)["config"], args.overrides, settings)
    ray_given = any(o.lstrip("+").startswith("engine.") for o in args.overrides) or \
        {"engine.num_actors", "engine.address"} & set(settings)
    if args.engine == "local" and not ray_given and isinstance(cfg.get("engine"), dict):
        cfg["engine"].update(num_actors=None, address=None)  # the stored Ray settings do not apply in-process
    return RunSpec.from_dict(cfg, args.overrides)


def prepare(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, list, list[list[str]]]:
    """Parse ``argv`` and build one :class:`~plume_capture.config.RunSpec` per run (several with
    ``-m``), each composed, checked and resolved once.

    Returns ``(args, specs, overrides_per_run)``; raises :class:`ConfigError` on bad input.
    Nothing is written and the engine is not imported.
    """
    args = build_parser().parse_intermixed_args(argv)  # --help and --version exit here, before any import
    from plume_capture.config import DEFAULT_CONFIG_NAME, expand_sweeps, load_spec

    if args.resume is not None:
        if args.multirun:
            raise ConfigError("--resume resumes one run; it cannot be combined with -m/--multirun")
        if not os.path.basename(os.path.normpath(os.path.abspath(args.resume))):
            raise ConfigError(f"--resume: {args.resume!r} is not a run directory")
        if not os.path.isdir(args.resume):
            staged = os.path.basename(os.path.normpath(args.resume))
            final = os.path.join(os.path.dirname(os.path.normpath(args.resume)), staged[1:-len(".partial")])
            published = os.path.exists(os.path.join(final, "run.json"))
            staged = staged.startswith(".") and staged.endswith(".partial")
            if staged and published:
                raise ConfigError(f"--resume: the run is already complete ({final})")  # published meanwhile
            if not (staged and os.path.isfile(os.path.join(final, "capture.json"))):  # else: renamed, not committed
                raise ConfigError(f"--resume: {args.resume!r} is not a run directory")
        return args, [_resume_spec(args)], [list(args.overrides)]
    runs = expand_sweeps(args.overrides) if args.multirun else [list(args.overrides)]
    settings = _settings(args)
    specs = [
        load_spec(
            overrides,
            config_name=DEFAULT_CONFIG_NAME if args.config_name is None else args.config_name,
            config_path=args.config_path,
            preset=args.preset,
            settings=settings,
        )
        for overrides in runs
    ]
    return args, specs, runs


#: said after a run's steps/s when the run compiled the kernels (empty cache before, filled after)
COMPILED_NOTE = "includes compiling the kernels once; later runs load them from the cache"


def _summary_line(result, compiled: bool = False) -> str:
    eps = f"{result.episodes} episode{'' if result.episodes == 1 else 's'}"
    return (
        f"{PROG}: {result.run_dir}: {eps}, {result.steps} steps "
        f"in {result.wall_s:.2f} s ({result.steps_per_s:,.0f} steps/s"
        + (f"; {COMPILED_NOTE})" if compiled else ")")
        + (f", after {result.startup_s:.1f} s starting Ray" if result.startup_s >= 0.05 else "")
    )


def _table(results, runs: list[list[str]]) -> str:
    rows = [("run_dir", "steps", "steps/s", "status", "overrides")]
    for res, ovs in zip(results, runs):
        rows.append((str(res.run_dir), str(res.steps), f"{res.steps_per_s:,.0f}", str(res.status), " ".join(ovs)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(c.rjust(w) if i in (1, 2) else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) + "  " + r[-1]
        for r in rows
    )


def run(argv: Sequence[str] | None = None) -> int:
    """Parse, validate and capture; raises on errors (see :func:`main` for the exit codes)."""
    args, specs, runs = prepare(argv)
    quiet = specs[0].engine.quiet
    progress = not quiet and sys.stderr.isatty()
    from plume_capture.kernels._jit import kernel_cache_filled

    cold = not kernel_cache_filled()

    if not args.multirun:
        from plume_capture.capture import capture  # heavy imports only after validation

        result = capture(specs[0], progress=progress, resume=args.resume)
        if result.status != "complete":
            print(f"{PROG}: {result.run_dir}: run ended with status {result.status!r}", file=sys.stderr)
            return EXIT_INTERNAL
        if not quiet:
            print(_summary_line(result, compiled=cold and kernel_cache_filled()), file=sys.stderr)
        return EXIT_OK

    from plume_capture.capture import capture_many

    results = capture_many(specs, progress=progress)
    if not quiet:
        print(_table(results, runs))
        if cold and kernel_cache_filled():
            print(f"{PROG}: note: the first point's steps/s {COMPILED_NOTE}", file=sys.stderr)
        ray_s = max((r.startup_s for r in results), default=0.0)
        if ray_s >= 0.05:
            print(f"{PROG}: note: {ray_s:.1f} s starting Ray before the first point (not in its time)",
                  file=sys.stderr)
    for res in results:
        if res.status != "complete":
            print(f"{PROG}: {res.run_dir}: run ended with status {res.status!r}", file=sys.stderr)
    return EXIT_OK if all(r.status == "complete" for r in results) else EXIT_INTERNAL


def _resumable(exc: BaseException) -> str:
    stagings = getattr(exc, "stagings", None) or ([exc.staging] if getattr(exc, "staging", None) else [])
    if len(stagings) > 1:  # a sweep: every point not yet committed
        return (f"; {len(stagings)} incomplete runs are in {', '.join(map(str, stagings))} "
                "(finish each with --resume DIR)")
    return f"; the incomplete run is in {stagings[0]} (finish it with --resume {stagings[0]})" if stagings else ""


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: returns the exit code (0 ok, 1 internal, 2 bad input, 3 the machine or
    cluster refused (disk full, permissions, an address that does not answer), 130 Ctrl-C/SIGTERM)."""
    return run_command(PROG, lambda: run(argv), suffix=_resumable)
