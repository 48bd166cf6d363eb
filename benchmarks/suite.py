"""Shared machinery of the performance suite: statistics, machine facts, child processes with
peak memory summed over their whole process family (driver, Ray's gcs/raylet and workers), and
the Markdown report.

Every measured child gets a private ``RAY_TMPDIR``. Ray processes inherit the environment, so
that directory name also finds processes that left the driver's process tree; whatever is still
alive after a child exits is stopped by PID (never ``ray stop``, never by name).
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(__file__).resolve().parent / ".cache"
RESULTS = Path(__file__).resolve().parent / "results"


# ------------------------------------------------------------------------------------------------
# Statistics and facts

def summary(values, **extra) -> dict:
    """Median with min/max of repeated measurements (the raw values are kept)."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0, "values": [], **extra}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals),
            "values": vals, **extra}


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"host": socket.gethostname(), "cores": os.cpu_count(),
            "physical_cores": psutil.cpu_count(logical=False), "cpu": cpu,
            "ram_gb": round(psutil.virtual_memory().total / 2**30, 1), "platform": platform.platform()}


def commit() -> dict:
    def git(*args):
        try:
            r = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
            return r.stdout.strip() if r.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for dist in ("plume-capture", "numpy", "numba", "pyarrow", "polars", "isal", "ray", "psutil"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


# ------------------------------------------------------------------------------------------------
# Child processes with summed peak memory

def _marked(marker: str) -> list[psutil.Process]:
    """Processes whose environment contains ``marker`` (our private RAY_TMPDIR)."""
    found = []
    for p in psutil.process_iter():
        try:
            if marker in (p.environ().get("RAY_TMPDIR") or ""):
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


class FamilyMemory:
    """Samples every ``interval`` s the RSS (and PSS) summed over a process, its descendants and
    any process carrying ``marker``; keeps the peaks. RSS counts shared pages (Ray's object store,
    libraries) once per process, PSS splits them; RSS is the conservative figure."""

    def __init__(self, root_pid: int, marker: str | None = None, interval: float = 0.1,
                 rescan_every: int = 10, pss: bool = True):
        self.root_pid, self.marker, self.interval = root_pid, marker, interval
        self.rescan_every, self.pss = rescan_every, pss
        self.peak_rss = self.peak_pss = 0
        self.peak_procs = 0
        self.peak_roles: dict[str, float] = {}
        self.samples = 0
        self.pids: set[int] = set()
        self._procs: dict[int, psutil.Process] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)

    def _family(self, tick: int) -> list[psutil.Process]:
        found = []
        try:
            root = psutil.Process(self.root_pid)
            found = [root, *root.children(recursive=True)]
        except psutil.Error:
            pass
        if self.marker and tick % self.rescan_every == 0:
            found += _marked(self.marker)
        for p in found:
            self._procs.setdefault(p.pid, p)
        return list(self._procs.values())

    def _role(self, p: psutil.Process) -> str:
        if p.pid == self.root_pid:
            return "driver"
        try:
            cmd = p.cmdline()
        except psutil.Error:
            return "other"
        if (cmd and cmd[0].startswith("ray::")) or any("default_worker.py" in c for c in cmd):
            return "ray workers"
        if any("ray" in c for c in cmd):
            return "ray system (gcs, raylet, dashboard, monitors)"
        return "other"

    def _loop(self):
        tick = 0
        while not self._stop.is_set():
            rss = pss = alive = 0
            roles: dict[str, float] = {}
            for p in self._family(tick):
                try:
                    if self.pss:
                        m = p.memory_full_info()
                        pss += getattr(m, "pss", m.rss)
                    else:
                        m = p.memory_info()
                    rss += m.rss
                    role = self._role(p)
                    roles[role] = roles.get(role, 0) + m.rss
                    alive += 1
                    self.pids.add(p.pid)
                except (psutil.NoSuchProcess, psutil.ZombieProcess):
                    self._procs.pop(p.pid, None)
                except psutil.Error:
                    pass
            if rss > self.peak_rss:
                self.peak_rss, self.peak_roles = rss, roles
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_procs = max(self.peak_procs, alive)
            self.samples += 1
            tick += 1
            self._stop.wait(self.interval)

    def result(self) -> dict:
        return {"peak_rss_mb": round(self.peak_rss / 2**20, 1), "peak_pss_mb": round(self.peak_pss / 2**20, 1),
                "peak_processes": self.peak_procs, "samples": self.samples,
                "rss_mb_at_peak_by_role": {k: round(v / 2**20, 1) for k, v in sorted(self.peak_roles.items())}}


def kill_marked(marker: str, grace: float = 5.0) -> list[int]:
    """SIGTERM, then SIGKILL, every process still carrying ``marker``; returns their PIDs."""
    procs = [p for p in _marked(marker) if p.pid != os.getpid()]
    stop_processes(procs, grace)
    return [p.pid for p in procs]


def stop_processes(procs, grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds, by PID (also used by the test session)."""
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace)


def ray_env(tmpdir: str) -> dict:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env.update({"RAY_TMPDIR": tmpdir, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
                "PYTHONUNBUFFERED": "1"})
    return env


@dataclass
class ChildResult:
    argv: list
    rc: int
    wall_s: float
    memory: dict
    stdout: str
    stderr: str
    load_before: list
    load_after: list
    leftovers: list = field(default_factory=list)

    def check(self) -> "ChildResult":
        if self.rc != 0:
            raise RuntimeError(f"{' '.join(map(str, self.argv))} exited {self.rc}: {self.stderr.strip()[-2000:]}")
        return self


def memory_limit_mb() -> float:
    """Default guard for one measured process family: half of the machine's RAM (PSS)."""
    return psutil.virtual_memory().total / 2**20 / 2


def run_child(argv: list, *, cwd=None, env: dict | None = None, timeout: float = 3600,
              memory: bool = True, interval: float = 0.1, pss_limit_mb: float | None = None) -> ChildResult:
    """Run ``argv`` with a private RAY_TMPDIR; wall time of the whole process; peak family memory.

    When the family's PSS exceeds ``pss_limit_mb`` (default :func:`memory_limit_mb`; the machine is
    shared) the family is killed and the result says so in ``stderr`` (``rc`` != 0)."""
    tmp = tempfile.mkdtemp(prefix="pcb", dir="/tmp")  # short: Ray's socket paths have a length limit
    full_env = ray_env(tmp)
    full_env.update(env or {})
    limit = (pss_limit_mb or memory_limit_mb()) * 2**20
    load0 = loadavg()
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(a) for a in argv], cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    mon = FamilyMemory(proc.pid, tmp, interval) if memory else None
    if mon:
        mon.__enter__()
    note = ""
    try:
        while True:
            try:
                out, err = proc.communicate(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                over = mon is not None and mon.peak_pss > limit
                if over or time.perf_counter() - t0 > timeout:
                    note = (f"\n[benchmarks] killed: PSS of the process family above {limit / 2**20:.0f} MB" if over
                            else f"\n[benchmarks] killed after {timeout} s")
                    proc.kill()
                    out, err = proc.communicate()  # reap it here: psutil would otherwise take its exit status
                    kill_marked(tmp, grace=0.5)
                    break
        err += note
    finally:
        wall = time.perf_counter() - t0
        if mon:
            mon.stop()
        leftovers = kill_marked(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    return ChildResult(argv=list(argv), rc=proc.returncode, wall_s=wall, memory=mon.result() if mon else {},
                       stdout=out, stderr=err, load_before=load0, load_after=loadavg(), leftovers=leftovers)


def cli(*args) -> list:
    """argv of our capture CLI in this interpreter."""
    return [sys.executable, "-m", "plume_capture", *args]


def only_run_dir(output: Path) -> Path:
    runs = [p for p in Path(output).glob("*/*") if p.is_dir() and (p / "run.json").exists()]
    if len(runs) != 1:
        raise RuntimeError(f"expected one run directory under {output}, found {len(runs)}")
    return runs[0]


def json_from_stdout(text: str):
    """The last line of ``text`` that parses as JSON."""
    for line in reversed(text.strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    raise ValueError(f"no JSON in output: {text[-500:]!r}")


# ------------------------------------------------------------------------------------------------
# Report

def _fmt(v, unit: str = "", scale: float = 1.0, digits: int = 2) -> str:
    if v is None:
        return "–"
    return f"{v / scale:.{digits}f}{unit}"


def fmt_stat(s: dict | None, scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
    """``median (min–max)``."""
    if not s or s.get("median") is None:
        return "–"
    if s.get("n", 1) <= 1:
        return _fmt(s["median"], unit, scale, digits)
    return f"{_fmt(s['median'], unit, scale, digits)} ({_fmt(s['min'], '', scale, digits)}–{_fmt(s['max'], '', scale, digits)})"


def markdown(res: dict) -> str:
    """The suite's results as a Markdown table (one row per figure)."""
    m, meta = res["machine"], res["meta"]
    lines = [f"## plume-capture benchmark {meta['date']} on {m['host']}", "",
             f"`{meta['command']}` · commit `{(meta['commit'] or {}).get('commit') or '?'}`"
             f"{' (dirty)' if (meta['commit'] or {}).get('dirty') else ''} · {m['cores']} cores "
             f"({m['cpu']}), {m['ram_gb']} GB RAM · load average before {meta['load_before']}, "
             f"after {meta['load_after']} · {meta['elapsed_s'] / 60:.1f} min", "",
             "Median of repeats (min–max). Rates in steps/s (M = 10^6). Load = 1-min load average "
             "before → after the figure (2 cores: load > 2 means other work shared the machine).", "",
             "| figure | result | target | load |", "|---|---|---|---|"]
    for row in res["rows"]:
        lines.append(f"| {row['figure']} | {row['result']} | {row.get('target', '')} | {row.get('load', '')} |")
    notes = res.get("notes") or []
    if notes:
        lines += ["", *[f"* {n}" for n in notes]]
    lines.append("")
    lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()))
    return "\n".join(lines) + "\n"


def load_str(before, after) -> str:
    return f"{before[0]:.1f}→{after[0]:.1f}"
