"""Slow steps are not silent on a terminal (stderr a real pty): validate, replay, Ray start-up;
and nothing of it when stderr is not a terminal."""
from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

import pytest

from capture_helpers import config
from plume_capture.capture import capture

CODE = "import sys; from plume_capture.cli.{} import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("progress")
    return capture(config(output=str(out), episodes=30, seed=3, env={"grid_size": [32, 32], "max_steps": 200},
                          engine={"kind": "local"})).run_dir


def _cli(cli, args, tty: bool, cwd=None, size=(40, 120)):
    cmd = [sys.executable, "-c", CODE.format(cli), *args]
    if not tty:
        done = subprocess.run(cmd, capture_output=True, timeout=300, cwd=cwd)
        return done.returncode, done.stdout.decode(), done.stderr.decode()
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=slave, cwd=cwd)
    os.close(slave)
    err = b""
    deadline = time.monotonic() + 300
    # Read until the pty closes, or until the child has exited and nothing more comes: a process it
    # started (a Ray daemon) may hold the pty open after it exits.
    while time.monotonic() < deadline:
        if not select.select([master], [], [], 1.0)[0]:
            if proc.poll() is not None:
                break
            continue
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


@pytest.mark.parametrize("size", [(40, 120), (0, 0)])  # (0, 0): a pty that reports no size (script, CI)
def test_validate_and_replay_show_progress_on_a_terminal(run_dir, size):
    rc, out, err = _cli("validate", ["--replay", str(run_dir)], tty=True, size=size)
    assert rc == 0 and out.splitlines()[3].startswith("OK")
    assert "validating" in err and "replaying" in err and "step" in err


def test_no_progress_when_stderr_is_not_a_terminal(run_dir):
    rc, out, err = _cli("validate", ["--replay", str(run_dir)], tty=False)
    assert rc == 0 and "validating" not in err and "replaying" not in err


@pytest.mark.slow
def test_ray_start_up_is_said_and_named_apart(tmp_path):
    """A fresh local Ray instance takes seconds to start: a line says so while it starts, and the
    summary names its time apart from the run's."""
    rc, out, err = _cli("capture", ["--engine", "ray", "--num-actors", "1", "--episodes", "2", "--grid", "8x8",
                                    "--output", str(tmp_path)], tty=True)
    assert rc == 0, err
    assert "starting a local Ray instance ..." in err
    summary = [ln for ln in err.splitlines() if "steps/s" in ln][-1]
    assert re.search(r"steps/s.*\), after \d+\.\d s starting Ray$", summary.strip()), summary
