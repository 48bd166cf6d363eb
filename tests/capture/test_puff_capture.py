"""The puff plume through the capture engine (issue 29): the same records whatever the engine,
threads, shards or kernel batch size; run.json, config_hash and ``plume-nav-validate --replay``.
(Seeds and the reference model: tests/kernels/test_puff.py.)"""
from __future__ import annotations

import gzip
import json
import subprocess
import sys

import numpy as np
import pytest

from capture_helpers import assert_same_records, config, records, run_json
from plume_capture.capture import capture
from plume_capture.config import config_hash

PUFF = dict(episodes=12, seed=21,
            env={"grid_size": [48, 32], "max_steps": 60, "plume": "puff", "goal_location": [6, 16],
                 "action_type": "oriented", "observation_type": "antennae", "n_sensors": 3},
            wind={"speed": 1.2, "direction_deg": 10.0},
            puff={"max_puffs": 40, "warmup_steps": 30, "meander_std": 1.0, "noise_std": 0.5},
            policy={"name": "surge_cast"})


def _run(tmp_path_factory, engine, **changes):
    out = tmp_path_factory.mktemp("puff")
    cfg = config(**{**PUFF, **changes}, output=str(out), parquet=True, engine=engine)
    return capture(cfg).run_dir


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    return _run(tmp_path_factory, {"kind": "local", "threads": 1})


def test_the_plume_is_sensed_and_recorded(baseline):
    from plume_capture.readback.validate import validate_run_artifacts

    rep = validate_run_artifacts(baseline)
    assert rep["ok"], rep["errors"][:5]
    obs = [v for r in records(baseline, "steps") for v in r["observation_summary"]]
    assert len(set(obs)) > 50 and max(obs) > 0.2  # a changing plume, not a constant field
    meta = run_json(baseline)
    env = meta["extra"]["env"]
    assert env["plume"] == "puff" and "sigma" not in env
    assert env["puff"] == {"birth_rate": 1.0, "init_radius": 1.0, "spread_rate": 1.0, "meander_std": 1.0,
                           "meander_time": 10.0, "noise_std": 0.5, "dt": 1.0, "max_puffs": 40, "warmup_steps": 30}
    assert env["wind"] == {"direction_deg": 10.0, "speed": 1.2, "noise_std": 0.0}
    assert meta["env_config"]["plume_params"] == {"source_location": [6, 16]}
    assert meta["config_hash"] == config_hash(config(**PUFF))


def test_captured_readings_are_the_reference_models(tmp_path):
    """The capture engine senses the plume of the slow reference model (tests/reference_puff.py) at
    every recorded position: the engine, the envs and the reference share one physics."""
    from reference_puff import PuffPlume

    env = {"grid_size": [24, 16], "max_steps": 15, "plume": "puff", "goal_location": [3, 8],
           "observation_type": "concentration", "goal_radius": 0.0}
    puff = {"max_puffs": 9, "warmup_steps": 12, "meander_std": 1.0, "noise_std": 0.5}
    wind = {"speed": 0.8, "direction_deg": 20.0}
    run = capture(config(episodes=4, seed=7, env=env, puff=puff, wind=wind, output=str(tmp_path),
                         engine={"kind": "local", "threads": 1})).run_dir
    group = run_json(run)["extra"]["env"]["puff"]
    checked = set()
    plume = None
    for r in records(run, "steps"):
        if r["step"] == 1:
            plume = PuffPlume(r["seed"], 24, 16, (3, 8), wind["speed"], wind["direction_deg"], **group)
        plume.step()
        pos = r["agent_position"]
        assert r["observation_summary"][0] == plume.concentration(pos["x"], pos["y"]), r
        checked.add(r["observation_summary"][0])
    assert len(checked) > 10  # the plume was really sensed, and changed


@pytest.mark.parametrize("engine", [
    {"kind": "local", "threads": 2, "shard_episodes": 5},
    {"kind": "local", "threads": 3, "shard_episodes": 1, "window": 1},
], ids=["local-2-threads", "local-3-threads-1-episode-shards"])
def test_same_records_on_any_local_plan(baseline, tmp_path_factory, engine):
    assert_same_records(baseline, _run(tmp_path_factory, engine), parquet=True)


def test_same_records_on_ray_actors(baseline, tmp_path_factory, ray_session):
    run = _run(tmp_path_factory, {"kind": "ray", "num_actors": 2, "shard_episodes": 4})
    assert_same_records(baseline, run, parquet=True)
    assert run_json(run)["extra"]["engine"]["kind"] == "ray"


@pytest.mark.parametrize("capacity", [1, 7, 61, 100_000])
def test_same_rows_for_any_kernel_batch_size(capacity):
    """Resumable kernel calls of any row capacity (the plume's state carries over between calls)."""
    from plume_capture.kernels import specialize
    from plume_capture.kernels.rollout import run_episodes
    from plume_capture.config import resolve

    spec = resolve(config(**PUFF), check_paths=False)
    ka = spec.env.build().kernel_args(spec.policy)
    seeds = np.arange(21, 27, dtype=np.int64)

    def rows(cap):
        st, ep = ka.state, ka.episodes(len(seeds))
        for buf in st:
            buf[:] = 0
        kern = specialize(run_episodes, ka.codes, (ka.params, ka.field, seeds, st, ka.rows(1), ep))
        parts = []
        while st.episode[0] < len(seeds):
            out = ka.rows(cap)
            r = kern(ka.params, ka.field, seeds, st, out, ep)
            parts.append([c[:r].copy() for c in out])
        return [np.concatenate(c) for c in zip(*parts)]

    for a, b in zip(rows(100_000), rows(capacity)):
        np.testing.assert_array_equal(a, b)


def test_config_hash_covers_the_puff_settings_only_for_a_puff_plume():
    base = config_hash(config(**PUFF))
    for key, value in [("birth_rate", 2.0), ("init_radius", 1.5), ("spread_rate", 0.5), ("meander_std", 0.0),
                       ("meander_time", 5.0), ("noise_std", 0.0), ("dt", 0.5), ("max_puffs", 41),
                       ("warmup_steps", 0)]:
        changed = config(**{**PUFF, "puff": {**PUFF["puff"], key: value}})
        assert config_hash(changed) != base, key
    # Static and movie configs hash as before the puff plume existed (values from that version).
    assert config_hash({}) == "51d11ed1def804a6d1feee7089babb8928207137bea9ca0c1f7aa4f0c9bccb97"
    assert config_hash({"env": {"plume": "movie"}, "movie": {"path": "x.npy"}}) == \
        "15c631383d2db7a9628999d2e8807681d2eee53570d8d45dc990c3f7b84201a1"
    assert config_hash({"puff": {"birth_rate": 3.0}}) == config_hash({})


def test_bad_puff_setting_is_exit_2_with_nothing_left_behind(tmp_path):
    done = subprocess.run([sys.executable, "-m", "plume_capture", "--output", str(tmp_path),
                           "env.plume=puff", "puff.dt=0"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "puff.dt" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
    done = subprocess.run([sys.executable, "-m", "plume_capture", "--output", str(tmp_path),
                           "puff.speed=1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "puff.speed" in done.stderr


def test_validate_replay_re_steps_the_puff_plume(baseline, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(baseline, run)
    ok = subprocess.run([sys.executable, "-m", "plume_capture.cli.validate", str(run), "--replay", "3"],
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "replay (policy): 3 episodes" in ok.stdout
    # One reading changed by one ulp: replay finds it.
    path = run / "steps.jsonl.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    i = next(i for i, ln in enumerate(lines) if json.loads(ln)["observation_summary"][0] > 0.05)
    rec = json.loads(lines[i])
    rec["observation_summary"][0] = float(np.nextafter(np.float32(rec["observation_summary"][0]), np.float32(1)))
    lines[i] = json.dumps(rec)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    from plume_capture.readback.replay import replay_run

    res = replay_run(run)
    assert not res["ok"] and res["divergence"]["field"] == "observation_summary"
    assert res["divergence"]["step"] == rec["step"]


def test_random_puff_values_are_refused_in_one_line_or_run(tmp_path, capsys):
    """Any value of any ``puff`` key: exit 2 with one line naming it, or a run that validates."""
    from plume_capture.cli.capture import main, prepare
    from plume_capture.errors import ConfigError
    from plume_capture.readback.validate import validate_run_artifacts
    from plume_capture.sim.puff import RANGES

    rng = np.random.default_rng(29)
    pool = ["-1", "0", "1", "2.5", "1e-7", "33", "1e300", "-1e300", "nan", "inf", "true", "abc", "null",
            "[1,2]", "65536", "65537", "100000", "100001", "0.001", "1e9"]
    seen = {"refused": 0, "ran": 0}
    for i in range(40):
        key = sorted(RANGES)[int(rng.integers(len(RANGES)))]
        argv = ["--output", str(tmp_path / f"o{i}"), "--quiet", "--engine", "local", "episodes=2",
                "env.max_steps=20", "env.grid_size=[16,16]", "env.plume=puff", "env.goal_location=[2,8]",
                "puff.warmup_steps=10", f"puff.{key}={pool[int(rng.integers(len(pool)))]}"]
        try:
            prepare(argv)
            refused = False
        except ConfigError:
            refused = True
        capsys.readouterr()
        rc = main(argv)
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        if refused:
            assert rc == 2 and len(err) == 1 and f"puff.{key}" in err[0], (argv[-1], err)
            assert not (tmp_path / f"o{i}").exists()
            seen["refused"] += 1
        else:
            assert rc == 0, (argv[-1], err)
            (run,) = [p for p in (tmp_path / f"o{i}" / "default").iterdir()]
            assert validate_run_artifacts(run)["ok"]
            seen["ran"] += 1
    assert seen["refused"] >= 10 and seen["ran"] >= 5, seen
