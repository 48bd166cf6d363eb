"""SIGINT and SIGTERM, one way for every command: a signal raises ``KeyboardInterrupt`` in the main
thread (cleanup runs as for Ctrl-C) and is also *noted*.

Invariant: a command that saw a signal never commits. Python runs a signal handler between two
bytecodes of the main thread; when those belong to a finalizer or a weakref callback run by the
garbage collector, the ``KeyboardInterrupt`` is printed as "Exception ignored in ..." and lost. So
every commit point calls :func:`check` first, which raises again for a noted signal (and the lost
raise prints nothing: the command says "interrupted" once).

Off the main thread no handler can be installed; there these are no-ops.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Iterator

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_noted: list[int] = []
_depth = [0]  # how many raising() blocks are open


def _in_main() -> bool:
    return threading.current_thread() is threading.main_thread()


def _note_and_raise(signum, frame):
    _noted.append(signum)
    raise KeyboardInterrupt


def _note(signum, frame):
    _noted.append(signum)


def noted() -> int | None:
    """The first signal seen since :func:`raising` was entered, else None."""
    return _noted[0] if _noted else None


def check(what: str = "") -> None:
    """Raise ``KeyboardInterrupt(what)`` if a signal was seen, even one whose first raise was lost
    (``what`` may say what the interrupt left)."""
    if _noted:
        raise KeyboardInterrupt(what)


def install() -> None:
    """(Re)install the raising handlers, e.g. after ``ray.init`` replaced SIGTERM's."""
    if _in_main():
        for s in _SIGNALS:
            signal.signal(s, _note_and_raise)


@contextlib.contextmanager
def raising() -> Iterator[None]:
    """Within the block SIGINT and SIGTERM raise ``KeyboardInterrupt`` and are noted; the outermost
    block clears the note on entry (one command, one account). The previous handlers come back."""
    if not _in_main():
        yield
        return
    old = {s: signal.getsignal(s) for s in _SIGNALS}
    if not _depth[0]:
        _noted.clear()
    _depth[0] += 1
    install()
    hook = sys.unraisablehook

    def quiet_lost_interrupts(unraisable):  # noted already; the command says "interrupted" once
        if not (unraisable.exc_type is KeyboardInterrupt and _noted):
            hook(unraisable)

    sys.unraisablehook = quiet_lost_interrupts
    try:
        yield
    finally:
        _depth[0] -= 1
        sys.unraisablehook = hook
        for s, handler in old.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Within the block SIGINT and SIGTERM are only noted (a commit, a git call, is never cut in
    half); :func:`check` afterwards, or at a step that can still be undone, acts on them. Outside
    any :func:`raising` block it starts a fresh account."""
    if not _in_main():
        yield
        return
    if not _depth[0]:
        _noted.clear()
    old = {s: signal.getsignal(s) for s in _SIGNALS}
    for s in _SIGNALS:
        signal.signal(s, _note)
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
