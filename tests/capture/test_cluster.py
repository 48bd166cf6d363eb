"""A 3-node ``ray.cluster_utils.Cluster`` (head + 2 nodes, 1 CPU each) on this machine: one actor per
node gives the in-process records; removing a node that holds an actor mid-run loses nothing.

Node IP 127.0.0.2 avoids Ray's loopback hang; RAY_AUTH_MODE=disabled (set in conftest) is inherited
by every node; fast health checks on the head detect the dead node in ~1-3 s (RAY_NOTES.md)."""
from __future__ import annotations

import time

import pytest

from capture_helpers import assert_same_records, capture_in_thread, config, run_json
from plume_capture.capture import capture

pytestmark = pytest.mark.cluster

NODE_IP = "127.0.0.2"
FAST_HEALTH = {"health_check_period_ms": 500, "health_check_failure_threshold": 3, "health_check_timeout_ms": 1000}


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():  # the session's local instance, if a test started it; restarted on demand
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args=dict(
        num_cpus=1, node_ip_address=NODE_IP, include_dashboard=False, _system_config=FAST_HEALTH))
    try:
        workers = [c.add_node(num_cpus=1, node_ip_address=NODE_IP) for _ in range(2)]
        ray.init(address=c.address, log_to_driver=False)
        yield c, workers
    finally:
        ray.shutdown()
        c.shutdown()


def _cfg(tmp_path, name, engine, **kw):
    return config(output=str(tmp_path / name), parquet=True, engine=engine, **kw)


def test_one_actor_per_node_same_records(cluster, tmp_path):
    data = dict(episodes=60, seed=5, env={"grid_size": [64, 64], "max_steps": 200})
    local = capture(_cfg(tmp_path, "local", {"kind": "local"}, **data)).run_dir
    run = capture(_cfg(tmp_path, "cluster", {"kind": "ray", "num_actors": 3, "shard_episodes": 4}, **data)).run_dir
    info = run_json(run)["extra"]["engine"]
    assert info["actors"] == 3 and info["nodes"] == 3, info
    assert_same_records(local, run, parquet=True)


def _alive_runner_nodes() -> dict:
    """node id -> number of alive RunnerHost actors on it (from the GCS; no dashboard needed)."""
    import ray

    out: dict = {}
    for a in ray._private.state.actors().values():
        if a["ActorClassName"] == "RunnerHost" and a["State"] == "ALIVE":
            node = a["Address"]["NodeID"]
            out[node] = out.get(node, 0) + 1
    return out


def test_remove_node_mid_run_same_records(cluster, tmp_path):
    c, workers = cluster
    data = dict(episodes=400, seed=9, env={"grid_size": [128, 128], "max_steps": 1000})
    local = capture(_cfg(tmp_path, "local", {"kind": "local"}, **data)).run_dir

    cfg = _cfg(tmp_path, "cluster", {"kind": "ray", "num_actors": 3, "shard_episodes": 4}, **data)
    th, out, deadline = capture_in_thread(cfg, tmp_path / "cluster" / "default")
    assert th.is_alive(), f"the run ended before a node could be removed: {out}"
    placed = _alive_runner_nodes()
    while len(placed) < 3 and th.is_alive() and time.monotonic() < deadline:  # an actor may still be starting
        time.sleep(0.05)
        placed = _alive_runner_nodes()
    assert th.is_alive(), f"the run ended before a node could be removed: {out}"
    assert len(placed) == 3 and set(placed.values()) == {1}, placed
    victim = next(w for w in workers if w.node_id in placed)
    c.remove_node(victim, allow_graceful=False)
    th.join(timeout=180)
    assert not th.is_alive(), "the run did not finish after the node was removed"
    assert "error" not in out, out.get("error")
    run_dir = out["result"].run_dir
    info = run_json(run_dir)["extra"]["engine"]
    assert info["shard_retries"] >= 1, info  # the dead node's shards were re-run elsewhere
    assert_same_records(local, run_dir, parquet=True)


def test_default_actor_count_leaves_one_cpu_of_headroom_on_a_cluster(cluster, tmp_path):
    import ray

    cpus = int(ray.cluster_resources()["CPU"])  # 3, or 2 after the node-removal test
    run = capture(_cfg(tmp_path, "headroom", {"kind": "ray"}, episodes=4)).run_dir
    eng = run_json(run)["extra"]["engine"]
    assert eng["actors"] == cpus - 1  # one CPU left for restarted actors


def test_movie_plume_same_records_across_nodes(cluster, tmp_path):
    from plume_capture.sim.synth import make_movie

    movie = make_movie(tmp_path / "plume.npy", frames=20, height=32, width=40, seed=3)
    data = dict(episodes=24, seed=9, env={"plume": "movie", "max_steps": 60, "observation_type": "antennae"},
                movie={"path": str(movie), "step_policy": "clamp"})
    local = capture(_cfg(tmp_path, "mlocal", {"kind": "local"}, **data)).run_dir
    run = capture(_cfg(tmp_path, "mcluster", {"kind": "ray", "num_actors": 2, "shard_episodes": 3}, **data)).run_dir
    info = run_json(run)["extra"]["engine"]
    assert info["nodes"] >= 2, info
    assert run_json(run)["extra"]["env"]["movie"]["sha256"] == run_json(local)["extra"]["env"]["movie"]["sha256"]
    assert_same_records(local, run, parquet=True)
