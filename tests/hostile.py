"""Run files swapped for what a reader must never wait on or read to the end: a FIFO, a symlink to
/dev/zero, a gzip bomb (1 GiB of text in ~1 MiB, built in milliseconds from one repeated member).
Each command is run as a real subprocess with a deadline, so a reader that hangs fails the test."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import zlib

BOMB_TEXT = 1 << 30


def fifo(path) -> None:
    """Replace ``path`` by a FIFO nobody writes to."""
    os.remove(path)
    os.mkfifo(path)


def dev_zero(path) -> None:
    """Replace ``path`` by a symlink to /dev/zero."""
    os.remove(path)
    os.symlink("/dev/zero", path)


def gzip_bomb(path, unit: bytes = b"\0", total: int = BOMB_TEXT) -> None:
    """Replace ``path`` by a valid multi-member gzip of ``total`` bytes of ``unit`` repeated."""
    block = unit * ((1 << 20) // len(unit))
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    member = c.compress(block) + c.flush()
    with open(path, "wb") as f:
        for _ in range(total // len(block)):
            f.write(member)


HOSTILE = {"fifo": fifo, "dev_zero": dev_zero, "gzip_bomb": gzip_bomb,
           "newline_bomb": lambda p: gzip_bomb(p, b"\n")}


def run_cli(module: str, *args, deadline: float = 60.0):
    """-> (exit code, stderr lines, seconds) of ``python -m module args`` (fails past ``deadline``)."""
    t = time.monotonic()
    env = {k: v for k, v in os.environ.items() if k != "PLUME_CAPTURE_DEBUG"}
    p = subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                       timeout=deadline, env=env, stdin=subprocess.DEVNULL)
    return p.returncode, p.stderr.strip().splitlines(), time.monotonic() - t


def run_python(code: str, deadline: float = 60.0):
    """-> (exit code, stderr lines, seconds) of ``python -c code``."""
    t = time.monotonic()
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=deadline,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stderr.strip().splitlines(), time.monotonic() - t
