"""Config composition, presets, overrides, flag precedence, validation and config_hash."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from plume_capture.cli.capture import prepare
from plume_capture.config import (
    EXECUTION_ONLY_KEYS,
    compose_config,
    config_hash,
    default_config,
    default_config_root,
    effective_config,
    expand_sweeps,
    load_config,
    validate_config,
)
from plume_capture.errors import ConfigError
from plume_capture.sim.params import FLOAT32_EPS

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default output root "results" is checked relative to cwd


def cfg_of(*argv: str) -> dict:
    """The single validated config the CLI would run for ``argv``."""
    _, specs, _ = prepare(list(argv))
    assert len(specs) == 1
    return specs[0].config


# ----------------------------------------------------------------------------- the tree

def test_config_root_is_repo_conf_in_editable_install():
    assert default_config_root() == REPO / "conf"


def test_base_config_has_spec_keys_and_defaults():
    cfg = compose_config()
    assert {k: cfg[k] for k in ("output", "experiment", "episodes", "seed", "rotate_size", "parquet")} == {
        "output": "results", "experiment": "default", "episodes": 1, "seed": 123,
        "rotate_size": None, "parquet": False,
    }
    assert cfg["env"] == {
        "grid_size": [64, 64], "max_steps": None, "goal_radius": None, "action_type": "oriented",
        "observation_type": "concentration", "reward_type": "step_penalty", "step_size": 1,
        "goal_location": None, "start_location": None, "sigma": 20.0, "plume": "static",
        "n_sensors": 2, "sensor_distance": 2.0,
    }
    assert cfg["wind"] == {"direction_deg": 0.0, "speed": 1.0, "noise_std": 0.0}
    assert cfg["movie"] == {"path": None, "step_policy": "wrap", "source_location": None}
    assert cfg["puff"] == {"birth_rate": 1.0, "init_radius": 1.0, "spread_rate": 1.0, "meander_std": 0.5,
                           "meander_time": 10.0, "noise_std": 0.2, "dt": 1.0, "max_puffs": 256, "warmup_steps": 100}
    assert cfg["policy"] == {"name": "random", "threshold": 1e-6, "persistence": 1, "eps": 0.0}
    assert cfg["engine"] == {"kind": "auto", "num_actors": None, "address": None,
                             "shard_episodes": None, "window": None, "quiet": False,
                             "headroom_cpus": None, "threads": None}
    assert set(cfg) == {"output", "experiment", "episodes", "seed", "rotate_size", "parquet",
                        "env", "wind", "movie", "puff", "policy", "engine"}
    assert cfg == default_config()


def test_config_name_accepts_yaml_suffix():
    assert compose_config(config_name="data_capture/config.yaml") == compose_config()


# ----------------------------------------------------------------------------- presets

def test_preset_takes_effect():
    for argv in (["preset=default"], ["--preset", "default"], ["--preset=default"]):
        cfg = cfg_of(*argv)
        assert (cfg["experiment"], cfg["episodes"], cfg["env"]["max_steps"]) == ("demo", 2, 200), argv


def test_overrides_and_flags_beat_preset_in_any_order():
    assert cfg_of("episodes=7", "preset=default")["episodes"] == 7
    assert cfg_of("preset=default", "episodes=7")["episodes"] == 7
    assert cfg_of("preset=default", "episodes=7", "--episodes", "9")["episodes"] == 9


def test_experiment_override_names_and_preset_selects():
    cfg = cfg_of("preset=default", "experiment=batch-1")
    assert (cfg["experiment"], cfg["episodes"]) == ("batch-1", 2)
    cfg = cfg_of("experiment=default")  # the name "default", not the preset
    assert (cfg["experiment"], cfg["episodes"], cfg["env"]["max_steps"]) == ("default", 1, None)


def test_preset_flag_beats_preset_override(tmp_path):
    root = tmp_path / "conf"
    shutil.copytree(REPO / "conf", root)
    (root / "data_capture/experiment/big.yaml").write_text("# @package _global_\nepisodes: 50\n")
    cfg = cfg_of("--config-path", str(root), "preset=big", "--preset", "default")
    assert cfg["episodes"] == 2


def _tree(tmp_path, config_yaml: str, presets: dict[str, str] | None = None) -> Path:
    root = tmp_path / "tree"
    (root / "data_capture/experiment").mkdir(parents=True)
    (root / "data_capture/config.yaml").write_text(config_yaml)
    for name, text in (presets or {}).items():
        (root / f"data_capture/experiment/{name}.yaml").write_text(text)
    return root


DEMO = "# @package _global_\nexperiment: demo\nepisodes: 2\nenv:\n  max_steps: 200\n"


def test_defaults_list_and_self_mean_what_they_mean_in_hydra(tmp_path):
    # preset selected in the defaults list, _self_ first: the preset wins over the file's values
    root = _tree(tmp_path, "defaults:\n  - _self_\n  - experiment: default\nepisodes: 1\n", {"default": DEMO})
    assert load_config(config_path=root)["episodes"] == 2
    # _self_ last: the file's own values win over the preset
    (root / "data_capture/config.yaml").write_text("defaults:\n  - experiment: default\n  - _self_\nepisodes: 1\n")
    cfg = load_config(config_path=root)
    assert (cfg["episodes"], cfg["env"]["max_steps"]) == (1, 200)


def test_reference_style_tree_without_groups(tmp_path):
    """A tree with only the docs/spec.md §10.1 keys: missing groups take our defaults; presets append."""
    root = _tree(
        tmp_path,
        "output: results\nexperiment: default\nepisodes: 3\nseed: 123\nrotate_size: null\nparquet: false\n"
        "env:\n  grid_size: [64, 64]\n  max_steps: null\n  action_type: oriented\n",
        {"default": DEMO},
    )
    cfg = load_config(config_path=root)
    assert cfg["episodes"] == 3 and cfg["policy"]["name"] == "random" and cfg["env"]["sigma"] == 20.0
    assert load_config(["preset=default"], config_path=root)["episodes"] == 2
    assert load_config(["+policy.name=surge_cast"], config_path=root)["policy"]["name"] == "surge_cast"
    with pytest.raises(ConfigError, match="unknown config key 'policy.name'"):
        load_config(["policy.name=surge_cast"], config_path=root)


def test_config_path_replaces_root(tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(REPO / "conf", root)
    text = (root / "data_capture/config.yaml").read_text().replace("episodes: 1 ", "episodes: 4 ")
    (root / "data_capture/config.yaml").write_text(text)
    assert cfg_of("--config-path", str(root))["episodes"] == 4
    assert cfg_of("--config-path", str(root), "--config-name", "data_capture/config")["episodes"] == 4
    # the primary may also sit at the root (then experiment/ is a root group; experiment= still names)
    cfg = cfg_of("--config-path", str(root / "data_capture"), "--config-name", "config",
                 "experiment=x", "preset=default")
    assert (cfg["experiment"], cfg["episodes"]) == ("x", 2)


# ----------------------------------------------------------------------------- overrides

def test_runbook_hydra_overrides():
    cfg = cfg_of("--config-name", "data_capture/config", "episodes=5", "env.max_steps=250",
                 "env.grid_size=[64,64]", "experiment=batch-20231106")
    assert (cfg["episodes"], cfg["env"]["max_steps"], cfg["env"]["grid_size"], cfg["experiment"]) == (
        5, 250, [64, 64], "batch-20231106")


def test_runbook_legacy_flags():
    cfg = cfg_of("--output", "results", "--experiment", "demo", "--episodes", "2", "--seed", "100",
                 "--grid", "8x8")
    assert (cfg["output"], cfg["experiment"], cfg["episodes"], cfg["seed"], cfg["env"]["grid_size"]) == (
        "results", "demo", 2, 100, [8, 8])


def test_add_force_add_delete():
    assert cfg_of("~env.sigma")["env"]["sigma"] == 20.0  # deleted key -> default
    assert cfg_of("~env.sigma", "+env.sigma=5.5")["env"]["sigma"] == 5.5
    assert cfg_of("++env.sigma=7")["env"]["sigma"] == 7
    assert cfg_of("++seed=9")["seed"] == 9
    assert cfg_of("+notes=hello")["notes"] == "hello"  # free top-level annotation
    with pytest.raises(ConfigError, match="already"):
        cfg_of("+seed=3")
    with pytest.raises(ConfigError, match="unknown config key 'env.sigmaa'"):
        cfg_of("env.sigmaa=3")
    with pytest.raises(ConfigError, match="unknown config key 'env.foo'"):
        cfg_of("+env.foo=1")  # engine groups are closed: a new key there can only be a typo


@pytest.mark.parametrize("override, near", [("env.grid_sz=[8,8]", "env.grid_size"), ("episdoes=3", "episodes"),
                                             ("polcy.name=random", "policy.name"), ("+env.sigmaa=2", "env.sigma"),
                                             ("engine.thread=2", "engine.threads")])
def test_a_typo_names_the_key_meant(override, near):
    with pytest.raises(ConfigError) as exc:
        cfg_of(override)
    msg = str(exc.value)
    assert msg.endswith(f"did you mean '{near}'?") and "+" not in msg.split(";")[1], msg


def test_values_lists_null_quotes_interpolation():
    cfg = cfg_of("env.grid_size=[16, 12]", "env.goal_location=[3,4]", "env.max_steps=null",
                 "experiment='my run'", "output=\"out dir\"")
    assert cfg["env"]["grid_size"] == [16, 12] and cfg["env"]["goal_location"] == [3, 4]
    assert cfg["env"]["max_steps"] is None
    assert (cfg["experiment"], cfg["output"]) == ("my run", "out dir")
    assert cfg_of("experiment='a,b'")["experiment"] == "a,b"  # quoted: not a sweep
    assert cfg_of("experiment=${env.action_type}-x")["experiment"] == "oriented-x"
    assert cfg_of("experiment=2024")["experiment"] == "2024"


def test_sweep_without_multirun_is_an_error():
    with pytest.raises(ConfigError, match="multirun"):
        cfg_of("seed=1,2")


# ----------------------------------------------------------------------------- flags

@pytest.mark.parametrize("argv", [
    ["--seed", "5", "seed=7"], ["--seed=5", "seed=7"], ["seed=7", "--seed", "5"], ["seed=7", "--seed=5"],
    ["--config-name", "data_capture/config", "seed=7", "--seed", "5"],
    ["--config-name=data_capture/config", "--seed=5", "seed=7"],
])
def test_flag_beats_override_in_every_spelling(argv):
    assert cfg_of(*argv)["seed"] == 5


def test_every_flag_lands_on_its_key():
    cfg = cfg_of(
        "--output", "o", "--experiment", "e", "--episodes", "3", "--seed", "4", "--grid", "9x7",
        "--action-type", "discrete", "--max-steps", "11", "--parquet", "--rotate-size", "4096",
        "--engine", "ray", "--num-actors", "2", "--address", "10.0.0.1:6379", "--quiet",
        "output=x", "experiment=y", "episodes=8", "seed=8", "env.grid_size=[5,5]", "env.action_type=oriented",
        "env.max_steps=8", "parquet=false", "rotate_size=8", "engine.kind=local", "engine.num_actors=8",
        "engine.address=null", "engine.quiet=false",
    )
    assert (cfg["output"], cfg["experiment"], cfg["episodes"], cfg["seed"]) == ("o", "e", 3, 4)
    assert cfg["env"]["grid_size"] == [9, 7] and cfg["env"]["action_type"] == "discrete"
    assert cfg["env"]["max_steps"] == 11 and cfg["parquet"] is True and cfg["rotate_size"] == 4096
    assert cfg["engine"] == {"kind": "ray", "num_actors": 2, "address": "10.0.0.1:6379",
                             "shard_episodes": None, "window": None, "quiet": True,
                             "headroom_cpus": None, "threads": None}
    assert cfg_of("parquet=true", "--no-parquet")["parquet"] is False


def test_unset_flags_leave_config_alone():
    cfg = cfg_of("parquet=true", "engine.quiet=true", "episodes=4")
    assert cfg["parquet"] is True and cfg["engine"]["quiet"] is True and cfg["episodes"] == 4


# ----------------------------------------------------------------------------- sweeps

def test_expand_sweeps_cartesian_product():
    assert expand_sweeps(["seed=1,2", "env.max_steps=10,20", "episodes=3"]) == [
        ["seed=1", "env.max_steps=10", "episodes=3"], ["seed=1", "env.max_steps=20", "episodes=3"],
        ["seed=2", "env.max_steps=10", "episodes=3"], ["seed=2", "env.max_steps=20", "episodes=3"],
    ]
    assert expand_sweeps(["seed=range(1,4)"]) == [["seed=1"], ["seed=2"], ["seed=3"]]
    assert expand_sweeps(["+notes=choice(a,b)"]) == [["+notes=a"], ["+notes=b"]]
    assert expand_sweeps(["env.grid_size=[8,8],[16,16]"]) == [["env.grid_size=[8,8]"], ["env.grid_size=[16,16]"]]
    assert expand_sweeps(["experiment='a,b'"]) == [["experiment='a,b'"]]
    with pytest.raises(ConfigError, match="interval"):
        expand_sweeps(["env.sigma=interval(1,2)"])


def test_multirun_builds_one_config_per_combination():
    _, specs, runs = prepare(["-m", "seed=1,2", "env.max_steps=10,20", "--episodes", "3"])
    cfgs = [s.config for s in specs]
    assert [(c["seed"], c["env"]["max_steps"], c["episodes"]) for c in cfgs] == [
        (1, 10, 3), (1, 20, 3), (2, 10, 3), (2, 20, 3)]
    assert runs[0] == ["seed=1", "env.max_steps=10"]
    _, specs, _ = prepare(["--multirun", "preset=default", "experiment=a,b"])
    cfgs = [s.config for s in specs]
    assert [(c["experiment"], c["episodes"]) for c in cfgs] == [("a", 2), ("b", 2)]


def test_multirun_validates_every_combination_first():
    with pytest.raises(ConfigError, match="env.max_steps"):
        prepare(["-m", "env.max_steps=10,0"])


# ----------------------------------------------------------------------------- validation

def test_validate_accepts_partial_and_default_configs():
    validate_config({})
    validate_config(default_config())
    validate_config({"env": {"grid_size": [8, 8]}, "policy": {"name": "surge_cast"}})
    validate_config({"env": {"action_type": "run_tumble"}, "policy": {"name": "run_tumble_chemotaxis"}})


@pytest.mark.parametrize("cfg, key", [
    ({"episodes": 0}, "episodes"), ({"episodes": True}, "episodes"), ({"seed": 2**32}, "seed"),
    ({"seed": 2**32 - 1, "episodes": 2}, "seed + episodes"), ({"env": {"grid_size": [8, 0]}}, "env.grid_size"),
    ({"env": {"grid_size": [8.0, 8]}}, "env.grid_size"), ({"env": {"max_steps": 0}}, "env.max_steps"),
    ({"env": {"goal_radius": -0.5}}, "env.goal_radius"), ({"env": {"sigma": float("nan")}}, "env.sigma"),
    ({"env": {"step_size": 0}}, "env.step_size"), ({"rotate_size": 0}, "rotate_size"),
    ({"env": {"goal_location": [8, 0], "grid_size": [8, 8]}}, "env.goal_location"),
    ({"env": {"start_location": [0, 8], "grid_size": [8, 8]}}, "env.start_location"),
    ({"policy": {"name": "surge_cast"}, "env": {"action_type": "discrete"}}, "policy.name"),
    ({"policy": {"name": "temporal_derivative"}, "env": {"action_type": "run_tumble"}}, "policy.name"),
    ({"policy": {"name": "run_tumble_chemotaxis"}}, "policy.name"), ({"policy": {"eps": 1.5}}, "policy.eps"),
    ({"experiment": ".."}, "experiment"), ({"experiment": "a\\b"}, "experiment"),
    ({"experiment": "a\0b"}, "experiment"), ({"experiment": ""}, "experiment"),
    ({"movie": {"step_policy": "bounce"}}, "movie.step_policy"), ({"engine": {"kind": "slurm"}}, "engine.kind"),
    ({"engine": {"window": 0}}, "engine.window"), ({"wind": {"noise_std": -1.0}}, "wind.noise_std"),
    ({"engine": {"threads": 0}}, "engine.threads"), ({"engine": {"threads": 1.5}}, "engine.threads"),
    ({"engine": {"kind": "local", "num_actors": 2}}, "engine.num_actors"),
    ({"env": {"foo": 1}}, "env.foo"), ({"env": 5}, "env"), ({"parquet": "yes"}, "parquet"),
])
def test_validate_rejects_and_names_the_key(cfg, key):
    with pytest.raises(ConfigError, match=key.replace("+", r"\+").replace(".", r"\.")):
        validate_config(cfg, check_paths=False)


def test_validate_output_root(tmp_path):
    (tmp_path / "file").write_text("x")
    validate_config({"output": str(tmp_path / "new" / "deeper")})
    assert not (tmp_path / "new").exists()
    with pytest.raises(ConfigError, match="not a directory"):
        validate_config({"output": str(tmp_path / "file")})
    with pytest.raises(ConfigError, match="not a directory"):
        validate_config({"output": str(tmp_path / "file" / "sub")})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_effective_config_resolves_defaults():
    eff = effective_config({"env": {"grid_size": [8, 8]}})
    assert eff["env"]["max_steps"] == 1000 and eff["env"]["goal_radius"] == 5.0
    assert eff["env"]["goal_location"] == [7, 7]
    assert effective_config({})["env"]["goal_location"] == [63, 63]
    assert effective_config({"env": {"grid_size": [200, 100]}})["env"]["goal_location"] == [64, 64]
    assert effective_config({"env": {"goal_radius": 0}})["env"]["goal_radius"] == FLOAT32_EPS


# ----------------------------------------------------------------------------- config_hash

def test_config_hash_is_sha256_of_compact_sorted_json_minus_execution_keys():
    cfg = cfg_of()
    data = {k: v for k, v in effective_config(cfg).items() if k not in EXECUTION_ONLY_KEYS}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    assert config_hash(cfg) == hashlib.sha256(text.encode()).hexdigest()
    assert set(EXECUTION_ONLY_KEYS) == {"output", "experiment", "rotate_size", "parquet", "engine"}
    assert all(isinstance(r, str) and r for r in EXECUTION_ONLY_KEYS.values())


def test_config_hash_is_stable_across_spellings_and_execution_settings():
    base = config_hash(cfg_of("--grid", "8x8", "--seed", "100", "--episodes", "2"))
    same = [
        ["env.grid_size=[8,8]", "seed=100", "episodes=2"],
        ["env.grid_size=[8, 8]", "--seed=100", "episodes=2", "env.max_steps=1000", "env.goal_radius=5"],
        ["--grid", "8x8", "--seed", "100", "--episodes", "2", "env.goal_location=[7,7]", "env.sigma=20"],
        ["--grid", "8x8", "--seed", "100", "--episodes", "2", "--output", "elsewhere", "--num-actors", "4",
         "--engine", "ray", "--address", "head:6379", "engine.shard_episodes=8", "engine.window=2", "--quiet"],
        ["--grid", "8x8", "--seed", "100", "--episodes", "2", "--experiment", "other", "--parquet",
         "--rotate-size", "100000"],
        ["preset=default", "--grid", "8x8", "--seed", "100", "env.max_steps=null"],
    ]
    for argv in same:
        assert config_hash(cfg_of(*argv)) == base, argv


def test_config_hash_changes_with_any_data_defining_value():
    base = cfg_of("--grid", "8x8")
    changes = [
        ["--seed", "124"], ["--episodes", "2"], ["--grid", "8x9"], ["--max-steps", "999"],
        ["--action-type", "discrete"], ["env.goal_radius=4.5"], ["env.sigma=19.5"],
        ["env.goal_location=[1,1]"], ["env.start_location=[0,0]"], ["env.step_size=2"],
        ["env.observation_type=antennae"], ["env.reward_type=sparse"], ["env.n_sensors=3"],
        ["env.sensor_distance=3"], ["wind.speed=2"], ["wind.direction_deg=90"], ["wind.noise_std=0.1"],
        ["policy.name=surge_cast"], ["policy.threshold=0.01"], ["policy.persistence=2"], ["policy.eps=0.5"],
        ["movie.step_policy=clamp"],
    ]
    hashes = {config_hash(base)}
    for extra in changes:
        h = config_hash(cfg_of("--grid", "8x8", *extra))
        assert h not in hashes, extra
        hashes.add(h)


def test_annotations_nothing_reads_do_not_change_the_hash():
    base = cfg_of("--grid", "8x8")
    noted = cfg_of("--grid", "8x8", "+notes=x", "+unknown=1")
    assert noted["notes"] == "x" and config_hash(noted) == config_hash(base)


def test_config_hash_does_not_touch_the_file_system(tmp_path):
    movie = {"env": {"plume": "movie"}, "movie": {"path": str(tmp_path / "later.npy")}}
    h = config_hash({"output": str(tmp_path / "no" / "such"), **movie})  # the movie need not exist yet
    assert h == config_hash({"output": "/elsewhere", **movie})
    assert list(tmp_path.iterdir()) == []
