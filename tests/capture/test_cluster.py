"""A 3-node ``ray.cluster_utils.Cluster`` (head + 2 nodes, 1 CPU each) on this machine: one actor per
node gives the in-process records; removing a node that holds an actor mid-run loses nothing.

Node IP 127.0.0.2 avoids Ray's loopback hang; RAY_AUTH_MODE=disabled (set in conftest) is inherited
by every node; fast health checks on the head detect the dead node in ~1-3 s."""
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


@pytest.mark.parametrize("fmt", ["npy", "zarr"])
def test_movie_plume_same_records_across_nodes(cluster, tmp_path, fmt):
    """Each node opens the movie from the shared path itself (a Zarr is decoded once per node)."""
    from plume_capture.sim.synth import make_movie

    movie = make_movie(tmp_path / f"plume.{fmt}", frames=20, height=32, width=40, seed=3)
    data = dict(episodes=24, seed=9, env={"plume": "movie", "max_steps": 60, "observation_type": "antennae"},
                movie={"path": str(movie), "step_policy": "clamp"})
    local = capture(_cfg(tmp_path, "mlocal", {"kind": "local"}, **data)).run_dir
    import ray

    nodes = sum(1 for n in ray.nodes() if n["Alive"])  # 3, or 2 after the node-removal test
    run = capture(_cfg(tmp_path, "mcluster", {"kind": "ray", "num_actors": nodes, "shard_episodes": 3},
                       **data)).run_dir
    info = run_json(run)["extra"]["engine"]
    assert info["nodes"] == nodes, info
    assert run_json(run)["extra"]["env"]["movie"]["identity"] == run_json(local)["extra"]["env"]["movie"]["identity"]
    assert_same_records(local, run, parquet=True)


def test_every_shard_is_written_by_its_worker_on_a_shared_directory(cluster, tmp_path):
    """Every node sees the output directory (one machine): the workers write every shard's files,
    the driver only renames them; the records are the in-process ones."""
    data = dict(episodes=48, seed=11, env={"grid_size": [32, 32], "max_steps": 100}, rotate_size=20000)
    local = capture(_cfg(tmp_path, "local", {"kind": "local", "shard_episodes": 5}, **data)).run_dir
    run = capture(_cfg(tmp_path, "cluster", {"kind": "ray", "num_actors": 2, "shard_episodes": 5}, **data)).run_dir
    eng = run_json(run)["extra"]["engine"]
    assert eng["layout"] == "per_shard" and eng["shards"] == 10, eng
    assert eng["shards_written_by_workers"] == 10 and eng["shards_written_by_driver"] == 0, eng
    assert sorted(p.name for p in (run / "steps.parquet").iterdir()) == [f"part-{i:05d}.parquet" for i in range(10)]
    assert not (run / ".shards").exists() and not (run / ".probe").exists()
    assert_same_records(local, run, parquet=True)
    assert _names_rows(run) == _names_rows(local)


def _names_rows(run) -> dict:
    return {n: f["rows"] for n, f in run_json(run)["extra"]["files"].items()}


@pytest.fixture
def unshared_node(cluster, tmp_path):
    """A 4th node whose processes see an empty tmpfs at ``tmp_path/out`` (a private mount
    namespace): a node that does not share the output directory. Needs root (``unshare -m``)."""
    import os
    import shutil
    import signal
    import subprocess
    import sys

    import ray

    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) to give one node its own view of the output directory")
    c, _ = cluster
    out = tmp_path / "out"
    out.mkdir()
    before = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    cmd = (f"mount -t tmpfs tmpfs {out} && exec {ray_cli} start --address={c.address} "
           f"--node-ip-address={NODE_IP} --num-cpus=1 --block --disable-usage-stats")
    proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", cmd],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240  # a raylet starting on a loaded 2-core CI box
        while time.monotonic() < deadline:
            new = {n["NodeID"] for n in ray.nodes() if n["Alive"]} - before
            if new:
                break
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.2)
        else:
            pytest.fail("the unshared node did not join")
        yield out, new.pop()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the group of the process we started (its raylet, workers)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(
                n["Alive"] for n in ray.nodes() if n["NodeID"] not in before):
            time.sleep(0.2)


def test_a_node_that_does_not_see_the_output_ships_its_shards_to_the_driver(cluster, unshared_node, tmp_path):
    """One node of four has its own (empty) view of the output directory: its workers do not find
    the run's probe file, so they send their shards' bytes and the driver writes them; the others
    write theirs. One run directory holds everything, the records are the in-process ones."""
    import ray

    out, node = unshared_node
    nodes = sum(1 for n in ray.nodes() if n["Alive"])  # 4, or 3 after the node-removal test
    data = dict(episodes=64, seed=4, env={"grid_size": [32, 32], "max_steps": 100})
    local = capture(config(output=str(tmp_path / "local"), parquet=True,
                           engine={"kind": "local", "shard_episodes": 4}, **data)).run_dir
    run = capture(config(output=str(out), parquet=True,
                         engine={"kind": "ray", "num_actors": nodes, "shard_episodes": 4, "window": 1}, **data)).run_dir
    eng = run_json(run)["extra"]["engine"]
    assert eng["nodes"] == nodes, eng
    assert eng["shards_written_by_driver"] >= 1 and eng["shards_written_by_workers"] >= 1, eng
    assert eng["shards_written_by_driver"] + eng["shards_written_by_workers"] == 16
    assert_same_records(local, run, parquet=True)
    assert _names_rows(run) == _names_rows(local)
    assert node in {n["NodeID"] for n in ray.nodes() if n["Alive"]}


def test_a_node_that_cannot_see_the_movie_is_refused_before_any_shard_runs(cluster, unshared_node, tmp_path, capsys):
    """The movie lies where one node of four sees an empty tmpfs: the run stops with one line
    naming the movie and that node, exit 3, and nothing is written."""
    import ray

    from plume_capture.cli.capture import main
    from plume_capture.sim.synth import make_movie

    out, node = unshared_node
    movie = make_movie(out / "plume.npy", frames=8, height=16, width=16, seed=1)
    nodes = sum(1 for n in ray.nodes() if n["Alive"])
    root = tmp_path / "runs"
    code = main(["--quiet", "--episodes", "8", "--output", str(root), "--engine", "ray", "--num-actors", str(nodes),
                 "env.plume=movie", f"movie.path={movie}", "env.max_steps=20"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3, err
    assert len(err) == 1 and f"movie {str(movie)!r} is not visible on node" in err[0] and node[:8] in err[0], err
    assert not root.exists() or not any(root.rglob("*.jsonl*")), list(root.rglob("*"))
