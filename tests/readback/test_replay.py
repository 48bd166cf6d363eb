"""Replay (docs/spec.md §11): re-simulating recorded episodes agrees with the records; damage is located."""
import gzip
import itertools
import json
from pathlib import Path

import pytest

from plume_capture.capture import capture
from plume_capture.config import complete_config
from plume_capture.readback.replay import replay_run

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "reference_runs"

POLICY_FOR = {"discrete": "random", "oriented": "temporal_derivative", "run_tumble": "run_tumble_chemotaxis"}


def _run(tmp_path, policy=None, **env):
    cfg = complete_config({"output": str(tmp_path), "experiment": "replay", "episodes": 4, "seed": 11,
                           "env": {"grid_size": [16, 12], "max_steps": 60, **env},
                           "policy": {"name": policy or POLICY_FOR[env.get("action_type", "oriented")]},
                           "wind": {"noise_std": 0.25}, "engine": {"kind": "local"}})
    return capture(cfg).run_dir


@pytest.mark.parametrize("action_type,observation_type,reward_type", list(itertools.product(
    ("discrete", "oriented", "run_tumble"), ("concentration", "antennae", "wind_vector"), ("sparse", "step_penalty"))))
def test_replay_agrees_for_every_type(tmp_path, action_type, observation_type, reward_type):
    run_dir = _run(tmp_path, action_type=action_type, observation_type=observation_type, reward_type=reward_type)
    res = replay_run(run_dir)
    assert res["ok"], res
    assert res["mode"] == "policy" and res["episodes_checked"] == 4 and res["steps_checked"] > 4


def test_altered_reward_is_reported_at_its_episode_and_step(tmp_path):
    run_dir = _run(tmp_path, policy="random", grid_size=[64, 64])
    path = run_dir / "steps.jsonl.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    target = next(i for i, line in enumerate(lines)
                  if json.loads(line)["episode_id"] == "ep-000003" and json.loads(line)["step"] == 7)
    rec = json.loads(lines[target])
    rec["reward"] = 0.5
    lines[target] = json.dumps(rec)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    res = replay_run(run_dir)
    assert not res["ok"]
    assert res["divergence"]["episode"] == "ep-000003"
    assert res["divergence"]["step"] == 7
    assert res["divergence"]["field"] == "reward"
    assert res["divergence"]["actual"] == 0.5
    assert res["episodes_checked"] == 3  # the first two agreed


def test_replay_limited_to_k_episodes(tmp_path):
    res = replay_run(_run(tmp_path), episodes=2)
    assert res["ok"] and res["episodes_checked"] == 2


@pytest.mark.parametrize("name", ["config_mode_64x64", "legacy_8x8_parquet"])
def test_reference_runs_replay_with_their_recorded_actions(name):
    res = replay_run(FIXTURES / name)
    assert res["ok"], res
    assert res["mode"] == "actions" and res["episodes_checked"] >= 2


def test_validate_cli_replay(tmp_path):
    import subprocess
    import sys

    run_dir = _run(tmp_path, policy="random", grid_size=[64, 64])
    ok = subprocess.run([sys.executable, "-m", "plume_capture.cli.validate", str(run_dir), "--replay", "2"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "replay (policy): 2 episodes" in ok.stdout
    path = run_dir / "steps.jsonl.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    rec = json.loads(lines[3])
    rec["action"] = (rec["action"] + 1) % 3
    lines[3] = json.dumps(rec)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    from plume_capture.readback.replay import replay_run

    res = replay_run(run_dir)
    assert not res["ok"] and res["divergence"]["field"] == "action" and res["divergence"]["step"] == 4


def test_chunked_replay_locates_damage_in_a_later_chunk(tmp_path, monkeypatch):
    """Chunks of whole episodes are compared at once; a differing chunk is walked step by step, so
    the divergence and the counts are those of the step-by-step walk; progress sees every step."""
    from plume_capture.readback import replay

    run_dir = _run(tmp_path, policy="random", grid_size=[64, 64])
    monkeypatch.setattr(replay, "CHUNK_ROWS", 70)  # a chunk ends at the last whole episode of a batch
    seen = []
    res = replay_run(run_dir, progress=seen.append)
    path = run_dir / "steps.jsonl.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    assert res["ok"] and res["episodes_checked"] == 4 and sum(seen) == res["steps_checked"] == len(lines)
    assert len(seen) >= 2  # ep-000004 in a chunk of its own
    target = next(i for i, line in enumerate(lines)
                  if json.loads(line)["episode_id"] == "ep-000004" and json.loads(line)["step"] == 9)
    rec = json.loads(lines[target])
    rec["agent_position"]["x"] = (rec["agent_position"]["x"] + 1) % 64
    lines[target] = json.dumps(rec)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    res = replay_run(run_dir)
    assert not res["ok"] and res["episodes_checked"] == 4 and res["steps_checked"] == target
    assert res["divergence"]["episode"] == "ep-000004" and res["divergence"]["step"] == 9
    assert res["divergence"]["field"] == "agent_position"
    assert replay_run(run_dir, episodes=3)["ok"]


def test_validate_replay_refuses_a_run_whose_movie_changed(tmp_path, capsys):
    """The records are valid; replaying them on another movie would report a false divergence."""
    from plume_capture.cli.validate import main
    from plume_capture.readback.replay import EnvChanged
    from plume_capture.sim.synth import make_movie

    movie = make_movie(tmp_path / "m.npy", frames=6, height=12, width=16, seed=3)
    run_dir = capture(complete_config({
        "output": str(tmp_path), "experiment": "mv", "episodes": 3, "seed": 5,
        "env": {"plume": "movie", "max_steps": 30}, "movie": {"path": str(movie)},
        "policy": {"name": "temporal_derivative"}, "engine": {"kind": "local"}})).run_dir
    assert main([str(run_dir), "--replay"]) == 0
    capsys.readouterr()
    make_movie(movie, frames=6, height=12, width=16, seed=4)
    assert main([str(run_dir), "--replay"]) == 2
    cap = capsys.readouterr()
    assert cap.err.count("\n") == 1 and cap.err.startswith(f"plume-nav-validate: error: cannot replay {run_dir}: ")
    assert "the movie file changed since the capture" in cap.err and cap.out == ""
    assert main([str(run_dir)]) == 0  # the run itself is valid
    with pytest.raises(EnvChanged):
        replay_run(run_dir)
