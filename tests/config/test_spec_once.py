"""The config is composed, checked and resolved once per run (issue 28): a plain CLI run and a
resume each call the check (``validate_config``) once and ``complete`` once. Counted with a wrapper
that delegates to the real function, bound wherever the package imported it."""
from __future__ import annotations

import sys
from collections import Counter

import pytest

from capture_helpers import complete_runs  # noqa: E402


@pytest.fixture
def calls(monkeypatch):
    """Counter of calls of ``validate_config`` and ``complete`` (every binding in the package)."""
    import plume_capture.capture.resume  # noqa: F401 - loaded, so its bindings are wrapped too
    import plume_capture.capture.run  # noqa: F401
    import plume_capture.cli.capture  # noqa: F401
    from plume_capture.config import check

    seen: Counter = Counter()
    for name in ("validate_config", "complete"):
        real = getattr(check, name)

        def counting(*a, _real=real, _name=name, **kw):
            seen[_name] += 1
            return _real(*a, **kw)

        for mod in [m for n, m in sys.modules.items() if n.startswith("plume_capture") and m is not None]:
            for attr, value in list(vars(mod).items()):
                if value is real:
                    monkeypatch.setattr(mod, attr, counting)
    return seen


ARGS = ["--engine", "local", "--quiet", "--episodes", "3", "--max-steps", "20", "--grid", "16x16"]


def test_a_cli_run_checks_once_and_completes_once(tmp_path, monkeypatch, calls):
    from plume_capture.cli.capture import run

    monkeypatch.chdir(tmp_path)
    assert run([*ARGS, "--output", "out", "env.sigma=3"]) == 0
    assert len(complete_runs(tmp_path / "out")) == 1
    assert calls == {"validate_config": 1, "complete": 1}


def test_a_resume_checks_once_and_completes_once(tmp_path, monkeypatch, calls):
    from plume_capture.capture.run import open_new, prepare
    from plume_capture.cli.capture import run
    from plume_capture.config import load_config, resolve

    monkeypatch.chdir(tmp_path)
    p = prepare(resolve(load_config(["output=out", "episodes=3", "env.max_steps=20",
                                     "env.grid_size=[16,16]", "engine.kind=local"])))
    _, lock = open_new(p)  # a run stopped before its first shard: its staging directory, manifest and lock
    lock.release()
    calls.clear()
    assert run(["--resume", str(p.staging), "--quiet", "--engine", "local"]) == 0
    assert [r.name for r in complete_runs(tmp_path / "out")] == [p.run_id]
    assert calls == {"validate_config": 1, "complete": 1}


@pytest.mark.parametrize("env", [
    {},  # max_steps, goal_radius and goal_location null
    {"goal_radius": 0, "max_steps": 7, "grid_size": [20, 10]},
    {"goal_radius": 2.5, "goal_location": [3, 4], "plume": "puff"},
])
def test_one_null_resolver_feeds_the_hash_and_the_physics(monkeypatch, env):
    """``sim.params.resolve_nulls`` is called by the hashed side (config.resolve) and by the physics
    (EnvParams.build), and both hold what it returned."""
    import importlib

    from plume_capture.sim import params

    resolve_mod = importlib.import_module("plume_capture.config.resolve")

    seen = []

    def counting(*a, _real=params.resolve_nulls):
        seen.append(_real(*a))
        return seen[-1]

    monkeypatch.setattr(params, "resolve_nulls", counting)
    monkeypatch.setattr(resolve_mod, "resolve_nulls", counting)
    spec = resolve_mod.resolve({"env": env}, check_paths=False)
    hashed = resolve_mod.effective_config({"env": env})["env"]
    runs = spec.env.build().params
    assert len(seen) == 3 and seen[0] == seen[1] == seen[2]  # resolve, effective_config, build
    steps, radius, goal = seen[0]
    assert (hashed["max_steps"], hashed["goal_radius"], hashed["goal_location"]) == (steps, radius, list(goal))
    assert (runs.max_steps, runs.goal_radius, runs.goal_location) == (steps, radius, goal)


@pytest.mark.parametrize("key, value", [
    ("env.sigma", 1e20), ("env.sigma", 0.0), ("env.sensor_distance", -1.0), ("env.goal_radius", -0.5),
    ("wind.noise_std", -1.0), ("wind.speed", 1e31), ("env.n_sensors", 257), ("env.step_size", 0),
    ("env.max_steps", 2**31),
])
def test_one_range_table_refuses_alike_in_the_config_and_in_gymnasium(key, value):
    """An out-of-range value is refused with the same line, naming the same bound, by the config
    check and by ``gymnasium.make("PlumeNav-v0", ...)`` (sigma=1e20 and sensor_distance=-1 used to
    be accepted by the env)."""
    import gymnasium

    import plume_capture.envs  # noqa: F401 - registers PlumeNav-v0
    from plume_capture.config import validate_config
    from plume_capture.errors import ConfigError
    from plume_capture.spec import FLOAT_RANGES, INT_RANGES

    group, name = key.split(".")
    with pytest.raises(ConfigError) as by_config:
        validate_config({group: {name: value}}, check_paths=False)
    kwarg = f"wind_{name}" if group == "wind" else name
    with pytest.raises(ConfigError) as by_env:
        gymnasium.make("PlumeNav-v0", **{kwarg: value})
    lo, hi = {**INT_RANGES, **FLOAT_RANGES}[key]
    assert str(by_env.value) == str(by_config.value), (by_env.value, by_config.value)
    assert key in str(by_env.value) and (f"{lo:g}" in str(by_env.value) or f"{hi:g}" in str(by_env.value))


def test_hydra_private_override_step_is_pinned_to_the_version_it_was_checked_against():
    """``config.compose`` applies value overrides with Hydra's private
    ``ConfigLoaderImpl._apply_overrides_to_config`` (behind ``hydra_apply_value_overrides``). On a
    Hydra upgrade this fails: re-check that the private method still exists with the signature
    ``(overrides: list[Override], cfg: DictConfig)``, still merges values (``OmegaConf.update(...,
    merge=True)``) and still raises "Could not override 'KEY'" (``_hydra_message`` reads it), run
    tests/config, then set ``HYDRA_CHECKED`` to the new version."""
    import hydra

    from plume_capture.config.compose import HYDRA_CHECKED

    assert hydra.__version__ == HYDRA_CHECKED, (
        f"hydra-core {hydra.__version__} is installed; config.compose.hydra_apply_value_overrides was checked "
        f"against {HYDRA_CHECKED}: re-check it (see this test's docstring), then update HYDRA_CHECKED")


@pytest.mark.parametrize("overrides", [
    ["seed=3", "env.grid_size=[8,8]", "env.goal_location=null", "policy.eps=0.25"],
    ["wind={speed: 2.0}", "env.max_steps=12"],
])
def test_the_override_step_composes_what_hydras_public_compose_does(overrides):
    """The fast path (cached base + Hydra's override step) gives the config Hydra's public
    ``compose`` gives for the same value overrides."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from plume_capture.config import compose_config, default_config_root

    root = default_config_root() / "data_capture"
    with initialize_config_dir(config_dir=str(root), version_base=None):
        public = OmegaConf.to_container(compose(config_name="config", overrides=overrides), resolve=True)
    public.pop("hydra", None)
    public.pop("defaults", None)
    assert compose_config(overrides) == public
    with pytest.raises(Exception, match="unknown config key 'env.sigmaa'"):
        compose_config(["env.sigmaa=3"])


def test_one_policy_fit_check_refuses_alike_in_the_config_and_in_the_physics():
    """The policy/action fit has one home (``spec.policy_fit_problem``): the config check and
    ``PolicyParams.validated`` say the same line, naming the setting as each caller spells it."""
    from plume_capture.config import validate_config
    from plume_capture.errors import ConfigError
    from plume_capture.sim.params import PolicyParams

    with pytest.raises(ConfigError) as in_config:
        validate_config({"policy": {"name": "surge_cast"}, "env": {"action_type": "discrete"}}, check_paths=False)
    with pytest.raises(ConfigError) as in_physics:
        PolicyParams("surge_cast", 0.0, 1, 0.0).validated("discrete")
    assert str(in_config.value) == "policy.name 'surge_cast' needs env.action_type oriented, got 'discrete'"
    assert str(in_physics.value) == str(in_config.value).replace("env.action_type", "action_type")
