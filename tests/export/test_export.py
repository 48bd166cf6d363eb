"""Exports (issue 16): Minari, RLlib offline Parquet and HF datasets read back by their libraries."""
import gzip
import itertools
import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from hostile import HOSTILE, run_cli
from plume_capture.capture import capture
from plume_capture.cli.export import main as export_main
from plume_capture.config import complete_config
from plume_capture.envs import PlumeNavVectorEnv
from plume_capture.export import export_hf, export_minari, export_rllib
from plume_capture.readback.load import load_run
from plume_capture.sim.synth import make_movie

POLICY_FOR = {"discrete": "random", "oriented": "temporal_derivative", "run_tumble": "run_tumble_chemotaxis"}


def _run(tmp_path, episodes=3, parquet=False, movie=False, **env):
    cfg = {"output": str(tmp_path / "runs"), "experiment": "exp", "episodes": episodes, "seed": 11,
           "parquet": parquet,
           "env": {"grid_size": [16, 12], "max_steps": 40, **env},
           "policy": {"name": POLICY_FOR[env.get("action_type", "oriented")]},
           "wind": {"noise_std": 0.25}, "engine": {"kind": "local"}}
    if movie:
        path = make_movie(tmp_path / "m.npy", frames=7, height=12, width=16, seed=3)
        cfg["env"]["plume"] = "movie"
        cfg["movie"] = {"path": str(path)}
    return capture(complete_config(cfg)).run_dir


def _restep(env, seed, actions):
    obs, _ = env.reset(seed=int(seed))
    out = {"observations": [obs], "rewards": [], "terminations": [], "truncations": []}
    for a in actions:
        obs, r, te, tr, _ = env.step(int(a))
        out["observations"].append(obs)
        out["rewards"].append(r)
        out["terminations"].append(te)
        out["truncations"].append(tr)
    return {k: np.asarray(v) for k, v in out.items()}


def _check_minari(run_dir, out, monkeypatch):
    import minari

    path = export_minari(run_dir, out)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(out))
    ds = minari.load_dataset(os.path.basename(path))
    run = load_run(run_dir)
    eps = run.episodes.to_pylist()
    steps = run.steps.to_pylist()
    assert ds.total_episodes == len(eps) and ds.total_steps == len(steps)
    env = ds.recover_environment()
    assert env.unwrapped.params.__dict__ == load_env(run_dir).unwrapped.params.__dict__
    with h5py.File(os.path.join(path, "data", "main_data.hdf5"), "r") as f:
        seeds = [int(f[f"episode_{i}"].attrs["seed"]) for i in range(len(eps))]
    row = 0
    for ep, rec, seed in zip(ds.iterate_episodes(), eps, seeds):
        T = rec["total_steps"]
        assert len(ep.actions) == T and ep.observations.shape[0] == T + 1
        assert seed == steps[row]["seed"]
        recorded = steps[row:row + T]
        row += T
        np.testing.assert_array_equal(ep.actions, [s["action"] for s in recorded])
        np.testing.assert_array_equal(ep.observations[1:],
                                      np.float32([s["observation_summary"] for s in recorded]))
        again = _restep(env, seed, ep.actions)
        np.testing.assert_array_equal(again["observations"], ep.observations)
        np.testing.assert_array_equal(again["rewards"], ep.rewards)
        np.testing.assert_array_equal(again["terminations"], ep.terminations)
        np.testing.assert_array_equal(again["truncations"], ep.truncations)
    assert row == len(steps)
    meta = json.loads(open(os.path.join(path, "data", "metadata.json")).read())
    prov = json.loads(meta["description"].split("provenance: ", 1)[1])
    assert (prov["run_id"], prov["config_hash"]) == (run.meta["run_id"], run.meta.get("config_hash"))
    assert meta["code_permalink"] and meta["env_spec"]


def load_env(run_dir):
    import gymnasium

    from plume_capture.export.reader import open_run

    return gymnasium.make("PlumeNav-v0", **open_run(run_dir).env_kwargs)


@pytest.mark.parametrize("action_type,observation_type,reward_type", list(itertools.product(
    ("discrete", "oriented", "run_tumble"), ("concentration", "antennae", "wind_vector"), ("sparse", "step_penalty"))))
def test_minari_restep_reproduces_export_for_every_type(tmp_path, monkeypatch, action_type, observation_type,
                                                        reward_type):
    run_dir = _run(tmp_path, action_type=action_type, observation_type=observation_type, reward_type=reward_type)
    _check_minari(run_dir, tmp_path / "minari", monkeypatch)


@pytest.mark.parametrize("observation_type", ["concentration", "antennae"])
def test_minari_movie_plume(tmp_path, monkeypatch, observation_type):
    run_dir = _run(tmp_path, movie=True, observation_type=observation_type)
    _check_minari(run_dir, tmp_path / "minari", monkeypatch)


def test_minari_from_parquet_source_and_small_chunks(tmp_path, monkeypatch):
    """Episodes split across source batches come out whole (carry between chunks)."""
    from plume_capture.export import reader

    run_dir = _run(tmp_path, episodes=5, parquet=True, action_type="discrete")
    src = reader.open_run(run_dir)
    chunks = list(reader.iter_chunks(src, rows=7))
    counts = src.confirm()
    assert sum(c.n for c in chunks) == counts["steps"]
    assert sum(len(c.starts) for c in chunks) == counts["episodes"] == 5
    for c in chunks:
        assert (c.step[c.starts] == 1).all()
    # the reset observations agree with the vector env's reset kernel (the capture's entry point)
    venv = PlumeNavVectorEnv(counts["episodes"], **src.env_kwargs)
    first, _ = venv.reset(seed=int(chunks[0].seeds[0]))
    np.testing.assert_array_equal(np.concatenate([c.seeds for c in chunks]),
                                  chunks[0].seeds[0] + np.arange(counts["episodes"]))
    np.testing.assert_array_equal(np.concatenate([c.reset_obs for c in chunks]), first)
    _check_minari(run_dir, tmp_path / "minari", monkeypatch)


def test_rllib_export_reads_with_ray_data(tmp_path, ray_session):
    import ray.data

    run_dir = _run(tmp_path, episodes=4)
    out = export_rllib(run_dir, tmp_path / "rllib", shard_rows=50)
    assert len([n for n in os.listdir(out) if n.endswith(".parquet")]) > 1
    rows = ray.data.read_parquet(str(out)).to_pandas().sort_values(["eps_id", "t"]).reset_index(drop=True)
    run = load_run(run_dir)
    eps = run.episodes.to_pylist()
    assert len(rows) == run.steps.num_rows == sum(e["total_steps"] for e in eps)
    for i, e in enumerate(eps):
        g = rows[rows.eps_id == i]
        assert len(g) == e["total_steps"] and list(g.t) == list(range(e["total_steps"]))
        assert g.rewards.sum() == pytest.approx(e["total_reward"], abs=1e-12)
        assert bool(g.terminateds.iloc[-1]) == e["terminated"] and bool(g.truncateds.iloc[-1]) == e["truncated"]
        obs, new = np.stack(g.obs.to_list()), np.stack(g.new_obs.to_list())
        np.testing.assert_array_equal(new[:-1], obs[1:])
    np.testing.assert_array_equal(np.stack(rows.new_obs.to_list()),
                                  np.float32(run.steps.sort_by([("episode_id", "ascending"), ("step", "ascending")])
                                             .column("observation_summary").to_pylist()))


def test_hf_export_loads_with_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    run_dir = _run(tmp_path, episodes=4)
    out = export_hf(run_dir, tmp_path / "hf")
    card = open(os.path.join(out, "README.md")).read()
    front = yaml.safe_load(card.split("---")[1])
    assert {c["config_name"] for c in front["configs"]} == {"steps", "episodes"}
    run = load_run(run_dir)
    assert run.meta["config_hash"] in card and run.meta["run_id"] in card
    steps = datasets.load_dataset(str(out), "steps", split="train", cache_dir=str(tmp_path / "cache"))
    eps = datasets.load_dataset(str(out), "episodes", split="train", cache_dir=str(tmp_path / "cache"))
    assert steps.num_rows == run.steps.num_rows and eps.num_rows == run.episodes.num_rows
    assert eps["total_steps"] == run.episodes.column("total_steps").to_pylist()
    assert eps["total_reward"] == run.episodes.column("total_reward").to_pylist()


def _damage(run_dir):
    path = run_dir / "steps.jsonl.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    rec = json.loads(lines[2])
    rec["reward"] = 0.5
    lines[2] = json.dumps(rec)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))


@pytest.mark.parametrize("target", ["minari", "rllib", "hf"])
def test_cli_refuses_invalid_run_and_writes_nothing(tmp_path, capsys, target):
    run_dir = _run(tmp_path, episodes=2)
    _damage(run_dir)
    out = tmp_path / "out"
    assert export_main([str(run_dir), "--to", target, str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("plume-nav-export: ") and "\n" not in err
    assert not out.exists()
    assert sorted(os.listdir(run_dir.parent)) == [run_dir.name]


def test_unreadable_run_is_refused_with_its_validation_error(tmp_path, capsys):
    """The conversion runs while validation is under way; a reader failure on a damaged file is
    reported as the validation problem, and nothing is left."""
    run_dir = _run(tmp_path, episodes=3)
    path = run_dir / "steps.jsonl.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert export_main([str(run_dir), "--to", "hf", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "fails validation" in err and "\n" not in err
    assert not (tmp_path / "out").exists() and sorted(os.listdir(run_dir.parent)) == [run_dir.name]


def test_cli_exports_and_refuses_existing_output(tmp_path, capsys):
    run_dir = _run(tmp_path, episodes=2)
    assert export_main([str(run_dir), "--to", "rllib"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == str(run_dir) + ".rllib" and pq.read_table(out).num_rows == load_run(run_dir).steps.num_rows
    assert export_main([str(run_dir), "--to", "rllib"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_failure_mid_export_leaves_nothing(tmp_path, monkeypatch):
    from plume_capture.export import rllib

    run_dir = _run(tmp_path, episodes=3)

    def boom(c):
        raise OSError("disk full")

    monkeypatch.setattr(rllib, "transitions", boom)
    with pytest.raises(OSError):
        export_rllib(run_dir, tmp_path / "new" / "rllib")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("name", ["config_mode_64x64", "legacy_8x8_parquet"])
def test_minari_on_reference_tool_runs(tmp_path, monkeypatch, name):
    from pathlib import Path

    run_dir = Path(__file__).resolve().parents[1] / "fixtures" / "reference_runs" / name
    _check_minari(run_dir, tmp_path / "minari", monkeypatch)


def _sharded_parquet_run(tmp_path):
    """A run with Parquet, several shards (a Parquet directory of parts)."""
    cfg = {"output": str(tmp_path / "runs"), "experiment": "exp", "episodes": 12, "seed": 11, "parquet": True,
           "env": {"grid_size": [16, 12], "max_steps": 40}, "engine": {"kind": "local", "shard_episodes": 5}}
    run_dir = capture(complete_config(cfg)).run_dir
    assert (run_dir / "steps.parquet").is_dir()
    return run_dir


def _relist(run_dir, name):
    """run.json lists ``name`` with its current size and sha256 (a consistent forgery)."""
    import hashlib

    meta = json.loads((run_dir / "run.json").read_text())
    data = (run_dir / name).read_bytes()
    meta["extra"]["files"][name].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    (run_dir / "run.json").write_text(json.dumps(meta))


def _edit_parquet_reward(run_dir):
    import pyarrow as pa

    name = "steps.parquet/part-00001.parquet"
    t = pq.read_table(run_dir / name)
    rewards = t.column("reward").to_pylist()
    rewards[3] = 0.5
    t = t.set_column(t.schema.get_field_index("reward"), "reward", pa.array(rewards, pa.float64()))
    pq.write_table(t, run_dir / name)
    _relist(run_dir, name)  # so only the record checks on the Parquet can catch it


def _edit_counts(run_dir):
    meta = json.loads((run_dir / "run.json").read_text())
    meta["extra"]["counts"]["steps"] += 1
    (run_dir / "run.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("damage", [_damage, _edit_parquet_reward, _edit_counts],
                         ids=["jsonl-record-edited", "parquet-record-edited-and-relisted", "counts-edited"])
def test_a_parquet_run_is_validated_on_its_parquet_and_its_jsonl_by_sha256(tmp_path, capsys, damage):
    """Export validates a run with Parquet on the Parquet records (all checks) and its JSON Lines by
    size and sha256: each damage is refused, nothing written."""
    from plume_capture.readback.validate import parquet_source_usable, validate_run_artifacts

    run_dir = _sharded_parquet_run(tmp_path)
    assert parquet_source_usable(run_dir)
    assert validate_run_artifacts(run_dir, source="parquet")["ok"]
    damage(run_dir)
    assert not validate_run_artifacts(run_dir, source="parquet")["ok"]
    out = tmp_path / "out"
    assert export_main([str(run_dir), "--to", "rllib", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "fails validation" in err and "\n" not in err and not out.exists()


def test_full_validation_also_parses_the_jsonl(tmp_path, capsys):
    """A JSON Lines record edited and the file relisted in run.json: the Parquet the export
    converts is intact, so by default the export goes ahead; --full-validation compares the two and
    refuses."""
    run_dir = _sharded_parquet_run(tmp_path)
    path = run_dir / "steps.part0001.jsonl.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    rec = json.loads(lines[2])
    rec["reward"] = 0.5
    lines[2] = json.dumps(rec, separators=(",", ":"))
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    _relist(run_dir, path.name)
    assert export_main([str(run_dir), "--to", "rllib", str(tmp_path / "a")]) == 0
    assert export_main([str(run_dir), "--to", "rllib", str(tmp_path / "b"), "--full-validation"]) == 2
    assert "fails validation" in capsys.readouterr().err and not (tmp_path / "b").exists()


# ------------------------------------------------------------------------------------------------
# Issue 31: no silently wrong export, nothing written inside the run, no hang, nothing left behind


def test_a_movie_changed_since_the_capture_is_refused(tmp_path, capsys):
    """run.json records the movie that ran; observations recomputed from another would be wrong."""
    run_dir = _run(tmp_path, episodes=2, movie=True)
    make_movie(tmp_path / "m.npy", frames=7, height=12, width=16, seed=4)  # same shape, other frames
    out = tmp_path / "out"
    assert export_main([str(run_dir), "--to", "hf", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "the movie file changed since the capture" in err and "movie." in err, err
    assert not out.exists() and sorted(os.listdir(run_dir.parent)) == [run_dir.name]


@pytest.mark.parametrize("target,where", [("rllib", "inside"), ("hf", "through_symlink"), ("minari", "root_is_run")])
def test_output_inside_the_run_directory_is_refused(tmp_path, capsys, target, where):
    run_dir = _run(tmp_path, episodes=2)
    before = sorted(os.listdir(run_dir))
    if where == "inside":
        out = run_dir / "inside"
    elif where == "through_symlink":
        os.symlink(run_dir, tmp_path / "alias")
        out = tmp_path / "alias" / "sub" / "inside"
    else:
        out = run_dir  # the Minari datasets root: the dataset would go in RUN/<dataset_id>
    assert export_main([str(run_dir), "--to", target, str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "the run directory" in err, err
    assert sorted(os.listdir(run_dir)) == before


@pytest.mark.parametrize("parquet", [False, True], ids=["jsonl", "parquet"])
@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_fifo_a_device_or_a_gzip_bomb_is_refused_in_seconds(tmp_path, kind, parquet):
    run_dir = _run(tmp_path, episodes=3, parquet=parquet)
    name = "steps.parquet" if parquet and "bomb" not in kind else "steps.jsonl.gz"
    HOSTILE[kind](run_dir / name)
    out = tmp_path / "out"
    code, err, secs = run_cli("plume_capture.cli.export", run_dir, "--to", "rllib", out, deadline=60)
    assert code == 2 and len(err) == 1 and err[0].startswith("plume-nav-export: "), (code, err)
    assert name in err[0], err
    assert os.listdir(tmp_path) == ["runs"]  # no output, no staging
    assert secs < 15, secs


def test_sigterm_mid_export_exits_130_and_leaves_no_staging(tmp_path):
    """A real export process killed by its PID while it writes into its staging directory."""
    run_dir = _run(tmp_path, episodes=600)
    root = tmp_path / "datasets"
    p = subprocess.Popen([sys.executable, "-m", "plume_capture.cli.export", str(run_dir), "--to", "minari",
                          str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (root.is_dir() and any(n.startswith(".") and ".partial-" in n for n in os.listdir(root))):
        assert p.poll() is None and time.monotonic() < deadline, "the export ended before it was killed"
        time.sleep(0.01)
    time.sleep(0.3)  # well into the conversion
    assert p.poll() is None, "the export finished before it was killed: make the run bigger"
    os.kill(p.pid, signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, (p.returncode, err)
    assert err.strip() == "plume-nav-export: interrupted"
    assert not root.exists(), list(root.iterdir())  # the staging and the root the export made
    assert sorted(os.listdir(run_dir.parent)) == [run_dir.name]


def test_a_staging_directory_is_never_a_run(tmp_path, capsys):
    """A ``.<run_id>.partial`` holding a run.json that says complete (a finalizer stopped between
    its steps) is refused by export, report and validate alike."""
    from plume_capture.cli.report import main as report_main
    from plume_capture.cli.validate import main as validate_main

    run_dir = _run(tmp_path, episodes=2, parquet=True)
    staging = run_dir.with_name("." + run_dir.name + ".partial")
    os.rename(run_dir, staging)
    assert export_main([str(staging), "--to", "rllib", str(tmp_path / "out")]) == 2
    assert report_main([str(staging), "-o", str(tmp_path / "r.html")]) == 2
    assert validate_main([str(staging)]) == 1
    err = capsys.readouterr()
    assert err.err.count("staging directory") == 2 and "RUN_INCOMPLETE" in err.out
    assert not (tmp_path / "out").exists() and not (tmp_path / "r.html").exists()


def test_a_losing_export_never_removes_the_winners_output(tmp_path):
    """Two exports into a parent neither found: the loser removes its staging and the directories
    it made only if empty, never the winner's output (the parent used to go with rmtree)."""
    from plume_capture.export.reader import ExportError
    from plume_capture.export.staging import staged_dir

    final = tmp_path / "new" / "deeper" / "out"
    with pytest.raises(ExportError, match="another export finished first"), staged_dir(final) as tmp:
        (final.parent / os.path.basename(tmp) / "mine").write_text("loser")
        final.mkdir()  # the winner lands first
        (final / "part-00000.parquet").write_text("winner")
    assert sorted(p.name for p in final.parent.iterdir()) == ["out"]
    assert (final / "part-00000.parquet").read_text() == "winner"
    with pytest.raises(OSError), staged_dir(tmp_path / "made" / "out"):
        raise OSError("boom")
    assert not (tmp_path / "made").exists()  # what it made, left empty, goes
