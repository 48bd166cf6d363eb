"""How PlumeNav-v0 reaches gymnasium's registry, checked in fresh interpreters.

gymnasium >= 1.0 does not load ``gymnasium.envs`` entry points on import, so there is one
mechanism: importing ``plume_capture.envs`` registers PlumeNav-v0 (directly, or through gymnasium's
``"module:EnvId"`` form). ``import plume_capture`` alone stays light and registers nothing.
"""
import subprocess
import sys

import pytest

CASES = {
    "gymnasium_then_envs": "import gymnasium, plume_capture.envs; gymnasium.make('PlumeNav-v0')",
    "envs_then_gymnasium": "import plume_capture.envs, gymnasium; gymnasium.make('PlumeNav-v0')",
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


def test_package_import_is_light_and_registers_nothing():
    code = ("import sys, plume_capture, gymnasium; "
            "print('PlumeNav-v0' in gymnasium.registry, 'plume_capture.envs' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False False"
