"""Hostile input to ``plume-nav-capture`` that used to hang or end in "internal error": each is now
one line, exit 2 (bad input) or 3 (the cluster refused), within a bound, with nothing written."""
from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from tests.cli_helpers import run_cli, said, tree

BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def one_error_line(r, code: int) -> str:
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = said(r.stderr)
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


@pytest.mark.parametrize("args, env, needle", [
    (["--resume", "/"], {}, "is not a run directory"),
    (["episodes=1", "--engine", "ray"], {"PLUME_CAPTURE_OBJECT_STORE_MB": "abc"}, "PLUME_CAPTURE_OBJECT_STORE_MB"),
    (["episodes=1", "--engine", "ray"], {"PLUME_CAPTURE_OBJECT_STORE_MB": "-5"}, "PLUME_CAPTURE_OBJECT_STORE_MB"),
    (["episodes=1", "--engine", "ray"], {"NUMBA_NUM_THREADS": "0"}, "NUMBA_NUM_THREADS"),
    (["episodes=1", "--engine", "local"], {"NUMBA_NUM_THREADS": "0"}, "NUMBA_NUM_THREADS"),
    (["env.grid_size=" + "[" * 5000 + "]" * 5000], {}, "nests deeper than"),
    (["-m", "seed=range(1000000)"], {}, "more than 10,000 runs"),
    (["-m", "seed=range(200)", "episodes=range(1,100)"], {}, "more than 10,000 runs"),
], ids=["resume-root", "store-abc", "store-negative", "numba-0-ray", "numba-0-local", "deep-override",
        "million-sweep", "product-sweep"])
def test_bad_input_is_one_line_exit_2_nothing_written(args, env, needle, tmp_path):
    t0 = time.monotonic()
    r = run_cli(args, tmp_path, env=env, timeout=120)
    assert needle in one_error_line(r, 2)
    assert time.monotonic() - t0 < 60
    assert tree(tmp_path) == set()


def test_yaml_alias_bomb_is_refused_before_composing(tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "bomb.yaml").write_text(BOMB)
    work = tmp_path / "work"
    work.mkdir()
    r = run_cli(["--config-path", str(conf), "--config-name", "bomb"], work, timeout=60)
    assert "expands to more than" in one_error_line(r, 2)
    assert tree(work) == set()


def _server(answer: bytes | None):
    """A TCP server on loopback that accepts and then says ``answer`` (or nothing, ever)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held = []

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            held.append(conn)
            if answer is not None:
                conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    return srv, held


@pytest.mark.parametrize("answer, needle", [
    (None, "no answer within"),
    (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", "does not answer as a Ray cluster"),
], ids=["silent", "http1"])
def test_an_address_that_accepts_tcp_but_is_not_ray_is_exit_3(answer, needle, tmp_path):
    srv, held = _server(answer)
    try:
        port = srv.getsockname()[1]
        t0 = time.monotonic()
        r = run_cli(["episodes=1", "--address", f"127.0.0.1:{port}"], tmp_path, timeout=120)
        line = one_error_line(r, 3)
        assert needle in line and f"127.0.0.1:{port}" in line
        assert time.monotonic() - t0 < 60
        assert tree(tmp_path) == set()
    finally:
        srv.close()
        for c in held:
            c.close()


def test_a_movie_path_naming_a_fifo_is_refused_not_opened(tmp_path):
    fifo = tmp_path / "movie.npy"
    os.mkfifo(fifo)
    work = tmp_path / "work"
    work.mkdir()
    r = run_cli(["episodes=1", "env.plume=movie", f"movie.path={fifo}", "--engine", "local"], work, timeout=60)
    assert "is not a regular file or a directory" in one_error_line(r, 2)
    assert tree(work) == set()
