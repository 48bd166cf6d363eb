"""The five ``plume-nav-*`` commands fail alike (cli/guard.py): each entry point, in a subprocess,
against each class of failure — bad input 2, the machine refused 3, SIGTERM 130, a closed pipe
quiet, anything else 1 with one line."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.cli_helpers import said, small_real_run


COMMANDS = {
    "plume-nav-capture": "plume_capture.cli.capture",
    "plume-nav-validate": "plume_capture.cli.validate",
    "plume-nav-publish": "plume_capture.cli.publish",
    "plume-nav-report": "plume_capture.cli.report",
    "plume-nav-export": "plume_capture.cli.export",
}


def _env(**extra):
    env = dict(os.environ)
    env.pop("PLUME_CAPTURE_DEBUG", None)
    env.update(extra)
    return env


def run_main(module: str, args: list[str], cwd, *, prelude: str = "", stdout=subprocess.PIPE, timeout=240):
    """``module.main(args)`` in a fresh interpreter, after ``prelude`` (used to inject one failure)."""
    code = prelude + f"\nimport sys\nfrom {module} import main\nsys.exit(main({args!r}))\n"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=_env(), stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=timeout)


def one_line(stderr: str) -> str:
    lines = said(stderr)
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A small real capture (in-process engine) with Parquet."""
    return small_real_run(tmp_path_factory.mktemp("runs"), seed=1, max_steps=20)


@pytest.fixture
def mount(tmp_path):
    """A real tmpfs of its own (read-only or tiny); skipped where mounting is not allowed."""
    made = []

    def _mount(opts: str) -> Path:
        where = tmp_path / f"mnt{len(made)}"
        where.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
        made.append(where)
        return where

    yield _mount
    for where in made:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def bad_input_args(prog, tmp_path):
    missing = str(tmp_path / "no-such-run")
    return {
        "plume-nav-capture": ["--resume", missing],
        "plume-nav-validate": [str(tmp_path)],  # a directory that is not a run
        "plume-nav-publish": [missing, "--repo", str(tmp_path)],
        "plume-nav-report": [missing, "-o", str(tmp_path / "r.html")],
        "plume-nav-export": [missing, "--to", "rllib", str(tmp_path / "out")],
    }[prog]


@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_bad_input_is_exit_2_one_line(prog, tmp_path):
    r = run_main(COMMANDS[prog], bad_input_args(prog, tmp_path), tmp_path)
    expected = 1 if prog == "plume-nav-validate" else 2  # validate: a damaged run is "not ok" (1)
    assert r.returncode == expected, r.stderr + r.stdout
    if prog != "plume-nav-validate":
        assert one_line(r.stderr).startswith(f"{prog}: ")


@pytest.mark.parametrize("prog", sorted(COMMANDS))
@pytest.mark.parametrize("args", [["--no-such-flag"], []], ids=["unknown-flag", "nothing"])
def test_usage_errors_are_bad_input_one_line(prog, args, tmp_path):
    """argparse's own error path prints the usage too; every command says one line, exit 2."""
    if prog == "plume-nav-capture" and not args:
        args = ["--episodes", "x"]
    r = run_main(COMMANDS[prog], args, tmp_path)
    assert r.returncode == 2, r.stderr
    assert one_line(r.stderr).startswith(f"{prog}: error: ")
    assert list(tmp_path.iterdir()) == []


def test_report_read_only_output_is_exit_3_naming_the_path(run_dir, mount, tmp_path):
    ro = mount("ro,size=1m")
    r = run_main(COMMANDS["plume-nav-report"], [str(run_dir), "-o", str(ro / "r.html")], tmp_path)
    assert r.returncode == 3, r.stderr
    line = one_line(r.stderr)
    assert str(ro) in line and "read-only" in line


@pytest.mark.parametrize("html, png", [("{tmp}/r.html", "/proc/plume-png"), ("/proc/r.html", "{tmp}/new/pngs")],
                         ids=["figures-refused", "page-refused"])
def test_report_refused_half_way_leaves_neither_page_nor_figures(run_dir, tmp_path, html, png):
    """The page and the figures land together or not at all (a user's ``r.html.tmp`` is not touched)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "r.html.tmp").write_text("mine")
    html, png = html.format(tmp=out), png.format(tmp=out)
    r = run_main(COMMANDS["plume-nav-report"], [str(run_dir), "-o", html, "--png", png], tmp_path)
    assert r.returncode == 3, r.stderr
    assert "/proc/" in one_line(r.stderr)
    assert sorted(p.name for p in out.iterdir()) == ["r.html.tmp"] and (out / "r.html.tmp").read_text() == "mine"


@pytest.mark.parametrize("target", ["rllib", "hf"])
def test_export_full_disk_is_exit_3_and_leaves_nothing(target, run_dir, mount, tmp_path):
    """One line naming the output (the Parquet writer's own error names no file), and no second
    account from a writer's finalizer retrying the failed write ("Exception ignored in ...")."""
    tiny = mount("size=64k")
    filler = tiny / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)  # the disk is full before the export starts
    try:
        while True:
            os.write(fd, b"x" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    r = run_main(COMMANDS["plume-nav-export"], [str(run_dir), "--to", target, str(tiny / "out")], tmp_path)
    assert r.returncode == 3, r.stderr
    assert one_line(r.stderr) == f"plume-nav-export: cannot write {tiny / 'out'}: no space left on device"
    assert [p.name for p in tiny.iterdir()] == ["filler"]


def test_minari_export_to_a_nearly_full_disk_is_exit_3_not_a_crash(run_dir, mount, tmp_path):
    """HDF5 meeting a full disk mid-write crashed the process (exit 139): the room is checked first."""
    tiny = mount("size=64k")
    (tiny / "filler").write_bytes(b"x" * 40960)
    r = run_main(COMMANDS["plume-nav-export"], [str(run_dir), "--to", "minari", str(tiny / "ds")], tmp_path)
    assert r.returncode == 3, r.stderr[-2000:]
    assert "no space left" in one_line(r.stderr)
    assert [p.name for p in tiny.iterdir()] == ["filler"]


def test_export_read_only_output_is_exit_3(run_dir, mount, tmp_path):
    ro = mount("ro,size=1m")
    r = run_main(COMMANDS["plume-nav-export"], [str(run_dir), "--to", "hf", str(ro / "out")], tmp_path)
    assert r.returncode == 3, r.stderr
    assert "read-only" in one_line(r.stderr)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_sigterm_is_exit_130_one_line(prog, sig, tmp_path):
    """A real SIGTERM or SIGINT (from another process, by PID) while the command's body runs."""
    module = COMMANDS[prog]
    body = {  # the function each entry point runs its work in, made to wait for the signal
        "plume-nav-capture": ("plume_capture.cli.capture", "run"),
        "plume-nav-validate": ("plume_capture.cli.validate", "_validate"),
        "plume-nav-publish": ("plume_capture.cli.publish", "_publish"),
        "plume-nav-report": ("plume_capture.cli.report", "_report"),
        "plume-nav-export": ("plume_capture.cli.export", "_export"),
    }[prog]
    marker = tmp_path / "started"
    prelude = textwrap.dedent(f"""
        import time, pathlib, importlib
        m = importlib.import_module({body[0]!r})
        def _wait(*a, **k):
            pathlib.Path({str(marker)!r}).touch()
            time.sleep(60)
        setattr(m, {body[1]!r}, _wait)
    """)
    args = {"plume-nav-validate": [str(tmp_path)], "plume-nav-publish": [str(tmp_path)],
            "plume-nav-report": [str(tmp_path)], "plume-nav-export": [str(tmp_path), "--to", "hf"],
            "plume-nav-capture": []}[prog]
    code = prelude + f"\nimport sys\nfrom {module} import main\nsys.exit(main({args!r}))\n"
    p = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), p.communicate()[1]
    os.kill(p.pid, sig)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    expected = {"plume-nav-publish": "interrupted; nothing was published"}.get(prog, "interrupted")
    assert one_line(err) == f"{prog}: {expected}"


@pytest.mark.parametrize("prog", ["plume-nav-report", "plume-nav-export", "plume-nav-validate"])
def test_closed_pipe_is_quiet(prog, run_dir, tmp_path):
    """The reader of stdout is gone before the command prints (``… | head -0``)."""
    args = {"plume-nav-report": [str(run_dir), "-o", str(tmp_path / "r.html")],
            "plume-nav-export": [str(run_dir), "--to", "rllib", str(tmp_path / "out")],
            "plume-nav-validate": [str(run_dir)]}[prog]
    code = f"import sys\nfrom {COMMANDS[prog]} import main\nsys.exit(main({args!r}))\n"
    rd, wr = os.pipe()
    os.close(rd)  # nobody will ever read
    try:
        r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(), stdout=wr,
                           stderr=subprocess.PIPE, text=True, timeout=240)
    finally:
        os.close(wr)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "" or "note:" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr


@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_unexpected_failure_is_exit_1_one_line_with_debug_hint(prog, tmp_path):
    fn = {"plume-nav-capture": "run", "plume-nav-validate": "_validate", "plume-nav-publish": "_publish",
          "plume-nav-report": "_report", "plume-nav-export": "_export"}[prog]
    prelude = (f"import importlib\nm = importlib.import_module({COMMANDS[prog]!r})\n"
               f"def _boom(*a, **k):\n    raise ZeroDivisionError('boom')\nsetattr(m, {fn!r}, _boom)\n")
    args = {"plume-nav-capture": [], "plume-nav-validate": [str(tmp_path)], "plume-nav-publish": [str(tmp_path)],
            "plume-nav-report": [str(tmp_path)], "plume-nav-export": [str(tmp_path), "--to", "hf"]}[prog]
    r = run_main(COMMANDS[prog], args, tmp_path, prelude=prelude)
    assert r.returncode == 1, r.stderr
    line = one_line(r.stderr)
    assert line.startswith(f"{prog}: internal error: ZeroDivisionError: boom") and "PLUME_CAPTURE_DEBUG=1" in line


@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_the_machine_refusing_is_exit_3_one_line_naming_the_path(prog, tmp_path):
    """An operational OSError (here EACCES on a named file) raised by any command's body."""
    fn = {"plume-nav-capture": "run", "plume-nav-validate": "_validate", "plume-nav-publish": "_publish",
          "plume-nav-report": "_report", "plume-nav-export": "_export"}[prog]
    prelude = (f"import errno, importlib\nm = importlib.import_module({COMMANDS[prog]!r})\n"
               f"def _refused(*a, **k):\n    raise PermissionError(errno.EACCES, 'Permission denied', '/srv/x')\n"
               f"setattr(m, {fn!r}, _refused)\n")
    args = {"plume-nav-capture": [], "plume-nav-validate": [str(tmp_path)], "plume-nav-publish": [str(tmp_path)],
            "plume-nav-report": [str(tmp_path)], "plume-nav-export": [str(tmp_path), "--to", "hf"]}[prog]
    r = run_main(COMMANDS[prog], args, tmp_path, prelude=prelude)
    assert r.returncode == 3, r.stderr
    assert one_line(r.stderr) == f"{prog}: cannot access /srv/x: permission denied"


def test_lone_surrogate_in_a_message_is_printed_escaped(tmp_path):
    r = run_main(COMMANDS["plume-nav-capture"], ["experiment=a\udcffb", "episodes=1"], tmp_path)
    assert r.returncode == 2, r.stderr
    assert one_line(r.stderr).startswith("plume-nav-capture: error:")


def test_concurrent_exports_to_one_output_one_wins_the_others_say_so(run_dir, tmp_path):
    out = tmp_path / "out"
    code = f"import sys\nfrom plume_capture.cli.export import main\nsys.exit(main({[str(run_dir), '--to', 'rllib', str(out)]!r}))\n"
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [(p.wait(timeout=240), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 2, 2], results
    for rc, err in results:
        if rc == 2:
            assert "output already exists" in one_line(err)
    assert out.is_dir() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("at_call", [1, 2], ids=["single", "second-sweep-point"])
def test_an_interrupt_while_runs_are_opened_leaves_no_staging(at_call, tmp_path):
    """A real SIGINT between a staging directory's creation and the first shard: nothing recorded, so
    nothing left (it used to stay, unnamed by the "interrupted" line, without even a manifest)."""
    prelude = textwrap.dedent(f"""
        import os, signal, time
        import plume_capture.capture.run as run
        real, calls = run.new_sink, []
        def new_sink(p):
            calls.append(p)
            if len(calls) == {at_call}:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(30)
            return real(p)
        run.new_sink = new_sink
    """)
    sweep = ["-m", "seed=1,2"] if at_call == 2 else []
    r = run_main(COMMANDS["plume-nav-capture"], ["--engine", "local", "--quiet", *sweep, "episodes=1",
                                                 "env.max_steps=5", f"output={tmp_path / 'out'}"], tmp_path,
                 prelude=prelude)
    assert r.returncode == 130, r.stderr
    assert one_line(r.stderr) == "plume-nav-capture: interrupted"
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file() or p.name.endswith(".partial")] == []
