"""Long read-backs show progress on a terminal (stderr a real pty) and nothing otherwise."""
from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest

from capture_helpers import config
from plume_capture.capture import capture

CODE = "import sys; from plume_capture.cli.validate import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("progress")
    return capture(config(output=str(out), episodes=30, seed=3, env={"grid_size": [32, 32], "max_steps": 200},
                          engine={"kind": "local"})).run_dir


def _validate(args, tty: bool):
    if not tty:
        done = subprocess.run([sys.executable, "-c", CODE, *args], capture_output=True, timeout=300)
        return done.returncode, done.stdout.decode(), done.stderr.decode()
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a terminal has a width
    proc = subprocess.Popen([sys.executable, "-c", CODE, *args], stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    err = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        err += chunk
    os.close(master)
    out = proc.stdout.read().decode()
    proc.stdout.close()
    return proc.wait(timeout=300), out, err.decode(errors="replace")


def test_validate_and_replay_show_progress_on_a_terminal(run_dir):
    rc, out, err = _validate(["--replay", str(run_dir)], tty=True)
    assert rc == 0 and out.splitlines()[3].startswith("OK")
    assert "validating" in err and "replaying" in err and "step" in err


def test_no_progress_when_stderr_is_not_a_terminal(run_dir):
    rc, out, err = _validate(["--replay", str(run_dir)], tty=False)
    assert rc == 0 and "validating" not in err and "replaying" not in err
