"""One way for every ``plume-nav-*`` command to fail.

Invariant: whatever the command body raises, the user sees at most one line on stderr and one of
these exit codes (``plume_capture.errors``):

=========================================================  ====  ===================================
what happened                                              exit  what is printed
=========================================================  ====  ===================================
:class:`~plume_capture.errors.BadInput` (and subclasses)    2     ``PROG: error: <message>``
the machine or cluster refused (``OperationalError``, an    3     ``PROG: <path>: <cause>``
``OSError`` such as ENOSPC/EACCES/EROFS)
Ctrl-C or SIGTERM                                           130   ``PROG: interrupted``
the reader of stdout went away (``| head -1``)              the   nothing
                                                            body's
anything else                                               1     ``PROG: internal error: …``
=========================================================  ====  ===================================

``PLUME_CAPTURE_DEBUG=1`` adds the traceback. Each command parses its arguments inside the guard
with :class:`ArgumentParser`, so a usage error is bad input too; ``--help`` exits 0 through argparse.
"""
from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback
from typing import Any, Callable

from plume_capture import interrupts
from plume_capture.errors import (EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_OPERATIONAL,
                                  BadInput, CaptureError, OperationalError)

DEBUG_ENV = "PLUME_CAPTURE_DEBUG"

#: errno values that mean the machine refused, not that the input or the program is wrong
OPERATIONAL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO,
                      errno.EMFILE, errno.ENFILE, errno.ENOMEM}


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors raise :class:`~plume_capture.errors.BadInput`: one line, exit 2,
    like any other bad input (argparse's own way prints the usage too)."""

    def error(self, message: str):
        raise BadInput(message)


def one_line(text: Any) -> str:
    """``text`` on one line (its non-empty lines joined by ``; ``)."""
    lines = [ln.strip() for ln in str(text).strip().splitlines()]
    return "; ".join(ln for ln in lines if ln) or "(no message)"


def safe_text(text: str) -> str:
    """``text`` printable on any stderr: lone surrogates and the like are escaped, not fatal."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def operational(exc: OSError) -> str | None:
    """One line naming the path and the cause of an operational failure, else None."""
    code = exc.errno
    if code is None and "No space left on device" in str(exc):  # e.g. pyarrow's IOError
        code = errno.ENOSPC
    if code not in OPERATIONAL_ERRNOS:
        return None
    path = exc.filename or exc.filename2
    verb = "write" if code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS) else "access"
    where = f"cannot {verb} {path}" if path else "a file operation failed"
    return f"{where}: {os.strerror(code).lower()}"


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def run_command(prog: str, body: Callable[[], int], *,
                suffix: Callable[[BaseException], str] = lambda exc: "") -> int:
    """Run ``body`` (which returns an exit code) and turn whatever it raises into the table above.
    ``suffix(exc)`` may add to an interrupt's or refusal's line (e.g. how to resume)."""
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")

    def say(msg: str) -> None:
        if debug:
            traceback.print_exc()
        try:
            print(safe_text(f"{prog}: {msg}"), file=sys.stderr)
        except (OSError, ValueError):
            pass

    try:
        with interrupts.raising():
            code = body()
            sys.stdout.flush()
            return code
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_OK
    except BadInput as exc:
        say(f"error: {one_line(exc)}")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:
        say(f"interrupted{suffix(exc)}")
        return EXIT_INTERRUPTED
    except OperationalError as exc:
        say(f"{one_line(exc)}{suffix(exc)}")
        return EXIT_OPERATIONAL
    except OSError as exc:
        what = operational(exc)
        if what is not None:
            say(f"{what}{suffix(exc)}")
            return EXIT_OPERATIONAL
        say(f"internal error: {type(exc).__name__}: {one_line(exc)} (rerun with {DEBUG_ENV}=1 for a traceback)")
        return EXIT_INTERNAL
    except Exception as exc:  # noqa: BLE001 - the one place that turns failures into exit 1
        kind = "capture failed" if isinstance(exc, CaptureError) else f"internal error: {type(exc).__name__}"
        say(f"{kind}: {one_line(exc)} (rerun with {DEBUG_ENV}=1 for a traceback)")
        return EXIT_INTERNAL
