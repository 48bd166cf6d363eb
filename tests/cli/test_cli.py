"""``plume-nav-capture`` as an operator runs it: exit codes, one-line errors, runbook commands."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest

from cli_helpers import REPO, read_jsonl, run_cli, run_dirs, run_json, tree

# (id, argv, text the one error line must contain). "{file}" is a regular file in the cwd.
BAD_INPUTS = [
    ("grid-0x8", ["--grid", "0x8"], "--grid"),
    ("grid-8", ["--grid", "8"], "--grid"),
    ("grid-axb", ["--grid", "axb"], "--grid"),
    ("grid-negative", ["--grid=-8x8"], "--grid"),
    ("episodes-negative", ["--episodes", "-1"], "episodes"),
    ("episodes-abc", ["--episodes", "abc"], "--episodes"),
    ("episodes-zero", ["--episodes=0"], "episodes"),
    ("episodes-float", ["episodes=1.5"], "episodes"),
    ("seed-negative", ["--seed", "-1"], "seed"),
    ("seed-2**32", ["--seed", "4294967296"], "seed"),
    ("seed-last-episode-out-of-range", ["--seed", "4294967295", "--episodes", "2"], "seed + episodes"),
    ("seed-string", ["seed=abc"], "seed"),
    ("action-type-flag", ["--action-type", "bogus"], "--action-type"),
    ("action-type-override", ["env.action_type=bogus"], "env.action_type"),
    ("grid-size-one-value", ["env.grid_size=[8]"], "env.grid_size"),
    ("grid-size-string", ["env.grid_size=8x8"], "env.grid_size"),
    ("grid-size-unclosed", ["env.grid_size=[8,8"], "env.grid_size=[8,8"),
    ("grid-size-into-list", ["env.grid_size.x=1"], "env.grid_size.x=1"),
    ("interpolation-missing", ["experiment=${nosuch}"], "nosuch"),
    ("max-steps-zero", ["env.max_steps=0"], "env.max_steps"),
    ("max-steps-flag-zero", ["--max-steps", "0"], "env.max_steps"),
    ("goal-radius-negative", ["env.goal_radius=-1"], "env.goal_radius"),
    ("sigma-zero", ["env.sigma=0"], "env.sigma"),
    ("goal-outside-grid", ["--grid", "8x8", "env.goal_location=[8,0]"], "env.goal_location"),
    ("start-outside-grid", ["env.start_location=[0,-1]"], "env.start_location"),
    ("unknown-top-key", ["nosuchkey=1"], "nosuchkey"),
    ("unknown-env-key", ["env.nosuch=1"], "env.nosuch"),
    ("unknown-env-key-added", ["+env.max_step=5"], "env.max_step"),
    ("add-existing-key", ["+seed=3"], "seed"),
    ("hydra-native-preset", ["+experiment=default"], "preset=NAME"),
    ("hydra-setting", ["hydra.job.name=x"], "hydra.job.name"),
    ("delete-missing-key", ["~nosuch"], "nosuch"),
    ("override-without-key", ["=5"], "'=5'"),
    ("override-without-value", ["env.sigma"], "env.sigma"),
    ("config-name-missing", ["--config-name", "nope"], "nope"),
    ("config-name-empty", ["--config-name", ""], "config name"),
    ("config-path-missing", ["--config-path", "/nonexistent"], "/nonexistent"),
    ("config-path-is-file", ["--config-path", "{file}"], "not a directory"),
    ("preset-missing", ["preset=nope"], "nope"),
    ("experiment-dotdot-path", ["experiment=../x"], "experiment"),
    ("experiment-slash", ["experiment=a/b"], "experiment"),
    ("experiment-dotdot", ["--experiment", ".."], "experiment"),
    ("experiment-backslash", ["--experiment", "a\\b"], "experiment"),
    ("experiment-empty", ["experiment=''"], "experiment"),
    ("experiment-hidden", ["--experiment", ".hidden"], "experiment"),
    ("output-is-file", ["--output", "{file}"], "output"),
    ("output-under-file", ["--output", "{file}/sub"], "output"),
    ("output-unwritable", ["--output", "/proc/plume-capture-nope"], "not writable"),
    ("rotate-size-zero", ["--rotate-size", "0"], "rotate_size"),
    ("rotate-size-abc", ["--rotate-size", "1MB"], "--rotate-size"),
    ("unknown-flag", ["--bogus"], "--bogus"),
    ("abbreviated-flag", ["--gri", "8x8"], "--gri"),
    ("flag-missing-value", ["--seed"], "--seed"),
    ("policy-needs-oriented", ["--action-type", "discrete", "policy.name=surge_cast"], "policy.name"),
    ("policy-needs-run-tumble", ["policy.name=run_tumble_chemotaxis"], "policy.name"),
    ("policy-unknown", ["policy.name=greedy"], "policy.name"),
    ("sweep-without-multirun", ["seed=1,2"], "multirun"),
    ("interval-sweep", ["-m", "env.sigma=interval(1,2)"], "interval"),
    ("sweep-bad-combination", ["-m", "env.max_steps=10,0"], "env.max_steps"),
    ("resume-missing", ["--resume", "no-such-run"], "--resume"),
    ("resume-with-multirun", ["--resume", ".", "-m"], "--resume"),
    ("num-actors-zero", ["--num-actors", "0"], "num_actors"),
    ("engine-unknown", ["--engine", "slurm"], "--engine"),
    ("address-with-local-engine", ["--engine", "local", "--address", "head:6379"], "engine.address"),
    ("actors-with-local-engine", ["--engine", "local", "--num-actors", "2"], "engine.num_actors"),
    ("movie-without-path", ["env.plume=movie"], "movie.path"),
    ("movie-path-missing", ["env.plume=movie", "movie.path=/no/such.npy"], "movie.path"),
    ("parquet-not-bool", ["parquet=maybe"], "parquet"),
]


def _run_bad(case, base: Path):
    name, argv, _ = case
    cwd = base / name
    cwd.mkdir()
    (cwd / "afile").write_text("not a directory\n")
    argv = [a.replace("{file}", "afile") for a in argv]
    before = tree(cwd)
    proc = run_cli(argv, cwd, timeout=120)
    return proc, before, tree(cwd)


@pytest.fixture(scope="module")
def bad_results(tmp_path_factory):
    """All bad-input subprocesses, run a few at a time (each is independent)."""
    base = tmp_path_factory.mktemp("bad")
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {case[0]: pool.submit(_run_bad, case, base) for case in BAD_INPUTS}
        return {name: f.result() for name, f in futures.items()}


def test_table_is_large_enough():
    assert len(BAD_INPUTS) >= 30 and len({c[0] for c in BAD_INPUTS}) == len(BAD_INPUTS)


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line(case, bad_results):
    name, argv, needle = case
    if name == "output-unwritable" and not os.path.isdir("/proc/self"):
        pytest.skip("needs /proc")
    proc, before, after = bad_results[name]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert lines[0].startswith("plume-nav-capture: error: "), lines[0]
    assert needle in lines[0], lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert after == before, after - before  # nothing created: no results/, no run directory


def test_validation_errors_are_fast_and_import_no_engine(tmp_path):
    # CPU seconds of the child, not wall time: other work on a loaded machine does not count.
    best = min(_timed(["--grid", "0x8"], tmp_path) for _ in range(3))
    assert best < 1.0, best
    best = min(_timed(["nosuchkey=1"], tmp_path) for _ in range(2))
    assert best < 2.0, best
    code = (
        "import sys; from plume_capture.cli.capture import main\n"
        "rc = main(['--episodes', '0', 'env.max_steps=10'])\n"
        "heavy = [m for m in ('ray', 'numba', 'polars', 'pyarrow', 'plume_capture.capture') if m in sys.modules]\n"
        "print(rc, heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "2 []", (out.stdout, out.stderr)


def _timed(argv, cwd) -> float:
    """CPU seconds (user + system) of the CLI process."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = run_cli(argv, cwd, timeout=60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert proc.returncode == 2
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def test_help_and_version(tmp_path):
    proc = run_cli(["--help"], tmp_path)
    assert proc.returncode == 0 and "preset=NAME" in proc.stdout and "--multirun" in proc.stdout
    proc = run_cli(["--version"], tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "plume-nav-capture 0.1.0"
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- with a stand-in engine
# These pin the CLI's side of the engine contract (arguments, exit codes, summaries) without
# running the engine; the real engine runs in the tests further down.

@pytest.fixture
def fake_engine(monkeypatch, tmp_path):
    import plume_capture.capture as cap

    calls = []

    def result(cfg, status="complete"):
        return SimpleNamespace(run_dir=Path(cfg["output"]) / cfg["experiment"] / "run-x", episodes=cfg["episodes"],
                               steps=10 * cfg["episodes"], wall_s=0.5, steps_per_s=20.0 * cfg["episodes"],
                               status=status, startup_s=0.0)

    def capture(spec, *, progress=False, resume=None):  # the CLI passes resolved specs
        calls.append(("capture", spec.config, list(spec.overrides), progress, resume))
        if calls and getattr(capture, "raises", None):
            raise capture.raises
        return result(spec.config)

    def capture_many(specs, *, progress=False):
        calls.append(("capture_many", [s.config for s in specs], [list(s.overrides) for s in specs], progress))
        return [result(s.config) for s in specs]

    monkeypatch.setattr(cap, "capture", capture, raising=False)
    monkeypatch.setattr(cap, "capture_many", capture_many, raising=False)
    monkeypatch.chdir(tmp_path)
    return SimpleNamespace(calls=calls, capture=capture)


def test_single_run_passes_config_and_prints_summary(fake_engine, capsys):
    from plume_capture.cli.capture import main

    assert main(["--episodes", "3", "env.max_steps=10", "experiment=x"]) == 0
    (kind, cfg, overrides, progress, resume), = fake_engine.calls
    assert kind == "capture" and cfg["episodes"] == 3 and cfg["env"]["max_steps"] == 10
    assert overrides == ["env.max_steps=10", "experiment=x"] and progress is False and resume is None
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "results/x/run-x" in err[0] and "3 episodes" in err[0] and "30 steps" in err[0]
    assert main(["--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_resume_is_passed_through(fake_engine, tmp_path):
    from plume_capture.cli.capture import main

    import json

    from plume_capture.config import config_hash, load_config

    cfg = load_config(["episodes=3"])
    (tmp_path / "old").mkdir()  # the run dir an operator names; its staging dir holds the manifest
    (tmp_path / ".old.partial").mkdir()
    (tmp_path / ".old.partial" / "capture.json").write_text(json.dumps({
        "run_id": "run-20260101-000000-00000000", "config_hash": config_hash(cfg), "config": cfg,
        "overrides": ["episodes=3"], "start_time": 0.0}))
    assert main(["--resume", "old", "--engine", "local"]) == 0
    (kind, passed, _, _, resume), = fake_engine.calls
    assert resume == "old" and passed["episodes"] == 3 and passed["engine"]["kind"] == "local"


def test_multirun_calls_capture_many_once_and_prints_table(fake_engine, capsys):
    from plume_capture.cli.capture import main

    assert main(["-m", "seed=1,2", "env.max_steps=10,20"]) == 0
    (kind, cfgs, overrides_list, progress), = fake_engine.calls
    assert kind == "capture_many" and len(cfgs) == 4
    assert [(c["seed"], c["env"]["max_steps"]) for c in cfgs] == [(1, 10), (1, 20), (2, 10), (2, 20)]
    assert overrides_list[3] == ["seed=2", "env.max_steps=20"]
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["run_dir", "steps", "steps/s", "status"] and len(out) == 5
    assert all("complete" in line for line in out[1:])
    assert main(["-m", "seed=1,2", "--quiet"]) == 0  # --quiet: no table either
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("exc, code, text", [
    (RuntimeError("boom\nsecond line"), 1, "internal error: RuntimeError: boom; second line"),
    (KeyboardInterrupt(), 130, "interrupted"),
    (None, 2, "error: engine says no"),
])
def test_engine_failures_map_to_exit_codes(fake_engine, capsys, exc, code, text):
    from plume_capture.cli.capture import main
    from plume_capture.errors import ConfigError

    fake_engine.capture.raises = exc if exc is not None else ConfigError("engine says no")
    assert main(["--quiet"]) == code
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and text in err[0], err
    if code == 1:
        assert "PLUME_CAPTURE_DEBUG=1" in err[0]


# ----------------------------------------------------------------------------- with the real engine

def test_runbook_legacy_command(tmp_path):
    # exactly as the runbook writes it, through the console script
    proc = run_cli(["--output", "results", "--experiment", "demo", "--episodes", "2", "--seed", "100",
                    "--grid", "8x8"], tmp_path, script=True)
    assert proc.returncode == 0, proc.stderr
    (run,) = run_dirs(tmp_path / "results", "demo")
    meta = run_json(run)
    assert meta["experiment"] == "demo" and meta["base_seed"] == 100 and meta["episode_seeds"] == [100, 101]
    assert meta["env_config"]["grid_size"] == [8, 8] and meta["extra"]["status"] == "complete"
    assert len(read_jsonl(run, "episodes")) == 2
    assert {r["seed"] for r in read_jsonl(run, "steps")} == {100, 101}
    from plume_capture.config import config_hash, load_config

    expected = config_hash(load_config(settings={"episodes": 2, "seed": 100, "env.grid_size": [8, 8]},
                                       check_paths=False))
    assert meta["config_hash"] == expected
    assert str(run) in proc.stderr or run.name in proc.stderr  # the summary line names the run


def test_runbook_hydra_command(tmp_path):
    proc = run_cli(["--config-name", "data_capture/config", "episodes=5", "env.max_steps=250",
                    "env.grid_size=[64,64]", "experiment=batch-20231106"], tmp_path, script=True)
    assert proc.returncode == 0, proc.stderr
    (run,) = run_dirs(tmp_path / "results", "batch-20231106")
    meta = run_json(run)
    assert meta["episode_seeds"] == [123, 124, 125, 126, 127]
    assert meta["env_config"]["max_steps"] == 250 and meta["env_config"]["grid_size"] == [64, 64]
    assert len(meta["config_hash"]) == 64
    episodes = read_jsonl(run, "episodes")
    assert len(episodes) == 5 and all(e["total_steps"] <= 250 for e in episodes)


@pytest.mark.parametrize("argv", [["--parquet"], ["parquet=true"]])
def test_parquet_flag_and_override(tmp_path, argv):
    proc = run_cli(["--grid", "8x8", "--max-steps", "20", "--quiet", *argv], tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run,) = run_dirs(tmp_path / "results", "default")
    assert (run / "steps.parquet").is_file() and (run / "episodes.parquet").is_file()


def test_rotate_size(tmp_path):
    proc = run_cli(["--episodes", "4", "--max-steps", "300", "rotate_size=2000", "--quiet"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run,) = run_dirs(tmp_path / "results", "default")
    assert sorted(run.glob("steps.part*.jsonl.gz")), sorted(p.name for p in run.iterdir())
    steps = read_jsonl(run, "steps")
    assert len(steps) == sum(e["total_steps"] for e in read_jsonl(run, "episodes"))


def test_config_path_to_copied_tree_from_another_cwd(tmp_path):
    conf = tmp_path / "myconf"
    shutil.copytree(REPO / "conf", conf)
    cfg = conf / "data_capture/config.yaml"
    cfg.write_text(cfg.read_text().replace("episodes: 1 ", "episodes: 3 "))
    work = tmp_path / "work"
    work.mkdir()
    proc = run_cli(["--config-path", str(conf), "--grid", "8x8", "--max-steps", "20", "--quiet"], work)
    assert proc.returncode == 0, proc.stderr
    (run,) = run_dirs(work / "results", "default")
    assert run_json(run)["episode_seeds"] == [123, 124, 125]


def test_preset_runs(tmp_path):
    proc = run_cli(["preset=default", "--grid", "8x8", "--quiet"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run,) = run_dirs(tmp_path / "results", "demo")
    meta = run_json(run)
    assert meta["episode_seeds"] == [123, 124] and meta["env_config"]["max_steps"] == 200


def test_sweep_runs_cartesian_product(tmp_path):
    proc = run_cli(["-m", "seed=1,2", "env.max_steps=10,20", "--grid", "8x8"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    runs = run_dirs(tmp_path / "results", "default")
    assert len(runs) == 4
    got = sorted((run_json(r)["base_seed"], run_json(r)["env_config"]["max_steps"]) for r in runs)
    assert got == [(1, 10), (1, 20), (2, 10), (2, 20)]
    table = proc.stdout.splitlines()
    assert len(table) == 5 and all("complete" in line for line in table[1:])


def test_config_hash_same_across_outputs_actors_and_spellings(tmp_path):
    a = run_cli(["--grid", "8x8", "--episodes", "2", "--max-steps", "30", "--output", "a", "--quiet"], tmp_path)
    # Actor counts only change engine.* (excluded from the hash; see test_config); the Ray path
    # is covered by the engine's own tests, so this stays in-process and fast.
    b = run_cli(["env.grid_size=[8,8]", "episodes=2", "env.max_steps=30", "output=b", "engine.shard_episodes=1",
                 "--engine", "local", "--experiment", "other", "--quiet"], tmp_path)
    c = run_cli(["--grid", "8x8", "--episodes", "2", "--max-steps", "31", "--output", "c", "--quiet"], tmp_path)
    assert a.returncode == b.returncode == c.returncode == 0, (a.stderr, b.stderr, c.stderr)
    ha = run_json(run_dirs(tmp_path / "a", "default")[0])["config_hash"]
    hb = run_json(run_dirs(tmp_path / "b", "other")[0])["config_hash"]
    hc = run_json(run_dirs(tmp_path / "c", "default")[0])["config_hash"]
    assert ha == hb != hc


def test_ctrl_c_exits_130_and_leaves_run_incomplete(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "plume_capture", "--episodes", "200000", "--engine", "local", "--quiet"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while not run_dirs(tmp_path / "results", "default") and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    for run in run_dirs(tmp_path / "results", "default"):
        meta_path = run / "run.json"
        assert not meta_path.exists() or json.loads(meta_path.read_text())["extra"]["status"] != "complete"


@pytest.mark.slow
def test_non_editable_install_runs_from_tmp(tmp_path):
    """``pip install .`` (not editable) into a fresh venv; the configs come from the wheel.

    Dependencies are reused from the project's venv through a .pth file (no download); the
    package itself is built from a copy of the repo and installed without the editable hook.
    """
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("plume_capture", "conf"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    deps = str(Path(__import__("numpy").__file__).parents[1])  # the project venv's site-packages
    Path(site, "project_deps.pth").write_text(deps + "\n")
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--quiet", str(src)],
        capture_output=True, text=True, timeout=600,
    )
    if pip.returncode != 0:
        pytest.skip(f"cannot build the wheel here: {pip.stderr.strip().splitlines()[-1:]}")
    where = subprocess.run([str(py), "-c", "import plume_capture.config as c; print(c.default_config_root())"],
                           cwd="/tmp", capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(site) and where.endswith("plume_capture/conf"), where
    work = tmp_path / "cwd"
    work.mkdir()
    bad = run_cli(["nosuchkey=1"], work, python=str(py))  # composition works from the wheel's conf
    assert bad.returncode == 2 and "nosuchkey" in bad.stderr, bad.stderr
    proc = run_cli(["--config-name", "data_capture/config", "episodes=5", "env.max_steps=250",
                    "env.grid_size=[64,64]", "experiment=batch-20231106"], work, python=str(py), script=True)
    assert proc.returncode == 0, proc.stderr
    (run,) = run_dirs(work / "results", "batch-20231106")
    assert run_json(run)["extra"]["status"] == "complete"


def test_kernel_cache_state_and_the_compile_note(tmp_path, monkeypatch):
    """A run that finds the kernel cache empty and leaves it filled says its steps/s include compiling."""
    from types import SimpleNamespace

    from plume_capture.cli.capture import COMPILED_NOTE, _summary_line
    from plume_capture.kernels._jit import kernel_cache_filled

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("PLUME_CAPTURE_CACHE", str(tmp_path))
    assert not kernel_cache_filled()
    leaf = next(tmp_path.iterdir())  # the cache directory of this Numba version and these kernels
    (leaf / "k").mkdir()
    (leaf / "k" / "rollout.run-1.py311.nbi").write_bytes(b"")
    assert kernel_cache_filled()
    res = SimpleNamespace(run_dir="R", episodes=2, steps=20, wall_s=2.0, steps_per_s=10.0, startup_s=0.0)
    assert _summary_line(res).endswith("(10 steps/s)")
    assert _summary_line(res, compiled=True).endswith(f"(10 steps/s; {COMPILED_NOTE})")
