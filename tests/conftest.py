"""Shared fixtures. Ray settings are fixed here, before anything imports Ray (RAY_NOTES.md)."""
import os
import tempfile

import pytest

_RAY_TMP = tempfile.mkdtemp(prefix="pcr", dir="/tmp")
os.environ.setdefault("RAY_TMPDIR", _RAY_TMP)
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ.pop("RAY_ADDRESS", None)
os.environ.setdefault("PLUME_CAPTURE_TEST_MARKER", _RAY_TMP)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole test session (2 CPUs, small object store)."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, object_store_memory=256 << 20, log_to_driver=False,
                 include_dashboard=False)
    yield ray
    ray.shutdown()
