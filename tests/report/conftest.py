"""Small real captures shared by the report tests (in-process engine, a few hundred steps each)."""
from __future__ import annotations

import pytest

from plume_capture.capture import capture_many
from plume_capture.config import complete_config


def small_cfg(output, experiment, **over):
    env = {"grid_size": [32, 32], "max_steps": 60, "goal_radius": 5.0, "goal_location": [24, 24]}
    env.update(over.pop("env", {}))
    cfg = {"output": str(output), "experiment": experiment, "episodes": 12, "seed": 7,
           "env": env, "engine": {"kind": "local", "quiet": True}}
    cfg.update(over)
    return complete_config(cfg)


@pytest.fixture(scope="session")
def sweep_dir(tmp_path_factory):
    """A 4-point sweep (policy x goal radius) in one experiment directory."""
    root = tmp_path_factory.mktemp("report_sweep")
    cfgs, ovs = [], []
    for policy in ("random", "surge_cast"):
        for radius in (3.0, 8.0):
            cfgs.append(small_cfg(root, "sweep", env={"goal_radius": radius},
                                  policy={"name": policy}))
            ovs.append([f"policy.name={policy}", f"env.goal_radius={radius}"])
    capture_many(cfgs, overrides_list=ovs)
    return root / "sweep"


@pytest.fixture(scope="session")
def parquet_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("report_pq")
    res = capture_many([small_cfg(root, "pq", parquet=True, episodes=30,
                                  policy={"name": "surge_cast"})])[0]
    return res.run_dir
