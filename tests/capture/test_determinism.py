"""Determinism (docs/spec.md §8, issue 3): the same config gives the same records — JSON Lines text and
Parquet values minus wall-clock fields — in-process on 1-3 threads, on Ray with 1 or 2 actors, with any shard size,
window or rotation; JSON Lines and Parquet agree; standard tools read the outputs."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from capture_helpers import (
    BASES,
    assert_jsonl_equals_parquet,
    assert_same_records,
    config,
    jsonl_files,
    raw_text,
    records,
    run_json,
)
from plume_capture.capture import capture
from plume_capture.errors import ConfigError

# A random-policy run and one with a built-in policy on run_tumble actions and antennae sensors
# (stochastic: eps > 0), on a non-square grid.
CONFIGS = {
    "random": dict(episodes=60, seed=7, env={"grid_size": [64, 64], "max_steps": 200}),
    "chemotaxis": dict(episodes=40, seed=11,
                       env={"grid_size": [96, 64], "max_steps": 300, "action_type": "run_tumble",
                            "observation_type": "antennae", "goal_location": [70, 30]},
                       policy={"name": "run_tumble_chemotaxis", "eps": 0.2}),
}

# (id, config name, engine settings, rotate_size)
VARIANTS = [
    ("local-2-threads-shards7-rotated", "random", {"kind": "local", "threads": 2, "shard_episodes": 7}, 20_000),
    ("local-3-threads-window1", "chemotaxis", {"kind": "local", "threads": 3, "shard_episodes": 2, "window": 1},
     None),
    ("ray-1-actor", "random", {"kind": "ray", "num_actors": 1, "shard_episodes": 16}, None),
    ("ray-2-actors-window1", "random", {"kind": "ray", "num_actors": 2, "shard_episodes": 5, "window": 1}, None),
    ("ray-2-actors-window3-rotated", "random", {"kind": "ray", "num_actors": 2, "shard_episodes": 13,
                                                "window": 3}, 4096),
    ("ray-2-actors-rotated", "chemotaxis", {"kind": "ray", "num_actors": 2, "shard_episodes": 3}, 8192),
]


def _run(tmp_path_factory, name, engine, rotate_size=None, parquet=True):
    out = tmp_path_factory.mktemp(name.replace("/", "_"))
    cfg = config(**CONFIGS[name], output=str(out), parquet=parquet, rotate_size=rotate_size, engine=engine)
    return capture(cfg).run_dir


@pytest.fixture(scope="module")
def baselines(tmp_path_factory):
    """Each config run in-process on one thread with the default plan (one shard), no rotation."""
    return {name: _run(tmp_path_factory, name, {"kind": "local", "threads": 1}) for name in CONFIGS}


def test_baseline_is_valid_and_jsonl_equals_parquet(baselines):
    from plume_capture.readback.validate import validate_run_artifacts

    for name, run in baselines.items():
        rep = validate_run_artifacts(run)
        assert rep["ok"], (name, rep["errors"][:5])
        assert_jsonl_equals_parquet(run)
        meta = run_json(run)
        n = CONFIGS[name]["episodes"]
        assert meta["extra"]["status"] == "complete" and meta["extra"]["counts"]["episodes"] == n
        eps = records(run, "episodes")
        assert [e["episode_id"] for e in eps] == [f"ep-{i + 1:06d}" for i in range(n)]
        seeds = sorted({s["seed"] for s in records(run, "steps")})
        assert seeds == [CONFIGS[name]["seed"] + i for i in range(n)]
    chem = records(baselines["chemotaxis"], "steps")
    assert all(len(r["observation_summary"]) == 2 for r in chem)  # antennae: one value per sensor
    assert {r["action"] for r in chem} == {0, 1}  # run and tumble both happen


@pytest.mark.parametrize("variant, name, engine, rotate_size", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_same_records_any_engine_plan_and_rotation(variant, name, engine, rotate_size, baselines,
                                                   tmp_path_factory, request):
    if engine["kind"] == "ray":
        request.getfixturevalue("ray_session")
    run = _run(tmp_path_factory, name, engine, rotate_size)
    if rotate_size is not None:
        assert len(jsonl_files(run, "steps")) > 1, "the rotated run should have parts"
    assert_same_records(baselines[name], run, parquet=True)
    assert_jsonl_equals_parquet(run)
    info = run_json(run)["extra"]["engine"]
    assert info["kind"] == engine["kind"]
    if engine["kind"] == "ray":
        assert info["actors"] == engine["num_actors"] and info["shard_retries"] == 0
    else:
        assert info["threads"] == engine["threads"]


def test_ray_default_plan_and_no_parquet(baselines, tmp_path_factory, ray_session):
    """Ray with the engine's own shard size and actor count; without Parquet the JSON Lines are
    still the same."""
    run = _run(tmp_path_factory, "random", {"kind": "ray"}, parquet=False)
    assert not list(run.glob("*.parquet"))
    assert_same_records(baselines["random"], run)


def test_standard_readers(tmp_path_factory):
    """pandas, polars, duckdb, pyarrow and zcat read a rotated run (every part) and agree with json."""
    import duckdb
    import pandas as pd
    import polars as pl
    import pyarrow.parquet as pq

    run = _run(tmp_path_factory, "random", {"kind": "local", "shard_episodes": 9}, rotate_size=6000)
    for base in BASES:
        files = jsonl_files(run, base)
        recs = records(run, base)
        if base == "steps":
            assert len(files) > 2
        zcat = subprocess.run(["zcat", *map(str, files)], capture_output=True, check=True).stdout
        assert zcat.decode("utf-8") == raw_text(run, base)

        frames = [pd.read_json(f, lines=True, precise_float=True, dtype={"schema_version": str}) for f in files]
        df = pd.concat(frames, ignore_index=True)
        assert df.to_dict("records") == recs

        pl_df = pl.concat([pl.read_ndjson(f) for f in files])
        assert pl_df.to_dicts() == recs
        assert (run / f"{base}.parquet").is_dir()  # a multi-shard run: a Parquet part per shard
        assert pl.read_parquet(run / f"{base}.parquet").to_dicts() == recs
        col = "reward" if base == "steps" else "total_reward"
        assert pd.read_parquet(run / f"{base}.parquet")[col].tolist() == [r[col] for r in recs]
        assert pq.read_table(run / f"{base}.parquet").to_pylist() == recs

        names = ", ".join(f"'{f}'" for f in files)
        total = duckdb.sql(f"SELECT count(*) FROM read_json_auto([{names}])").fetchall()[0][0]
        assert total == len(recs)
        got = duckdb.sql(f"SELECT {col} FROM read_json_auto([{names}])").fetchall()
        assert [g[0] for g in got] == [r[col] for r in recs]
        got = duckdb.sql(f"SELECT {col} FROM read_parquet('{run / (base + '.parquet')}')").fetchall()
        assert [g[0] for g in got] == [r[col] for r in recs]


def test_zero_episodes_is_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="episodes"):
        capture(config(output=str(tmp_path / "out"), episodes=0))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))


@pytest.mark.parametrize("max_steps", [1, 50])
def test_tiny_grid_large_radius(tmp_path, max_steps):
    """8x8 grid, goal radius 5: many episodes end on step 1 (with max_steps 1, all do), many per
    kernel call; in-process and on Ray agree."""
    from plume_capture.readback.validate import validate_run_artifacts

    runs = []
    for engine in ({"kind": "local"}, {"kind": "local", "shard_episodes": 3}):
        cfg = config(output=str(tmp_path / str(len(runs))), episodes=50, seed=0, parquet=True,
                     env={"grid_size": [8, 8], "goal_radius": 5, "max_steps": max_steps}, engine=engine)
        runs.append(capture(cfg).run_dir)
    rep = validate_run_artifacts(runs[0])
    assert rep["ok"], rep["errors"][:5]
    eps = records(runs[0], "episodes")
    assert len(eps) == 50
    if max_steps == 1:
        assert all(e["total_steps"] == 1 for e in eps)
    assert sum(e["total_steps"] == 1 and e["terminated"] for e in eps) > 0
    assert_same_records(runs[0], runs[1], parquet=True)


def test_tiny_grid_on_ray(tmp_path, ray_session):
    runs = []
    for engine in ({"kind": "local"}, {"kind": "ray", "num_actors": 2, "shard_episodes": 4}):
        cfg = config(output=str(tmp_path / str(len(runs))), episodes=40, seed=3, parquet=True,
                     env={"grid_size": [8, 8], "goal_radius": 5, "max_steps": 1}, engine=engine)
        runs.append(capture(cfg).run_dir)
    assert_same_records(runs[0], runs[1], parquet=True)


def test_strip_wall_clock_keeps_everything_else():
    from capture_helpers import strip_wall_clock

    line = json.dumps({"avg_step_time_ms": 1.5e-3, "duration_ms": 0.0, "episode_id": "ep-000001",
                       "run_id": "run-1-a", "x": [1.0, 2.0], "ts": 1795775121.9385302},
                      separators=(",", ":"))
    assert strip_wall_clock(line) == '{"episode_id":"ep-000001","x":[1.0,2.0]}'
    assert shutil.which("zcat")


@pytest.mark.parametrize("rotate_size", [1, 3000, 20000])
def test_the_bound_on_json_lines_parts_holds(tmp_path, rotate_size):
    """The rotation check's bounds (io.jsonl_encode.max_line_bytes, io.shardfiles.max_parts) are
    never below what a run writes: its longest record, and each shard's number of parts."""
    import collections

    from isal import igzip

    from plume_capture.io.jsonl_encode import max_line_bytes
    from plume_capture.io.shardfiles import max_parts

    run = capture(config(output=str(tmp_path), episodes=24, seed=9, rotate_size=rotate_size,
                         env={"grid_size": [48, 48], "max_steps": 400, "observation_type": "antennae",
                              "n_sensors": 3},
                         engine={"kind": "local", "shard_episodes": 4})).run_dir
    meta = json.loads((run / "run.json").read_text())
    for base, rows in (("steps", 4 * 400), ("episodes", 4)):
        line = max_line_bytes(base, obs_size=3, run_id=meta["run_id"], episodes=24, max_steps=400)
        per_shard = collections.Counter()
        for name in meta["extra"]["files"]:
            if name.startswith(base + ".") and name.endswith(".jsonl.gz"):
                lines = igzip.decompress((run / name).read_bytes()).split(b"\n")[:-1]
                assert max(len(ln) + 1 for ln in lines) <= line
                per_shard[(int(json.loads(lines[0])["episode_id"][3:]) - 1) // 4] += 1
        assert len(per_shard) == 6 and max(per_shard.values()) <= max_parts(rows, line, rotate_size), per_shard
