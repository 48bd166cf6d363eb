"""run.json (docs/spec.md §9.2): keys, types, seeds, ``extra``; fills the context the records are checked against."""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

import numpy as np

from plume_capture import spec as records
from plume_capture.io.jsonl_decode import strict_loads
from plume_capture.io.rundir import open_regular
from plume_capture.readback.validate.report import Report


_RUN_ID_RE = re.compile(r"run-\d{8}-\d{6}(-[A-Za-z0-9_.-]+)?\Z")
_START_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z\Z")
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_SYSTEM_KEYS = ("hostname", "platform", "python_version", "pid", "user")
STEPS, EPISODES = records.STEPS_BASENAME, records.EPISODES_BASENAME


_SEEDS_RE = re.compile(rb'"episode_seeds"\s*:\s*\[([\s\d,-]*)\]')


def load_run_json(path, fast_seeds: bool = True):
    """-> (object, error message or None); ``episode_seeds`` becomes an int64 array.

    A very long ``episode_seeds`` list (up to 10^7 entries, docs/spec.md §9.2) is parsed by numpy
    rather than becoming a Python list of ints.
    """
    with open_regular(path) as f:
        raw = f.read()
    if raw.startswith(b"\xef\xbb\xbf"):
        return None, "starts with a byte order mark (the format is plain UTF-8)"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 at byte {exc.start}"
    seeds = None
    m = _SEEDS_RE.search(raw) if fast_seeds and len(raw) > (4 << 20) else None
    if m:
        try:
            seeds = np.fromstring(m.group(1), dtype=np.int64, sep=",")
            raw = raw[:m.start(1)] + raw[m.end(1):]
        except ValueError:
            seeds = None
    try:
        obj = strict_loads(raw)
    except ValueError as e:
        return None, str(e)
    if seeds is not None:
        if not (isinstance(obj, dict) and obj.get("episode_seeds") == []):
            return load_run_json(path, fast_seeds=False)  # the match was not the top-level key
        obj["episode_seeds"] = seeds
    return obj, None


def _is_int(v) -> bool:
    return type(v) is int


def _is_num(v) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


def _is_xy(v) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(_is_int(e) for e in v)


@dataclass
class Context:
    """What the records are checked against (from run.json, else from the first record)."""

    kind: str = "unknown"
    meta_ok: bool = False  # run.json was read (its values may still be wrong)
    run_id: str | None = None
    base_seed: int | None = None
    n_episodes: int | None = None
    grid: tuple | None = None
    goal: tuple | None = None
    radius: float | None = None
    sigma: float | None = None  # env_config.plume_params.sigma (a static plume)
    max_steps: int | None = None
    reward_type: str | None = None
    n_actions: int | None = None
    obs_type: str | None = None
    obs_len: int | None = None
    config_hash: str | None = None
    counts: dict | None = None
    files: dict | None = None
    meta: dict | None = None  # run.json (what bounds the text of the JSON Lines)

    @property
    def ours(self) -> bool:
        return self.kind != "reference"

    def expected_values(self) -> dict:
        return {"run_id": self.run_id, "schema_version": records.SCHEMA_VERSION}


def check_run_json(meta: dict, ctx: Context, rep: Report):
    """Check run.json (docs/spec.md §9.2) and fill ``ctx`` with what the records are checked against."""
    keys = list(meta)
    if keys != list(records.RUN_JSON_KEYS):
        missing = [k for k in records.RUN_JSON_KEYS if k not in meta]
        unknown = [k for k in keys if k not in records.RUN_JSON_KEYS]
        parts = (["missing " + ", ".join(missing)] if missing else []) + \
            (["unknown " + ", ".join(map(repr, unknown))] if unknown else [])
        rep.error("RUN_JSON_KEYS", "run.json", "; ".join(parts) or
                  "keys not in the order " + ", ".join(records.RUN_JSON_KEYS))
    extra = meta.get("extra")
    if not isinstance(extra, dict):
        if "extra" in meta:
            rep.error("RUN_JSON_TYPE", "run.json", "extra must be an object")
        extra = {}
    # Our runs always have extra.status (and more); the reference tool's have none of these.
    ours = any(k in extra for k in ("status", "files", "counts", "engine", "policy"))
    ctx.kind = "plume-capture" if ours or (extra and "simulation_metadata" not in extra) \
        else "reference"
    _check_top_level(meta, ctx, rep)
    _check_env_config(meta, ctx, rep)
    _check_seeds(meta, ctx, rep)
    _check_extra(extra, ctx, rep)


def _bad_type(rep, key, value, what):
    rep.error("RUN_JSON_TYPE", "run.json", f"{key} must be {what}, got {short(value)}")


def _check_top_level(meta, ctx, rep):
    sv = meta.get("schema_version", records.SCHEMA_VERSION)
    if sv != records.SCHEMA_VERSION:
        rep.error("SCHEMA_VERSION", "run.json", f"schema_version {short(sv)}, expected '0.1'")
    rid = meta.get("run_id")
    m = _RUN_ID_RE.match(rid) if isinstance(rid, str) else None
    if isinstance(rid, str) and rid:
        ctx.run_id = rid
    if "run_id" in meta and not m:
        _bad_type(rep, "run_id", rid, "run-YYYYMMDD-HHMMSS-<suffix>")
    elif m and ctx.ours and m.group(1) is None:
        rep.error("RUN_JSON_VALUE", "run.json", f"run_id {rid!r} has no unique suffix (docs/spec.md §9)")
    checks = {"experiment": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
              "start_time": (lambda v: isinstance(v, str) and _START_RE.match(v),
                             "YYYY-MM-DDTHH:MM:SSZ"),
              "package_version": (lambda v: isinstance(v, str), "a string"),
              "git_sha": (lambda v: v is None or isinstance(v, str), "a string or null"),
              "config_hash": (lambda v: v is None or isinstance(v, str) and (
                  not ctx.ours or _HEX64.match(v)), "a SHA-256 hex digest or null"),
              "system": (lambda v: isinstance(v, dict) and all(k in v for k in _SYSTEM_KEYS),
                         "an object with " + ", ".join(_SYSTEM_KEYS))}
    for key, (ok, what) in checks.items():
        if key in meta and not ok(meta[key]):
            _bad_type(rep, key, meta[key], what)
    if isinstance(meta.get("config_hash"), str):
        ctx.config_hash = meta["config_hash"]


def _check_env_config(meta, ctx, rep):
    if "env_config" not in meta:
        return
    env = meta["env_config"]
    if not isinstance(env, dict):
        _bad_type(rep, "env_config", env, "an object")
        return
    gs, src, ms, gr = (env.get(k) for k in ("grid_size", "source_location", "max_steps",
                                             "goal_radius"))
    if _is_xy(gs) and gs[0] >= 1 and gs[1] >= 1:
        ctx.grid = (gs[0], gs[1])
    else:
        _bad_type(rep, "env_config.grid_size", gs, "[W, H] with W, H >= 1")
    if _is_xy(src):
        ctx.goal = (src[0], src[1])
        if ctx.grid and not (0 <= src[0] < ctx.grid[0] and 0 <= src[1] < ctx.grid[1]):
            rep.error("RUN_JSON_VALUE", "run.json", f"env_config.source_location {src} is "
                      f"outside the {ctx.grid[0]}x{ctx.grid[1]} grid")
    else:
        _bad_type(rep, "env_config.source_location", src, "[x, y]")
    if _is_int(ms) and ms >= 1:
        ctx.max_steps = ms
    else:
        _bad_type(rep, "env_config.max_steps", ms, "an int >= 1")
    if _is_num(gr) and gr >= 0:
        ctx.radius = float(gr)
    else:
        _bad_type(rep, "env_config.goal_radius", gr, "a number >= 0")
    er = env.get("enable_rendering")
    if type(er) is not bool:
        _bad_type(rep, "env_config.enable_rendering", er, "a boolean")
    elif er and ctx.ours:
        rep.error("RUN_JSON_VALUE", "run.json", "env_config.enable_rendering is true; capture "
                  "never renders")
    pp = env.get("plume_params")
    if not isinstance(pp, dict):
        _bad_type(rep, "env_config.plume_params", pp, "an object")
        return
    if "sigma" in pp:
        if _is_num(pp["sigma"]) and pp["sigma"] > 0:
            ctx.sigma = float(pp["sigma"])
        else:
            _bad_type(rep, "env_config.plume_params.sigma", pp["sigma"], "a number > 0")
    psrc = pp.get("source_location")
    if psrc is not None and ctx.goal is not None and (not _is_xy(psrc) or tuple(psrc) != ctx.goal):
        rep.error("RUN_JSON_VALUE", "run.json", f"env_config.plume_params.source_location {short(psrc)} "
                  f"differs from env_config.source_location ({short(list(ctx.goal))})")


def _check_seeds(meta, ctx, rep):
    bs = meta.get("base_seed")
    if _is_int(bs) and 0 <= bs <= 2 ** 32 - 1:
        ctx.base_seed = bs
    elif "base_seed" in meta:
        _bad_type(rep, "base_seed", bs, "an int in [0, 2**32 - 1]")
    es = meta.get("episode_seeds")
    if isinstance(es, list) and all(_is_int(v) and abs(v) < 2 ** 63 for v in es):
        es = np.array(es, dtype=np.int64)
    if not isinstance(es, np.ndarray):
        if "episode_seeds" in meta:
            _bad_type(rep, "episode_seeds", es, "a list of ints")
        return
    ctx.n_episodes = len(es)
    if len(es) == 0:
        rep.error("RUN_JSON_VALUE", "run.json", "episode_seeds is empty")
    if ctx.base_seed is not None:
        expect = ctx.base_seed + np.arange(len(es), dtype=np.int64)
        wrong = np.flatnonzero(es != expect)
        if len(wrong):
            i = int(wrong[0])
            rep.error("SEEDS_MISMATCH", "run.json",
                      f"episode_seeds[{i}] is {int(es[i])}, expected base_seed + {i} = "
                      f"{int(expect[i])} ({len(wrong)} of {len(es)} seeds differ)")


def _check_extra(extra, ctx, rep):
    W = "run.json"
    env = extra.get("env") if isinstance(extra.get("env"), dict) else {}
    if ctx.ours:
        status = extra.get("status")
        if status != "complete":
            rep.error("RUN_INCOMPLETE", W, f"extra.status is {short(status)}, not 'complete'"
                      if "status" in extra else "extra.status is missing (the run did not finish)")
        if not env:
            rep.error("RUN_JSON_VALUE", W, "extra.env (the effective env settings) is missing")
        counts = extra.get("counts")
        if isinstance(counts, dict) and all(_is_int(counts.get(k)) for k in ("steps", "episodes")):
            ctx.counts = counts
        else:
            _bad_type(rep, "extra.counts", counts, '{"steps": int, "episodes": int}')
        config = extra.get("config")
        if isinstance(config, dict):  # the config that ran must agree with what run.json lists
            for key, listed, what in (("episodes", ctx.n_episodes, "episode_seeds lists"),
                                      ("seed", ctx.base_seed, "base_seed is")):
                if _is_int(config.get(key)) and listed is not None and config[key] != listed:
                    rep.error("COUNTS_MISMATCH", W, f"extra.config.{key} is {config[key]} but {what} {listed}")
        files = extra.get("files")
        if isinstance(files, dict) and all(
                isinstance(v, dict) and _is_int(v.get("bytes")) and _is_int(v.get("rows"))
                and isinstance(v.get("sha256"), str) for v in files.values()):
            ctx.files = files
        else:
            _bad_type(rep, "extra.files", files, '{file: {"bytes", "rows", "sha256"}}')
    else:
        rep.warn("REFERENCE_RUN", W, "written by the reference implementation (no extra.status, "
                 "extra.counts or extra.files): completeness, counts, sizes and checksums are "
                 "not checked")
    # Every setting run.json states twice (extra.env as it ran, env_config for the reference's readers).
    for key, ref in (("grid_size", ctx.grid), ("max_steps", ctx.max_steps), ("goal_radius", ctx.radius),
                     ("source_location", ctx.goal), ("goal_location", ctx.goal), ("sigma", ctx.sigma)):
        v = env.get(key)
        if v is not None and ref is not None and (tuple(v) if isinstance(v, list) else v) != ref:
            msg = f"extra.env.{key} {short(v)} differs from env_config ({short(ref)})"
            if ctx.ours:
                rep.error("RUN_JSON_VALUE", W, msg)
            else:
                rep.warn("UNCHECKED", W, msg + "; env_config is used")
    if ctx.ours and env and (env.get("sigma") is None) != (ctx.sigma is None):
        rep.error("RUN_JSON_VALUE", W, "extra.env.sigma and env_config.plume_params.sigma: one is missing "
                  f"({short(env.get('sigma'))} vs {short(ctx.sigma)})")
    if env.get("reward_type") in ("sparse", "step_penalty"):
        ctx.reward_type = env["reward_type"]
    ctx.n_actions = records.N_ACTIONS.get(env.get("action_type"))
    ctx.obs_type = env.get("observation_type")
    ctx.obs_len = {"concentration": 1, "wind_vector": 2,
                   "antennae": env.get("n_sensors") if _is_int(env.get("n_sensors")) else None
                   }.get(ctx.obs_type)
    unchecked = [what for what, v in (("rewards", ctx.reward_type), ("actions", ctx.n_actions))
                 if v is None]
    if unchecked:
        rep.warn("UNCHECKED", W, f"extra.env has no known reward/action type: step "
                 f"{' and '.join(unchecked)} not checked against it")


def short(v, n: int = 60) -> str:
    try:
        s = json.dumps(v.tolist() if isinstance(v, np.ndarray) else v)
    except (TypeError, ValueError):
        s = repr(v)
    return s if len(s) <= n else s[: n - 3] + "..."


