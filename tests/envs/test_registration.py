"""How PlumeNav-v0 reaches gymnasium's registry, checked in fresh interpreters.

gymnasium >= 1.0 does not load ``gymnasium.envs`` entry points on import, so the registry
gets PlumeNav-v0 from importing ``plume_capture`` (either order) or from gymnasium's
``"module:EnvId"`` form, which imports ``plume_capture.envs``.
"""
import subprocess
import sys

import pytest

CASES = {
    "gymnasium_then_package": "import gymnasium, plume_capture; gymnasium.make('PlumeNav-v0')",
    "package_then_gymnasium": "import plume_capture, gymnasium; gymnasium.make('PlumeNav-v0')",
    "module_prefix": "import gymnasium; gymnasium.make('plume_capture.envs:PlumeNav-v0')",
}


@pytest.mark.parametrize("code", CASES.values(), ids=CASES.keys())
def test_make_in_fresh_interpreter(code):
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_plain_gymnasium_import_does_not_load_entry_points():
    code = "import gymnasium; print('PlumeNav-v0' in gymnasium.registry)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
