"""ShardRunner: a shard's records do not depend on how many rows one kernel call may write."""
from __future__ import annotations

import dataclasses

import pyarrow as pa
import pytest

from capture_helpers import WALL_CLOCK, config
from plume_capture.capture.run import prepare
from plume_capture.config import resolve
from plume_capture.sim.plan import Shard
from plume_capture.sim.runner import ShardRunner


@pytest.mark.parametrize("chunk_rows", [1, 7, 300])
def test_records_independent_of_kernel_call_size(tmp_path, chunk_rows):
    p = prepare(resolve(config(output=str(tmp_path), episodes=12, seed=3,
                               env={"grid_size": [32, 32], "max_steps": 150}, policy={"name": "random"})))
    job = p.job()
    shard = Shard(0, 2, 12)
    whole = ShardRunner(job, physics=p.physics)._simulate(shard)
    cut = ShardRunner(dataclasses.replace(job, chunk_rows=chunk_rows), physics=p.physics)._simulate(shard)
    assert whole[0].column("ts").num_chunks == 1  # a default shard is written by one kernel call
    assert cut[0].column("ts").num_chunks > 1
    for a, b in zip(whole, cut):
        keep = [c for c in a.column_names if c not in WALL_CLOCK]
        assert a.num_rows > 0 and a.select(keep).equals(b.select(keep))
    assert whole[1].num_rows == 10 and whole[0].num_rows == sum(whole[1].column("total_steps").to_pylist())


def test_short_episodes_do_not_pin_the_kernel_bound(tmp_path):
    """8x8 with a goal radius covering the grid: every episode ends on its first step, so a
    shard's rows are a tiny part of the kernel's bound (episodes x max_steps)."""
    p = prepare(resolve(config(output=str(tmp_path), episodes=500, seed=1,
                               env={"grid_size": [8, 8], "max_steps": 1000, "goal_radius": 20.0})))
    runner = ShardRunner(p.job(), physics=p.physics)
    before = pa.total_allocated_bytes()
    steps, episodes = runner._simulate(Shard(0, 0, 500))
    assert steps.num_rows == 500 and episodes.column("total_steps").to_pylist() == [1] * 500
    # the records hold ~100 kB; the bound would be 262144 rows (~23 MB)
    assert pa.total_allocated_bytes() - before < 2 << 20


@pytest.mark.parametrize("chunk_rows", [1 << 18, 50])
def test_episode_durations_are_the_kernel_time_of_their_steps(tmp_path, chunk_rows):
    """docs/spec.md §9.4: each kernel call's measured time is split over its steps; an episode's
    duration_ms is the sum over its steps — never 0.0 for an episode computed within one call."""
    import time

    import numpy as np

    p = prepare(resolve(config(output=str(tmp_path), episodes=40, seed=3,
                               env={"grid_size": [64, 64], "max_steps": 200})))
    runner = ShardRunner(dataclasses.replace(p.job(), chunk_rows=chunk_rows), physics=p.physics)
    runner._simulate(Shard(0, 0, 40))  # compiled before the timing
    t0 = time.perf_counter()
    steps, episodes = runner._simulate(Shard(0, 0, 40))
    wall_ms = (time.perf_counter() - t0) * 1000.0
    dur = np.array(episodes.column("duration_ms").to_pylist())
    n = np.array(episodes.column("total_steps").to_pylist())
    avg = np.array(episodes.column("avg_step_time_ms").to_pylist())
    assert (dur > 0).all() and dur.sum() <= wall_ms
    np.testing.assert_allclose(avg, dur / n, rtol=1e-12)
    ts = np.array(steps.column("ts").to_pylist())
    assert (np.diff(ts) >= 0).all() and abs(ts[-1] - time.time()) < 60
