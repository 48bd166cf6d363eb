"""Tiny runs execute the kernels' Python source without importing Numba; their records are
byte-identical to the compiled kernels' (same source, same physics)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.capture_helpers import jsonl_text

# (name, partial config): the runbook demo, then other observation/action/policy/reward choices.
CASES = {
    "demo": {"episodes": 2, "seed": 100, "env": {"grid_size": [8, 8]}},
    "discrete_antennae": {"episodes": 3, "seed": 7, "env": {"grid_size": [16, 12], "max_steps": 60,
                                                           "action_type": "discrete", "observation_type": "antennae",
                                                           "reward_type": "step_penalty"}},
    "surge_cast_wind": {"episodes": 2, "seed": 11, "env": {"grid_size": [20, 20], "max_steps": 80,
                                                          "observation_type": "wind_vector"},
                        "wind": {"noise_std": 0.3}, "policy": {"name": "surge_cast"}},
    "run_tumble": {"episodes": 2, "seed": 3, "env": {"grid_size": [12, 12], "max_steps": 50, "action_type": "run_tumble"},
                   "policy": {"name": "run_tumble_chemotaxis", "eps": 0.1}},
}

CHILD = textwrap.dedent("""
    import json, sys
    from plume_capture.capture import capture
    from plume_capture.kernels import _jit
    from tests.capture_helpers import config
    out, cases = sys.argv[1], json.loads(sys.argv[2])
    res = {}
    for mode in ("interpreted", "compiled"):
        if mode == "compiled":
            _jit.load_numba()
        for name, cfg in cases.items():
            r = capture(config(output=out, experiment=mode + "_" + name, **cfg))
            res[mode + "/" + name] = str(r.run_dir)
        if mode == "interpreted":
            res["numba_imported_interpreted"] = "numba" in sys.modules
    print(json.dumps(res))
""")


def test_tiny_runs_interpreted_match_compiled(tmp_path):
    r = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), json.dumps(CASES)], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "RuntimeWarning" not in r.stderr, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res.pop("numba_imported_interpreted") is False
    for name in CASES:
        for base in ("steps", "episodes"):
            a = jsonl_text(res["interpreted/" + name], base)
            b = jsonl_text(res["compiled/" + name], base)
            assert a and a == b, (name, base)
