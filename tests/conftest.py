"""Shared fixtures. Ray settings are fixed here, before anything imports Ray."""
import os
import sys
import tempfile
import time
from pathlib import Path

import pytest

_RAY_TMP = tempfile.mkdtemp(prefix="pcr", dir="/tmp")
os.environ.setdefault("RAY_TMPDIR", _RAY_TMP)
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ.pop("RAY_ADDRESS", None)
os.environ.setdefault("PLUME_CAPTURE_TEST_MARKER", _RAY_TMP)
# Unique to this pytest process: every process it starts (Ray included) inherits it, so the
# session end can find and stop leftovers by PID (never by name, never `ray stop`).
SESSION_MARK_VAR = "PLUME_CAPTURE_TEST_SESSION"
os.environ[SESSION_MARK_VAR] = f"{_RAY_TMP}:{os.getpid()}"

from benchmarks.suite import stop_processes  # noqa: E402,F401  (SIGTERM then SIGKILL, by PID)

_local = {"gcs": None}


def ensure_local_ray():
    """The session's local Ray instance (2 CPUs, small object store); (re)started when Ray is not
    initialised or is connected to something else (e.g. after a test with a Cluster)."""
    import ray

    if ray.is_initialized():
        try:
            gcs = ray.get_runtime_context().gcs_address
        except Exception:
            gcs = None
        if gcs is not None and gcs == _local["gcs"]:
            return ray
        ray.shutdown()
    ray.init(address="local", num_cpus=2, object_store_memory=256 << 20, log_to_driver=False,
             include_dashboard=False)
    _local["gcs"] = ray.get_runtime_context().gcs_address
    return ray


@pytest.fixture(scope="session")
def _ray_session_owner():
    yield
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


@pytest.fixture
def ray_session(_ray_session_owner):
    """The shared local Ray instance (started once per session, restarted only when needed)."""
    return ensure_local_ray()


def marked_processes():
    """Processes started by this test session (they carry its mark in their environment)."""
    import psutil

    mark = os.environ[SESSION_MARK_VAR]
    found = []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get(SESSION_MARK_VAR) == mark:
                found.append(proc)
        except (psutil.Error, OSError):
            pass
    return found


#: The quick first check (``-m quick``, under 2 minutes of CPU): one file per layer, slow tests left out.
QUICK_FILES = ("test_architecture.py", "test_docs.py", "config/test_config.py", "kernels/test_kernel_rng.py",
               "envs/test_env_golden.py", "io/test_shardfiles.py", "sim/test_runner.py",
               "readback/test_docs_readers.py", "cli/test_cli.py", "report/test_report.py")


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).resolve().parent
    for item in items:
        rel = Path(str(item.fspath)).resolve().relative_to(here).as_posix()
        if rel in QUICK_FILES and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.quick)


def pytest_sessionfinish(session, exitstatus):
    """Stop every process this session started that is still running (Ray's raylet/gcs_server
    sometimes outlive ``ray.shutdown()``)."""
    deadline = time.monotonic() + 5
    procs = marked_processes()
    while procs and time.monotonic() < deadline:  # let a normal shutdown finish first
        time.sleep(0.5)
        procs = marked_processes()
    if procs:
        stop_processes(procs)
