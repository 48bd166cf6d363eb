"""``plume-nav-publish``: publish a run directory into a DVC-tracked dataset tree, or write a
dvc.yaml capture stage (``--init-stage CONFIG``). Exit 0 ok, 1 internal error, 2 bad input,
3 the machine refused, 130 interrupted (SIGINT or SIGTERM)."""
from __future__ import annotations

import argparse
import sys

from plume_capture.cli.guard import ArgumentParser, run_command
from plume_capture.errors import BadInput

PROG = "plume-nav-publish"


def _parser() -> argparse.ArgumentParser:
    from plume_capture.publish.dataset import DEFAULT_DEST

    p = ArgumentParser(prog=PROG, description="Validate a capture run and publish it as a "
                                "DVC-versioned dataset (see docs/publishing.md).")
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR",
                   help="run directories written by plume-nav-capture (several: one dvc add, "
                        "one commit, all or nothing)")
    p.add_argument("--repo", default=".", metavar="DIR", help="git+DVC repository (default: .)")
    p.add_argument("--dest", default=DEFAULT_DEST, metavar="DIR",
                   help=f"dataset tree inside the repository (default: {DEFAULT_DEST})")
    p.add_argument("--push", action="store_true", help="dvc push the published run")
    p.add_argument("--remote", metavar="NAME", help="DVC remote for --push (default: the default)")
    p.add_argument("--no-commit", action="store_true",
                   help="stage the .dvc file and index in git but do not commit")
    p.add_argument("--rebuild-index", action="store_true",
                   help="recompute DATASET_INDEX.json from the published manifests")
    p.add_argument("--init-stage", metavar="CONFIG", help="write (or extend) dvc.yaml in --repo "
                   "with a capture stage and a validation-metrics stage for this config file")
    return p


def main(argv=None) -> int:
    parsed: list[argparse.Namespace] = []

    def body() -> int:
        parsed.append(_parse(argv))
        return _publish(parsed[0])

    return run_command(PROG, body, suffix=lambda exc: _interrupted(exc, parsed[0] if parsed else None))


def _parse(argv) -> argparse.Namespace:
    args = _parser().parse_args(argv)
    if sum((bool(args.run_dirs), args.init_stage is not None, args.rebuild_index)) != 1:
        raise BadInput("give exactly one of RUN_DIR..., --init-stage CONFIG, --rebuild-index")
    if args.remote is not None and not args.push:
        raise BadInput("--remote needs --push")
    return args


def _interrupted(exc: BaseException, args: argparse.Namespace | None) -> str:
    """What an interrupt left: the core's own account, else (before any change) nothing."""
    if not isinstance(exc, KeyboardInterrupt):
        return ""
    said = str(exc)
    if said.startswith("interrupted"):
        return said[len("interrupted"):]
    return f": {said}" if said else ("; nothing was published" if args is not None and args.run_dirs else "")


def _publish(args: argparse.Namespace) -> int:
    from plume_capture.publish import dataset, stage

    if args.init_stage is not None:
        path = stage.write_stage(args.init_stage, args.repo)
        print(f"wrote {path}")
    elif args.rebuild_index:
        repo = dataset.open_repo(args.repo, args.dest)
        with dataset.repo_lock(repo):
            idx = dataset.rebuild_index(repo)
            dataset.write_json_atomic(repo.index_path, idx)
        print(f"{repo.index_path}: {len(idx['runs'])} runs")
    else:
        results = dataset.publish_runs(args.run_dirs, args.repo, dest=args.dest,
                                       push=args.push, remote=args.remote,
                                       commit=not args.no_commit, log=print)
        for res in results:
            if res.pushed:
                print(f"pushed: {res.path.name}")
    return 0

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
