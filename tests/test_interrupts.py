"""A signal whose KeyboardInterrupt Python swallowed (raised inside a finalizer) still stops every
commit point: ``interrupts.check`` raises again."""
import gc
import os
import signal
import sys

import pytest

from plume_capture import interrupts
from plume_capture.export.staging import staged_dir


class _SignalsInFinalizer:
    """Sends SIGTERM to this process from ``__del__``: the handler runs there and its
    KeyboardInterrupt is printed as "Exception ignored in ..." and lost (what CI once saw)."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # bytecodes for the handler to run between
            pass


class _FailsInFinalizer:
    def __del__(self):
        1 / 0


def _lose_a_sigterm():
    _SignalsInFinalizer()
    gc.collect()


def test_a_lost_interrupt_is_still_noted(monkeypatch):
    lost = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: lost.append(u.exc_type))
    with interrupts.raising():
        _FailsInFinalizer()  # other unraisables still reach the hook
        gc.collect()

        _lose_a_sigterm()  # no exception reaches us
        assert interrupts.noted() == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
    assert lost == [ZeroDivisionError]  # the lost KeyboardInterrupt printed nothing
    with interrupts.raising():  # the next command starts a fresh account
        interrupts.check()
        assert interrupts.noted() is None


def test_a_staged_export_is_not_committed_after_a_lost_interrupt(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "unraisablehook", lambda u: None)
    final = tmp_path / "out" / "dataset"
    with interrupts.raising(), pytest.raises(KeyboardInterrupt):
        with staged_dir(final) as tmp:
            (tmp_path / "marker").touch()
            open(os.path.join(tmp, "data"), "w").close()
            _lose_a_sigterm()
    assert (tmp_path / "marker").exists()
    assert not (tmp_path / "out").exists()  # neither the output nor the parent the export made


def test_held_signals_wait_for_the_block():
    with interrupts.raising():
        with interrupts.held():
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass
            done = True  # not cut in half
        assert done and interrupts.noted() == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
