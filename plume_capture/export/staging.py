"""Write-aside-then-rename for export outputs: a half-written export never looks complete."""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile

from plume_capture import interrupts
from plume_capture.errors import OperationalError
from plume_capture.export.reader import ExportError


def check_free(final, run_dir=None) -> str:
    """``final`` as an absolute path; ExportError when it exists already, or when it is ``run_dir``,
    inside it or holds it (symlinks resolved): a run with anything added is no longer the run."""
    final = os.path.abspath(os.fspath(final))
    if os.path.lexists(final):
        raise ExportError(f"output already exists: {final}")
    if run_dir is not None:
        out, run = os.path.realpath(final), os.path.realpath(run_dir)
        if os.path.commonpath([out, run]) in (out, run):
            where = "is" if out == run else "is inside" if out.startswith(run + os.sep) else "holds"
            raise ExportError(f"output {final} {where} the run directory {run_dir}: write it elsewhere")
    return final


@contextlib.contextmanager
def staged_dir(final: str):
    """Yield a fresh sibling directory of ``final``; rename it to ``final`` on success, delete it
    on any failure (with the parent directories this call made, when they are left empty: a
    concurrent export may have made them too, and its output must stay). ``final`` must not exist."""
    final = check_free(final)
    missing, d = [], os.path.dirname(final)
    while not os.path.isdir(d) and os.path.dirname(d) != d:
        missing.append(d)
        d = os.path.dirname(d)
    made = []  # the directories this call created, outermost first
    try:
        for d in reversed(missing):
            try:
                os.mkdir(d)
                made.append(d)
            except FileExistsError:  # made meanwhile (or a file in the way: the next step says so)
                pass
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(final)}.partial-", dir=os.path.dirname(final))
    except OSError as exc:  # e.g. under /proc, a read-only or full file system, a file in the way
        _remove_empty(made)
        raise OperationalError(f"cannot write {final}: {(exc.strerror or str(exc)).lower()}") from None
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes it private
        interrupts.check()  # a signal whose KeyboardInterrupt was lost: never commit after it
        try:
            os.rename(tmp, final)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) or os.path.lexists(final):
                raise ExportError(f"output already exists: {final} (another export finished first)") from None
            raise
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(made)
        if isinstance(exc, OSError) and exc.filename is None:  # e.g. pyarrow's "no space left": name where
            exc.filename = final
        raise


def _remove_empty(dirs: list) -> None:
    for d in reversed(dirs):
        with contextlib.suppress(OSError):
            os.rmdir(d)


def provenance(src) -> dict:
    """The run facts every export carries."""
    m = src.meta
    extra = m.get("extra") or {}
    return {"run_id": m.get("run_id"), "experiment": m.get("experiment"),
            "config_hash": m.get("config_hash"), "git_sha": m.get("git_sha"),
            "package_version": m.get("package_version"), "schema_version": m.get("schema_version"),
            "base_seed": m.get("base_seed"), "counts": extra.get("counts"),
            "env": src.env_kwargs, "policy": extra.get("policy"),
            "versions": (extra.get("engine") or {}).get("versions")}
