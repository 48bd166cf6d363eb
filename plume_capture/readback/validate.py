"""Validation of run directories (SPEC §11): ``validate_run_artifacts`` and the
``plume-nav-validate RUN_DIR [--json] [--no-parquet] [--max-errors N]`` command (``main``;
exit 0 ok, 1 not ok, 2 bad usage).

What is checked: run.json (keys and their order, types, seeds, ``extra.status``/``counts``/
``files``); the file set (rotated parts in order and without gaps, stray or unlisted files);
gzip integrity, sizes, sha256 and row counts against ``extra.files``; every record (keys, JSON
types, ``schema_version``, one ``run_id``, episode ids and seeds, positions in the grid,
distance to the goal, the terminated/truncated flags, rewards and actions against
``extra.env``, observation length); per episode: steps ``1..n`` contiguous and in order, and the
episode record agreeing with its steps (count, sequential float64 reward sum, final position
and distance, flags); Parquet against the JSON Lines value for value (floats bit for bit) and its
key-value metadata.

Everything is streamed: JSON Lines chunk by chunk (``load``), Parquet batch by batch, with the
per-episode state carried across chunk and file boundaries, so memory does not grow with the
run. Decompression, parsing and Parquet decoding run in worker threads (the kernels release the
GIL).

Each problem is one string ``CODE: where: message`` (codes in ``CODES``, warnings in
``WARNING_CODES``); ``where`` is ``run.json``, a file name or ``file:line``. Row-level problems
of one kind are reported once per file with the first line and the number of rows. A run is
``kind == "reference"`` (the reference tool's) when run.json's ``extra`` has none of our keys
(``status``, ``files``, ``counts``, ``engine``, ``policy``); what cannot be checked for it
becomes a warning. For our runs a missing ``extra.status`` means the run is incomplete.
"""
from __future__ import annotations

import gzip
import json
import math
import os
import re
import threading
import queue
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from plume_capture import spec as records
from plume_capture.kernels.checks import (EV_AFTER_END, EV_BACK, EV_DUP, EV_EP_GAP, EV_FIRST, EV_GAP, EV_ORDER,
                                          _epid_parse, _step_sequence)
from plume_capture.io.arrow import from_numpy, to_numpy
from plume_capture.io.jsonl_decode import (EPISODE_LAYOUT, STEP_LAYOUT, BufferPool, GzipLines, Layout, episode_index,
                                           parse_fast, parse_slow, sha256_file, strict_loads)
from plume_capture.io.rundir import list_run_files
from plume_capture.kernels.jsonl_scan import T_EPID, T_FLIST, T_POS, T_STR, count_lines

CODES = {
    # run directory and run.json
    "RUN_DIR_MISSING": "the run directory does not exist or is not a directory",
    "RUN_JSON_MISSING": "no run.json (the run is incomplete)",
    "RUN_JSON_INVALID": "run.json is not a valid JSON object",
    "RUN_JSON_KEYS": "run.json top-level keys are not exactly RUN_JSON_KEYS in order",
    "RUN_JSON_TYPE": "a run.json value has the wrong type or form",
    "RUN_JSON_VALUE": "a run.json value contradicts the spec or another run.json value",
    "RUN_INCOMPLETE": "extra.status is not 'complete'",
    "SEEDS_MISMATCH": "episode_seeds is not [base_seed + i for i in range(episodes)]",
    "COUNTS_MISMATCH": "extra.counts / episode_seeds disagree with the records",
    # files
    "FILE_MISSING": "a required or listed file is missing",
    "FILE_UNREADABLE": "a file cannot be read (permissions, I/O error)",
    "PART_MISSING": "a rotated part is missing (gap in numbering or listed in extra.files)",
    "STRAY_PART": "a file named like an artifact that no reader loads (its rows are lost)",
    "FILE_UNLISTED": "an artifact file is not listed in extra.files",
    "SIZE_MISMATCH": "file size differs from extra.files",
    "SHA256_MISMATCH": "file sha256 differs from extra.files",
    "ROWS_MISMATCH": "number of lines/rows differs from extra.files",
    "GZIP_TRUNCATED": "gzip stream ends inside a member (or the file is empty)",
    "GZIP_CORRUPT": "gzip data cannot be decoded (bad block, CRC/size mismatch, trailing junk)",
    # records
    "RECORD_JSON": "a line is not one JSON object (invalid JSON, NaN, blank, unterminated)",
    "RECORD_KEYS": "a record has missing, unknown or duplicate keys",
    "RECORD_TYPE": "a record value has the wrong JSON type",
    "RECORD_VALUE": "a record value violates a constraint (range, avg = duration/steps, ...)",
    "SCHEMA_VERSION": "schema_version is not '0.1'",
    "RUN_ID_MISMATCH": "a record's run_id differs from run.json",
    "EPISODE_ID": "episode_id is not of the form ep-NNNNNN",
    "SEED_MISMATCH": "a step's seed is not base_seed + episode index",
    "EPISODE_ORDER": "episodes out of order (an episode id goes back or resumes)",
    "EPISODE_MISSING": "an episode has no steps or no episode record",
    "DUPLICATE": "the same step (or episode record) twice in a row",
    "STEP_SEQUENCE": "steps of an episode do not start at 1 or go backwards",
    "STEP_GAP": "steps of an episode skip numbers (records missing)",
    "STEP_AFTER_END": "step records after the step that terminated/truncated the episode",
    "EPISODE_MISMATCH": "an episode record disagrees with its steps",
    "POSITION_RANGE": "a position lies outside the grid",
    "DISTANCE_MISMATCH": "distance_to_goal is not the distance from the position to the goal",
    "FLAG_MISMATCH": "terminated/truncated disagree with distance/goal_radius or step/max_steps",
    "REWARD_MISMATCH": "a reward does not follow from the reward type and the distance",
    "ACTION_RANGE": "an action is outside the action space",
    "OBS_SHAPE": "observation_summary has the wrong length",
    "OBS_VALUE": "a concentration observation lies outside [0, 1]",
    # parquet
    "PARQUET_CORRUPT": "a Parquet file cannot be read",
    "PARQUET_SCHEMA": "a Parquet file's schema differs from the record schema",
    "PARQUET_METADATA": "Parquet key-value metadata missing or differing from run.json",
    "PARQUET_MISMATCH": "Parquet rows differ from the JSON Lines",
    "ERRORS_SUPPRESSED": "more errors than max_errors",
}

WARNING_CODES = {
    "REFERENCE_RUN": "written by the reference implementation; some checks cannot be made",
    "UNCHECKED": "a check could not be made (what is missing is named)",
    "UNKNOWN_FILE": "a file that is not part of the run format",
    "PARQUET_SKIPPED": "Parquet not compared (check_parquet=False or JSON Lines damaged)",
}

_RUN_ID_RE = re.compile(r"run-\d{8}-\d{6}(-[A-Za-z0-9_.-]+)?\Z")
_START_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z\Z")
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_SYSTEM_KEYS = ("hostname", "platform", "python_version", "pid", "user")
_STEPS, _EPISODES = records.STEPS_BASENAME, records.EPISODES_BASENAME


# ------------------------------------------------------------------------------------------------
# Report


class _Report:
    def __init__(self, max_errors: int):
        self.max_errors = max(int(max_errors), 1)
        self.entries: list[list] = []  # [code, where, message, rows]
        self.agg: dict = {}
        self.warnings: list[str] = []
        self.suppressed = 0

    def error(self, code: str, where: str, msg: str):
        if len(self.entries) >= self.max_errors:
            self.suppressed += 1
            return
        self.entries.append([code, where, msg, 0])

    def rows(self, code: str, fname: str, line: int, msg: str, count: int, check: str = ""):
        """A row-level problem: reported once per (code, file, check) with a running row count."""
        key = (code, fname, check)
        e = self.agg.get(key)
        if e is not None:
            e[3] += count
            return
        if len(self.entries) >= self.max_errors:
            self.suppressed += 1
            self.agg[key] = [code, "", "", 0]
            return
        e = [code, f"{fname}:{line}", msg, count]
        self.entries.append(e)
        self.agg[key] = e

    def warn(self, code: str, where: str, msg: str):
        self.warnings.append(f"{code}: {where}: {msg}")

    def error_strings(self) -> list[str]:
        out = []
        for code, where, msg, count in self.entries:
            s = f"{code}: {where}: {msg}"
            if count > 1:
                s += f" ({count} rows in this file)"
            out.append(s)
        if self.suppressed:
            out.append(f"ERRORS_SUPPRESSED: run: {self.suppressed} more errors not listed "
                       f"(max_errors={self.max_errors})")
        return out


def _fmt(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return str(v)


# ------------------------------------------------------------------------------------------------
# run.json


_SEEDS_RE = re.compile(rb'"episode_seeds"\s*:\s*\[([\s\d,-]*)\]')


def _load_run_json(path, fast_seeds: bool = True):
    """-> (object, error message or None); ``episode_seeds`` becomes an int64 array.

    A very long ``episode_seeds`` list (up to 10^7 entries, SPEC §9.2) is parsed by numpy
    rather than becoming a Python list of ints.
    """
    with open(path, "rb") as f:
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
            return _load_run_json(path, fast_seeds=False)  # the match was not the top-level key
        obj["episode_seeds"] = seeds
    return obj, None


def _is_int(v) -> bool:
    return type(v) is int


def _is_num(v) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


def _is_xy(v) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(_is_int(e) for e in v)


@dataclass
class _Ctx:
    """What the records are checked against (from run.json, else from the first record)."""

    kind: str = "unknown"
    meta_ok: bool = False  # run.json was read (its values may still be wrong)
    run_id: str | None = None
    base_seed: int | None = None
    n_episodes: int | None = None
    grid: tuple | None = None
    goal: tuple | None = None
    radius: float | None = None
    max_steps: int | None = None
    reward_type: str | None = None
    n_actions: int | None = None
    obs_type: str | None = None
    obs_len: int | None = None
    config_hash: str | None = None
    counts: dict | None = None
    files: dict | None = None

    @property
    def ours(self) -> bool:
        return self.kind != "reference"

    def expected_values(self) -> dict:
        return {"run_id": self.run_id, "schema_version": records.SCHEMA_VERSION}


def _check_run_json(meta: dict, ctx: _Ctx, rep: _Report):
    """Check run.json (SPEC §9.2) and fill ``ctx`` with what the records are checked against."""
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
    rep.error("RUN_JSON_TYPE", "run.json", f"{key} must be {what}, got {_short(value)}")


def _check_top_level(meta, ctx, rep):
    sv = meta.get("schema_version", records.SCHEMA_VERSION)
    if sv != records.SCHEMA_VERSION:
        rep.error("SCHEMA_VERSION", "run.json", f"schema_version {_short(sv)}, expected '0.1'")
    rid = meta.get("run_id")
    m = _RUN_ID_RE.match(rid) if isinstance(rid, str) else None
    if isinstance(rid, str) and rid:
        ctx.run_id = rid
    if "run_id" in meta and not m:
        _bad_type(rep, "run_id", rid, "run-YYYYMMDD-HHMMSS-<suffix>")
    elif m and ctx.ours and m.group(1) is None:
        rep.error("RUN_JSON_VALUE", "run.json", f"run_id {rid!r} has no unique suffix (SPEC §9)")
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
    if not isinstance(env.get("plume_params"), dict):
        _bad_type(rep, "env_config.plume_params", env.get("plume_params"), "an object")


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
            rep.error("RUN_INCOMPLETE", W, f"extra.status is {_short(status)}, not 'complete'"
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
    for key, ref in (("grid_size", ctx.grid), ("max_steps", ctx.max_steps),
                     ("goal_radius", ctx.radius)):
        v = env.get(key)
        if v is not None and ref is not None and (tuple(v) if isinstance(v, list) else v) != ref:
            msg = f"extra.env.{key} {_short(v)} differs from env_config ({_short(ref)})"
            if ctx.ours:
                rep.error("RUN_JSON_VALUE", W, msg)
            else:
                rep.warn("UNCHECKED", W, msg + "; env_config is used")
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


def _short(v, n: int = 60) -> str:
    try:
        s = json.dumps(v.tolist() if isinstance(v, np.ndarray) else v)
    except (TypeError, ValueError):
        s = repr(v)
    return s if len(s) <= n else s[: n - 3] + "..."


def _cat(parts: list[dict]) -> dict:
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _take(d: dict, sel) -> dict:
    return {k: v[sel] for k, v in d.items()}


def _eid(i) -> str:
    return records.episode_id(int(i))


def _eids(a, b) -> str:
    return _eid(a) if a == b else f"{_eid(a)}..{_eid(b)}"


class _Joiner:
    """Matches per-episode summaries of the steps with the episode records, both in order."""

    def __init__(self, rep: _Report):
        self.rep = rep
        self.S: list[dict] = []
        self.E: list[dict] = []

    @staticmethod
    def _last(parts):
        for p in reversed(parts):
            if len(p["idx"]):
                return int(p["idx"][-1])
        return None

    def wants_episodes(self) -> bool:
        s, e = self._last(self.S), self._last(self.E)
        return s is not None and (e is None or e < s)

    def match(self, final: bool):
        if not self.S or not self.E:
            if final:
                self.S, self.E = [], []
            return
        S, E = _cat(self.S), _cat(self.E)
        if final:
            ns, ne = len(S["idx"]), len(E["idx"])
        else:
            if not len(S["idx"]) or not len(E["idx"]):
                self.S, self.E = [S], [E]
                return
            hi = min(S["idx"][-1], E["idx"][-1])
            ns = int(np.searchsorted(S["idx"], hi, "right"))
            ne = int(np.searchsorted(E["idx"], hi, "right"))
        _, si, ei = np.intersect1d(S["idx"][:ns], E["idx"][:ne], assume_unique=True,
                                   return_indices=True)
        if len(si):
            self._compare(_take(S, si), _take(E, ei))
        self.S = [_take(S, slice(ns, None))] if ns < len(S["idx"]) else []
        self.E = [_take(E, slice(ne, None))] if ne < len(E["idx"]) else []

    def _compare(self, s: dict, e: dict):
        bad_steps = s["count"] != e["total_steps"]
        bad_sum = s["rsum"] != e["total_reward"]
        bad_pos = (s["x"] != e["x"]) | (s["y"] != e["y"])
        bad_dist = s["dist"] != e["dist"]
        bad_term = s["term"] != e["term"]
        bad_trunc = s["trunc"] != e["trunc"]
        bad = bad_steps | bad_sum | bad_pos | bad_dist | bad_term | bad_trunc
        for k in np.flatnonzero(bad)[: self.rep.max_errors + 1]:
            parts = []
            if bad_steps[k]:
                parts.append(f"total_steps {e['total_steps'][k]} but {s['count'][k]} step records")
            if bad_sum[k]:
                parts.append(f"total_reward {_fmt(e['total_reward'][k])} but the steps' rewards "
                             f"sum to {_fmt(s['rsum'][k])}")
            if bad_pos[k]:
                parts.append(f"final_position ({e['x'][k]}, {e['y'][k]}) but the last step is at "
                             f"({s['x'][k]}, {s['y'][k]})")
            if bad_dist[k]:
                parts.append(f"final_distance_to_goal {_fmt(e['dist'][k])} but the last step has "
                             f"{_fmt(s['dist'][k])}")
            for flag, badf in (("terminated", bad_term), ("truncated", bad_trunc)):
                key = flag[:4] if flag == "terminated" else "trunc"
                if badf[k]:
                    parts.append(f"{flag} {_fmt(bool(e[key][k]))} but the last step has "
                                 f"{_fmt(bool(s[key][k]))}")
            self.rep.error("EPISODE_MISMATCH", f"{e['file'][k]}:{e['line'][k]}",
                           f"{_eid(s['idx'][k])}: " + "; ".join(parts))
        extra = int(bad.sum()) - min(int(bad.sum()), self.rep.max_errors + 1)
        self.rep.suppressed += extra


# ------------------------------------------------------------------------------------------------
# Parquet comparison


def _epid_index_arrow(strs: pa.Array) -> np.ndarray:
    """Vectorised ``episode_index`` for an Arrow string array."""
    strs = strs.cast(pa.string())
    bufs = strs.buffers()
    off = np.frombuffer(bufs[1], np.int32)[strs.offset:strs.offset + len(strs) + 1]
    data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None else np.zeros(1, np.uint8)
    out = np.empty(len(strs), np.int64)
    _epid_parse(off, data, out)
    return out


def _dict_parts(arr: pa.Array):
    if not pa.types.is_dictionary(arr.type):
        arr = pc.dictionary_encode(arr)
    return arr.dictionary, to_numpy(arr.indices)


def _parquet_cols(rb: pa.RecordBatch, layout: Layout, expected: dict) -> dict:
    """The columns of a Parquet batch in the form of ``load.Batch.cols``."""
    cols = {}
    for name in layout.names:
        arr = rb.column(name)
        if arr.null_count:
            raise ValueError(f"column {name} has {arr.null_count} nulls")
        kind = layout.kinds[name]
        if kind == T_EPID:
            cols[name] = _epid_index_arrow(arr)
        elif kind == T_STR:
            # Read as a dictionary (one value in a good run). A batch carries its row group's
            # dictionary so far, so only the entries the batch uses are looked at.
            d, ix = _dict_parts(arr)
            used, inverse = np.unique(ix, return_inverse=True)
            d = d.take(from_numpy(used.astype(np.int64), pa.int64()))
            cols[name] = np.array([v == expected.get(name) for v in d.to_pylist()],
                                  bool)[inverse]
        elif kind == T_POS:
            xs, ys = arr.flatten()
            if xs.null_count or ys.null_count:
                raise ValueError(f"column {name} has nulls")
            cols[name + ".x"] = to_numpy(xs)
            cols[name + ".y"] = to_numpy(ys)
        elif kind == T_FLIST:
            off = to_numpy(arr.offsets)
            vals = arr.flatten()
            if vals.null_count:
                raise ValueError(f"column {name} has null elements")
            cols[name + ".offsets"] = off - off[0]
            cols[name + ".values"] = to_numpy(vals)
        else:
            cols[name] = to_numpy(arr)
    return cols


def _slice_cols(cols: dict, start: int, n: int, lf: str | None) -> dict:
    out = {}
    for k, v in cols.items():
        if lf and k == lf + ".offsets":
            out[k] = v[start:start + n + 1] - v[start]
        elif lf and k == lf + ".values":
            off = cols[lf + ".offsets"]
            out[k] = v[off[start]:off[start + n]]
        else:
            out[k] = v[start:start + n]
    return out


def _cat_cols(parts: list[dict], lf: str | None) -> dict:
    if len(parts) == 1:
        return parts[0]
    out = _cat(parts)
    if lf:
        lens = np.concatenate([np.diff(p[lf + ".offsets"]) for p in parts])
        out[lf + ".offsets"] = np.concatenate([[0], np.cumsum(lens)])
    return out


def _slice_rows(cols: dict, rows: np.ndarray, lf: str | None) -> dict:
    out = {}
    for k, v in cols.items():
        if lf and k == lf + ".offsets":
            out[k] = np.concatenate([[0], np.cumsum(np.diff(v)[rows])])
        elif lf and k == lf + ".values":
            off = cols[lf + ".offsets"]
            out[k] = np.concatenate([v[off[r]:off[r + 1]] for r in rows] or [v[:0]])
        else:
            out[k] = v[rows]
    return out


class _ParquetSide:
    """Reads a Parquet file batch by batch in a background thread and compares it, row for row,
    with the JSON Lines records of the same base (all parts in order)."""

    BATCH = 1 << 14

    def __init__(self, path: str, layout: Layout, ctx: _Ctx, rep: _Report):
        self.path, self.name = path, os.path.basename(path)
        self.layout, self.ctx, self.rep = layout, ctx, rep
        self.active = False
        self.diverged = False  # after the first difference rows are only counted
        self.rows = None
        self.pos = 0  # parquet rows consumed
        self.parts: list[list] = []  # [cols, rows used, rows]
        self._q: queue.Queue | None = None
        self._stop = threading.Event()
        try:
            # No pre-buffering: it holds whole row groups (the engine writes 256Ki rows each).
            pf = pq.ParquetFile(path, read_dictionary=layout.str_fields, pre_buffer=False,
                                buffer_size=1 << 20)
        except Exception as e:  # noqa: BLE001 - any reader failure means a damaged file
            rep.error("PARQUET_CORRUPT", self.name, f"cannot open: {e}")
            return
        self.rows = pf.metadata.num_rows
        got = pf.schema_arrow.remove_metadata()
        want = layout.schema
        if got.names != want.names or any(not g.type.equals(w.type) and not (
                pa.types.is_dictionary(g.type) and g.type.value_type == w.type)
                for g, w in zip(got, want)):
            rep.error("PARQUET_SCHEMA", self.name, f"schema differs from the record schema: "
                      f"{_short(str(got), 200)}")
            return
        self._check_metadata(pf)
        self.pf = pf
        self.active = True
        self._q = queue.Queue(maxsize=2)
        self._thread = threading.Thread(target=self._produce, daemon=True)
        self._thread.start()

    def _check_metadata(self, pf):
        if not self.ctx.meta_ok:
            return
        kv = {k.decode(errors="replace"): v.decode(errors="replace")
              for k, v in (pf.metadata.metadata or {}).items()}
        want = {"schema_version": records.SCHEMA_VERSION, "run_id": self.ctx.run_id,
                "config_hash": self.ctx.config_hash}
        missing = [k for k, v in want.items() if k not in kv and v is not None]
        if missing and not self.ctx.ours:
            self.rep.warn("UNCHECKED", self.name, "no key-value metadata " + ", ".join(missing)
                          + " (reference Parquet)")
            return
        if missing:
            self.rep.error("PARQUET_METADATA", self.name,
                           "key-value metadata lacks " + ", ".join(missing))
        for k, v in want.items():
            if k in kv and kv[k] != (v if v is not None else kv[k]):
                self.rep.error("PARQUET_METADATA", self.name,
                               f"metadata {k} is {kv[k]!r}, run.json has {v!r}")

    def _produce(self):
        try:
            # One thread is enough here (and Arrow's pool threads cost memory).
            for rb in self.pf.iter_batches(batch_size=self.BATCH, use_threads=False):
                cols = _parquet_cols(rb, self.layout, self.ctx.expected_values())
                while not self._stop.is_set():
                    try:
                        self._q.put(("ok", cols, rb.num_rows), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._q.put(("end", None, 0))
        except Exception as e:  # noqa: BLE001
            self._q.put(("error", str(e), 0))

    def _next_part(self) -> bool:
        """Append the next Parquet batch to ``self.parts``; False at the end."""
        kind, cols, k = self._q.get()
        if kind == "end":
            self._q.put((kind, cols, k))
            return False
        if kind == "error":
            self.rep.error("PARQUET_CORRUPT", self.name, f"cannot read beyond row {self.pos}: "
                           f"{cols}")
            self.close()
            return False
        self.parts.append([cols, 0, k])
        return True

    def _take(self, n: int):
        """Yield ``(cols, start, count, row)`` pieces of the next ``n`` Parquet rows (views;
        ``row`` is the file row of the piece's first row)."""
        while n > 0:
            if not self.parts and not self._next_part():
                return
            part = self.parts[0]
            cols, off, k = part
            m = min(n, k - off)
            part[1] += m
            self.pos += m
            n -= m
            if part[1] == k:
                self.parts.pop(0)
            yield cols, off, m, self.pos - m

    def compare(self, batch, fname: str):
        """Compare the next Parquet rows with the lines of one JSON Lines chunk (the batch holds
        the well-formed ones; the rows of the others are skipped)."""
        if not self.active:
            return
        nlines, got = batch.nlines, 0
        if batch.rows is None and not self.diverged:
            for cols, off, m, row in self._take(nlines):
                self._diff(batch, got, cols, off, m, fname, row)
                got += m
        else:
            pieces = list(self._take(nlines))
            got = sum(m for _, _, m, _ in pieces)
            if not self.diverged and batch.n and got == nlines:
                lf = self.layout.list_field
                p = _cat_cols([_slice_cols(c, o, m, lf) for c, o, m, _ in pieces], lf)
                self._diff(batch, 0, _slice_rows(p, batch.rows, lf), 0, batch.n, fname,
                           pieces[0][3], batch.rows)
        if got < nlines and self.active:
            self._report(fname, batch.first + got, f"{self.name} has only {self.pos} rows",
                         nlines - got, "short")
            self.close()

    def _diff(self, batch, ja: int, p: dict, pa_: int, k: int, fname: str, row0: int,
              rows=None):
        """Compare JSON Lines rows ``ja:ja+k`` of ``batch`` with Parquet rows ``pa_:pa_+k``
        (file rows ``row0 + (rows or range(k))``)."""
        if self.diverged or k == 0:
            return
        c = batch.cols
        lf = self.layout.list_field
        first = None
        for key, a in c.items():
            if lf and key == lf + ".values":
                continue
            b = p[key]
            if lf and key == lf + ".offsets":
                ao, bo = a[ja:ja + k + 1], b[pa_:pa_ + k + 1]
                m = np.diff(ao) != np.diff(bo)
                if not m.any():
                    va = c[lf + ".values"][ao[0]:ao[-1]]
                    vb = p[lf + ".values"][bo[0]:bo[-1]]
                    cs = np.concatenate([[0], np.cumsum(va.view(np.uint64) != vb.view(np.uint64))])
                    rel = ao - ao[0]
                    m = (cs[rel[1:]] - cs[rel[:-1]]) > 0
                name = lf
            else:
                a, b = a[ja:ja + k], b[pa_:pa_ + k]
                m = (a.view(np.uint64) != b.view(np.uint64)) if a.dtype == np.float64 else a != b
                name = key
            if m.any():
                i = int(np.argmax(m))
                if first is None or i < first[0]:
                    first = (i, name)
        if first is not None:
            i, name = first
            row = row0 + (i if rows is None else int(rows[i]))
            self._report(fname, int(batch.lines[ja + i]),
                         f"{self.name} row {row + 1}: {name} differs from the JSON Lines "
                         f"({self._value(p, name, pa_ + i)} vs {self._value(c, name, ja + i)}); "
                         "later rows not compared", 1, "values")
            self.diverged = True

    def _value(self, cols, name, i):
        lf = self.layout.list_field
        if name == lf:
            off, vals = cols[lf + ".offsets"], cols[lf + ".values"]
            return _fmt([float(v) for v in vals[off[i]:off[i + 1]]])
        v = cols[name]
        if name == "episode_id":
            return _eid(v[i]) if v[i] >= 0 else "<malformed>"
        if name in self.layout.str_fields:
            return "expected value" if v[i] else "other value"
        return _fmt(v[i].item())

    def _report(self, fname, line, msg, count, check):
        self.rep.rows("PARQUET_MISMATCH", fname, line, msg, count, check + self.name)

    def finish(self, total_lines: int):
        if not self.active:
            self.close()
            return
        if self.rows is not None and self.rows != total_lines:
            self.rep.error("PARQUET_MISMATCH", self.name,
                           f"{self.rows} rows, the JSON Lines have {total_lines}")
        self.close()

    def disable(self, why: str):
        if self.active:
            self.rep.warn("PARQUET_SKIPPED", self.name, why)
        self.active = False
        self.close()

    def close(self):
        self.active = False
        self._stop.set()
        if self._q is not None:
            try:
                while True:
                    self._q.get_nowait()
            except queue.Empty:
                pass


# ------------------------------------------------------------------------------------------------
# Streams


def _chunks(reader: GzipLines):
    """The chunks of ``reader``, read and decompressed in a background thread; the consumer
    gives each chunk back (``reader.pool.put``) when done with it."""
    q: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()

    def produce():
        try:
            for chunk in reader:
                if stop.is_set():
                    return
                q.put(chunk)
        except OSError as e:
            reader.problem = ("FILE_UNREADABLE", f"cannot read: {e}")
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            q.put(e)
        q.put(None)

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        if t.is_alive():  # the consumer stopped early: the producer may wait for a buffer
            reader.pool.close()
        t.join()


class _Stream:
    """The JSON Lines files of one base, parsed chunk by chunk (parsing overlaps with the next
    chunk's parse and decompression in worker threads)."""

    def __init__(self, run_dir, files, layout: Layout, ctx: _Ctx, rep: _Report,
                 parquet: _ParquetSide | None, pool: ThreadPoolExecutor, chunk_bytes: int):
        self.run_dir, self.files, self.layout = run_dir, files, layout
        self.ctx, self.rep, self.parquet, self.pool = ctx, rep, parquet, pool
        self.chunk_bytes = chunk_bytes
        self.file_info: list[tuple] = []  # (lines, bytes, sha256) per file read
        self.lines = 0
        self.damaged = False

    def batches(self):
        """Yield (file name, batch) for every chunk; problems are reported as they come."""
        L = self.layout
        # Buffers: one filling, two parsing, one being checked, one queued.
        pool = BufferPool(self.chunk_bytes, 5)
        rows = pool.cap // 160 + 16
        for name in self.files:
            pending = []
            exp_values = self.ctx.expected_values()
            expected = L.expected(exp_values)
            self._line = 1
            reader = GzipLines(os.path.join(self.run_dir, name), pool=pool, auto_release=False)
            for chunk in _chunks(reader):
                pending.append((self.pool.submit(parse_fast, L, chunk, expected, rows), chunk))
                if len(pending) >= 2:
                    fut, chunk = pending.pop(0)
                    yield self._finish(name, fut, chunk, exp_values)
                    pool.put(chunk)
            while pending:
                fut, chunk = pending.pop(0)
                yield self._finish(name, fut, chunk, exp_values)
                pool.put(chunk)
            nlines = self._line - 1
            self.file_info.append((nlines, reader.bytes_read, reader.sha256))
            self.lines += nlines
            if reader.problem is not None:
                code, msg = reader.problem
                if code == "RECORD_JSON":
                    self.rep.error(code, f"{name}:{nlines}", msg)
                elif code == "FILE_UNREADABLE":
                    self.rep.error(code, name, msg)
                else:
                    self.rep.error(code, name, f"{msg}; {nlines} complete lines before it")
                self.damaged = True
                if self.parquet is not None and code != "RECORD_JSON":
                    self.parquet.disable(f"not compared beyond {name} line {nlines}: "
                                         "the JSON Lines are damaged")

    def _finish(self, name, fut, chunk, exp_values):
        batch = fut.result()
        if batch is None:
            batch, problems = parse_slow(self.layout, chunk, self._line, exp_values)
            for line, code, msg in problems:
                self.rep.rows(code, name, line, msg, 1, msg.split(" ")[0])
            if problems:
                self.damaged = True
        else:
            batch.first = self._line
        self._line += batch.nlines
        if self.parquet is not None:
            self.parquet.compare(batch, name)
        return name, batch


def _flag(rep: _Report, code: str, fname: str, batch, mask: np.ndarray, msg, check: str = ""):
    if mask.any():
        i = int(np.argmax(mask))
        rep.rows(code, fname, int(batch.lines[i]), msg(i), int(mask.sum()), check)


def _check_common(rep, ctx, fname, b):
    c = b.cols
    _flag(rep, "SCHEMA_VERSION", fname, b, ~c["schema_version"],
          lambda i: f"schema_version {b.string_at('schema_version', i)!r}, expected '0.1'")
    if ctx.run_id is not None:
        _flag(rep, "RUN_ID_MISMATCH", fname, b, ~c["run_id"],
              lambda i: f"run_id {b.string_at('run_id', i)!r}, run.json has {ctx.run_id!r}")
    _flag(rep, "EPISODE_ID", fname, b, c["episode_id"] < 0,
          lambda i: f"episode_id {b.string_at('episode_id', i)!r} is not of the form ep-NNNNNN")


def _check_positions(rep, ctx, fname, b, xs, ys, what):
    if ctx.grid is None:
        return
    W, H = ctx.grid
    _flag(rep, "POSITION_RANGE", fname, b, (xs < 0) | (xs >= W) | (ys < 0) | (ys >= H),
          lambda i: f"{what} ({xs[i]}, {ys[i]}) is outside the {W}x{H} grid")


def _check_steps(rep: _Report, ctx: _Ctx, fname: str, b):
    c = b.cols
    _check_common(rep, ctx, fname, b)
    ep = c["episode_id"]
    if ctx.base_seed is not None:
        want = ctx.base_seed + ep
        _flag(rep, "SEED_MISMATCH", fname, b, (ep >= 0) & (c["seed"] != want),
              lambda i: f"{_eid(ep[i])} step {c['step'][i]} has seed {c['seed'][i]}, expected "
                        f"base_seed + {ep[i]} = {want[i]}")
    x, y = c["agent_position.x"], c["agent_position.y"]
    dist, step = c["distance_to_goal"], c["step"]
    _check_positions(rep, ctx, fname, b, x, y, "agent_position")
    if ctx.goal is not None:
        dx, dy = x - ctx.goal[0], y - ctx.goal[1]
        want_d = np.sqrt((dx * dx + dy * dy).astype(np.float64))
        _flag(rep, "DISTANCE_MISMATCH", fname, b, want_d != dist,
              lambda i: f"distance_to_goal {_fmt(dist[i])} at ({x[i]}, {y[i]}), expected "
                        f"{_fmt(want_d[i])} from the goal {ctx.goal}")
    else:
        _flag(rep, "RECORD_VALUE", fname, b, dist < 0,
              lambda i: f"distance_to_goal {_fmt(dist[i])} is negative", "dist")
    term, trunc = c["terminated"], c["truncated"]
    if ctx.radius is not None:
        reached = dist <= ctx.radius
        _flag(rep, "FLAG_MISMATCH", fname, b, term != reached,
              lambda i: f"terminated {_fmt(term[i])} with distance_to_goal {_fmt(dist[i])} and "
                        f"goal_radius {_fmt(ctx.radius)}", "term")
        if ctx.reward_type is not None:
            miss = 0.0 if ctx.reward_type == "sparse" else records.STEP_PENALTY
            want_r = np.where(reached, 1.0, miss)
            r = c["reward"]
            _flag(rep, "REWARD_MISMATCH", fname, b, r != want_r,
                  lambda i: f"reward {_fmt(r[i])} with distance_to_goal {_fmt(dist[i])}, expected "
                            f"{_fmt(want_r[i])} ({ctx.reward_type})")
    if ctx.max_steps is not None:
        _flag(rep, "FLAG_MISMATCH", fname, b, trunc != (step >= ctx.max_steps),
              lambda i: f"truncated {_fmt(trunc[i])} at step {step[i]} with max_steps "
                        f"{ctx.max_steps}", "trunc")
    a = c["action"]
    hi = ctx.n_actions
    _flag(rep, "ACTION_RANGE", fname, b, (a < 0) | (a >= hi) if hi else a < 0,
          lambda i: f"action {a[i]} is outside " + (f"0..{hi - 1}" if hi else "the naturals"))
    off = c["observation_summary.offsets"]
    lens = np.diff(off)
    if ctx.obs_len is None and len(lens):
        ctx.obs_len = int(lens[0])
    if ctx.obs_len is not None:
        _flag(rep, "OBS_SHAPE", fname, b, lens != ctx.obs_len,
              lambda i: f"observation_summary has {lens[i]} values, expected {ctx.obs_len}")
    if ctx.obs_type in ("concentration", "antennae"):
        vals = c["observation_summary.values"]
        badv = (vals < 0) | (vals > 1)
        if badv.any():
            rows = np.searchsorted(off, np.flatnonzero(badv), "right") - 1
            m = np.zeros(b.n, bool)
            m[rows] = True
            _flag(rep, "OBS_VALUE", fname, b, m,
                  lambda i: f"observation_summary {_short(vals[off[i]:off[i + 1]])} outside [0, 1]")


def _check_episodes(rep: _Report, ctx: _Ctx, fname: str, b):
    c = b.cols
    _check_common(rep, ctx, fname, b)
    ts, dur, avg = c["total_steps"], c["duration_ms"], c["avg_step_time_ms"]
    _flag(rep, "RECORD_VALUE", fname, b, ts < 1, lambda i: f"total_steps {ts[i]} < 1", "steps")
    _flag(rep, "RECORD_VALUE", fname, b, (dur < 0) | (avg < 0),
          lambda i: f"duration_ms {_fmt(dur[i])} / avg_step_time_ms {_fmt(avg[i])} negative", "neg")
    with np.errstate(divide="ignore", invalid="ignore"):
        want = dur / np.maximum(ts, 1)
    _flag(rep, "RECORD_VALUE", fname, b, (ts >= 1) & (np.abs(avg - want) > 1e-9 * np.maximum(
        1.0, np.abs(want))), lambda i: f"avg_step_time_ms {_fmt(avg[i])} != duration_ms / "
                                       f"total_steps = {_fmt(want[i])}", "avg")
    fd = c["final_distance_to_goal"]
    _flag(rep, "RECORD_VALUE", fname, b, fd < 0,
          lambda i: f"final_distance_to_goal {_fmt(fd[i])} is negative", "fdist")
    _flag(rep, "RECORD_VALUE", fname, b, ~(c["terminated"] | c["truncated"]),
          lambda i: f"{_eid(c['episode_id'][i])} is neither terminated nor truncated", "unfinished")
    _check_positions(rep, ctx, fname, b, c["final_position.x"], c["final_position.y"],
                     "final_position")


class _StepState:
    """Sequence checks of the steps, with the state carried from batch to batch."""

    def __init__(self):
        self.st = np.array([-1, -1, 0, 0, 0, 0, 0, 0, 0, 0], np.int64)
        self.sf = np.zeros(2, np.float64)

    def run(self, b, rep: _Report, fname: str) -> dict:
        c = b.cols
        n = b.n + 1
        out = {"idx": np.empty(n, np.int64), "count": np.empty(n, np.int64),
               "rsum": np.empty(n, np.float64), "x": np.empty(n, np.int64),
               "y": np.empty(n, np.int64), "dist": np.empty(n, np.float64),
               "term": np.empty(n, np.int64), "trunc": np.empty(n, np.int64)}
        ev = np.empty((64, 4), np.int64)
        no, ne, ntot = _step_sequence(
            c["episode_id"], c["step"], c["reward"], c["terminated"], c["truncated"],
            c["agent_position.x"], c["agent_position.y"], c["distance_to_goal"], self.st, self.sf,
            out["idx"], out["count"], out["rsum"], out["x"], out["y"], out["dist"], out["term"],
            out["trunc"], ev)
        lines = b.lines
        for code, row, a, bb in ev[:ne]:
            where = f"{fname}:{lines[row]}"
            e = c["episode_id"][row]
            if code == EV_EP_GAP:
                rep.error("EPISODE_MISSING", where, f"no steps for {_eids(a, bb)} "
                          f"(next is {_eid(e)})")
            elif code == EV_ORDER:
                rep.error("EPISODE_ORDER", where, f"{_eid(a)} again, after other records" if a == bb
                          else f"{_eid(a)} after {_eid(bb)}")
            elif code == EV_FIRST:
                rep.error("STEP_SEQUENCE", where, f"{_eid(e)} starts at step {a}, expected 1")
            elif code == EV_DUP:
                rep.error("DUPLICATE", where, f"{_eid(e)} step {a} repeated")
            elif code == EV_GAP:
                missing = f"step {a + 1}" if bb - a == 2 else f"steps {a + 1}..{bb - 1}"
                rep.error("STEP_GAP", where, f"{_eid(e)} step {bb} follows step {a} "
                          f"({missing} missing)")
            elif code == EV_BACK:
                rep.error("STEP_SEQUENCE", where, f"{_eid(e)} step {bb} follows step {a}")
            elif code == EV_AFTER_END:
                rep.error("STEP_AFTER_END", where, f"{_eid(e)} step {bb} follows step {a}, which "
                          "ended the episode")
        rep.suppressed += ntot - ne
        return {k: v[:no] for k, v in out.items()}

    def close(self) -> dict:
        """The summary of the episode still open at the end of the steps."""
        st, sf = self.st, self.sf
        one = {"idx": st[0], "count": st[3], "rsum": sf[0], "x": st[6], "y": st[7],
               "dist": sf[1], "term": st[8], "trunc": st[9]}
        keep = st[0] >= 0 and st[5] == 1 and st[3] > 0
        st[0] = -1
        return {k: np.array([v] if keep else [], dtype=np.asarray(v).dtype)
                for k, v in one.items()}


class _EpisodeState:
    """Order checks of the episode records; returns the rows to match with the steps."""

    def __init__(self):
        self.max_ep = -1

    def run(self, b, rep: _Report, fname: str) -> dict:
        c = b.cols
        ep = c["episode_id"]
        valid = ep >= 0
        e = np.where(valid, ep, -1)
        prior = np.maximum.accumulate(np.concatenate([[self.max_ep], e]))[:-1]
        if len(e):
            self.max_ep = max(self.max_ep, int(e.max()))
        dup = valid & (e == prior)
        order = valid & (e < prior)
        gap = valid & (e > prior + 1)
        events = np.flatnonzero(dup | order | gap)
        lines = b.lines
        for i in events[: rep.max_errors + 1]:
            where = f"{fname}:{lines[i]}"
            if dup[i]:
                rep.error("DUPLICATE", where, f"episode record {_eid(e[i])} repeated")
            elif order[i]:
                rep.error("EPISODE_ORDER", where, f"{_eid(e[i])} after {_eid(prior[i])}")
            else:
                rep.error("EPISODE_MISSING", where,
                          f"no episode record for {_eids(prior[i] + 1, e[i] - 1)}")
        rep.suppressed += max(0, len(events) - rep.max_errors - 1)
        keep = valid & (e > prior)
        return {"idx": e[keep], "total_steps": c["total_steps"][keep],
                "total_reward": c["total_reward"][keep], "x": c["final_position.x"][keep],
                "y": c["final_position.y"][keep], "dist": c["final_distance_to_goal"][keep],
                "term": c["terminated"][keep].astype(np.int64),
                "trunc": c["truncated"][keep].astype(np.int64),
                "line": lines[keep], "file": np.full(int(keep.sum()), fname, dtype=object)}


# ------------------------------------------------------------------------------------------------
# Files


def _check_files(run_dir, files, ctx: _Ctx, rep: _Report):
    for base, name in files.missing_parts:
        rep.error("PART_MISSING", name, f"rotated part of {base} missing (numbering has a gap)")
    for base in (_STEPS, _EPISODES):
        if not files.jsonl[base]:
            rep.error("FILE_MISSING", records.part_name(base, 0), "no such file")
        elif files.jsonl[base][0] != records.part_name(base, 0):
            rep.error("FILE_MISSING", records.part_name(base, 0),
                      f"no such file, but {files.jsonl[base][0]} exists")
    for name in files.stray:
        path = os.path.join(run_dir, name)
        what = f"{os.path.getsize(path)} bytes"
        if name.endswith(".gz") and os.path.getsize(path) <= (64 << 20):
            n = sum(count_lines(chunk) for chunk in GzipLines(path))
            what = f"{n} lines"
        base = _STEPS if name.startswith(_STEPS + ".") else _EPISODES
        m = re.fullmatch(r"(steps|episodes)\.jsonl\.part(\d+)\.gz", name)
        hint = (f"; the reference tool's naming, the part is "
                f"{records.part_name(base, int(m.group(2)))}" if m and int(m.group(2)) else "")
        rep.error("STRAY_PART", name,
                  f"looks like part of {base} but is not named {base}.jsonl.gz or "
                  f"{base}.partNNNN.jsonl.gz, so no reader loads it ({what} not read){hint}")
    for name in files.other:
        if ctx.files and name in ctx.files:
            continue
        rep.warn("UNKNOWN_FILE", name, "not part of the run format")
    if ctx.files is not None:
        present = set(os.listdir(run_dir))
        for name in ctx.files:
            if name not in present:
                is_part = bool(re.match(r"(steps|episodes)\.part\d+\.jsonl\.gz\Z", name))
                rep.error("PART_MISSING" if is_part else "FILE_MISSING", name,
                          "listed in extra.files but missing")
        artifacts = [n for fs in files.jsonl.values() for n in fs] + \
            [p for p in files.parquet.values() if p]
        for name in artifacts:
            if name not in ctx.files:
                rep.error("FILE_UNLISTED", name, "not listed in extra.files")


def _check_manifest_entry(run_dir, name, ctx: _Ctx, rep: _Report, rows: int | None, sha=None,
                          size=None):
    if ctx.files is None or name not in ctx.files:
        return
    ent = ctx.files[name]
    path = os.path.join(run_dir, name)
    if size is None:
        size = os.path.getsize(path)
    if size != ent["bytes"]:
        rep.error("SIZE_MISMATCH", name, f"{size} bytes, extra.files says {ent['bytes']}")
    if sha is None:
        sha = sha256_file(path)
    if sha != ent["sha256"]:
        rep.error("SHA256_MISMATCH", name, f"sha256 {sha[:16]}…, extra.files says "
                  f"{str(ent['sha256'])[:16]}…")
    if rows is not None and rows != ent["rows"]:
        rep.error("ROWS_MISMATCH", name, f"{rows} rows, extra.files says {ent['rows']}")


def _first_record(path):
    """run_id, seed and episode index of the first step record (when run.json gives none)."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            rec = json.loads(f.readline())
        return rec.get("run_id"), rec.get("seed"), episode_index(rec.get("episode_id"))
    except (OSError, ValueError, AttributeError, EOFError):
        return None, None, -1


def _fill_from_records(run_dir, files, ctx: _Ctx, rep: _Report):
    if (ctx.run_id is not None and ctx.base_seed is not None) or not files.jsonl[_STEPS]:
        return
    rid, seed, idx = _first_record(os.path.join(run_dir, files.jsonl[_STEPS][0]))
    if ctx.run_id is None and isinstance(rid, str):
        ctx.run_id = rid
        rep.warn("UNCHECKED", "run.json", f"no usable run_id: records are checked against the "
                 f"first record's ({rid!r})")
    if ctx.base_seed is None and type(seed) is int and idx >= 0:
        ctx.base_seed = seed - idx
        rep.warn("UNCHECKED", "run.json", "no usable base_seed: seeds are checked against the "
                 "first record's")


def _check_records(steps: _Stream, episodes: _Stream, ctx: _Ctx, rep: _Report):
    """Stream the steps, pulling episode records along as far as the steps have got."""
    ep_iter = episodes.batches()
    ep_done = False
    sstate, estate = _StepState(), _EpisodeState()
    joiner = _Joiner(rep)

    def pull_episodes(everything: bool):
        nonlocal ep_done
        while not ep_done and (everything or joiner.wants_episodes()):
            try:
                fname, eb = next(ep_iter)
            except StopIteration:
                ep_done = True
                return
            _check_episodes(rep, ctx, fname, eb)
            joiner.E.append(estate.run(eb, rep, fname))

    for fname, sb in steps.batches():
        _check_steps(rep, ctx, fname, sb)
        joiner.S.append(sstate.run(sb, rep, fname))
        pull_episodes(False)
        joiner.match(final=False)
    joiner.S.append(sstate.close())
    pull_episodes(True)
    joiner.match(final=True)

    n_ep = ctx.n_episodes
    for stream, label, last in ((steps, "steps", int(sstate.st[1])),
                                (episodes, "episode records", estate.max_ep)):
        if n_ep is None or not stream.files:
            continue
        if last + 1 < n_ep and not stream.damaged:
            rep.error("EPISODE_MISSING", stream.files[-1], f"no {label} for "
                      f"{_eids(last + 1, n_ep - 1)} (run.json lists {n_ep} episodes)")
        elif last + 1 > n_ep:
            rep.error("COUNTS_MISMATCH", stream.files[-1],
                      f"{label} go up to {_eid(last)}, run.json lists {n_ep} episodes")
    if ctx.counts is not None:
        for key, stream in (("steps", steps), ("episodes", episodes)):
            if ctx.counts[key] != stream.lines:
                rep.error("COUNTS_MISMATCH", "run.json", f"extra.counts.{key} is "
                          f"{ctx.counts[key]}, the files hold {stream.lines} records")


# ------------------------------------------------------------------------------------------------
# Entry points


def validate_run_artifacts(run_dir, *, check_parquet: bool = True, max_errors: int = 100,
                           chunk_bytes: int = 4 << 20) -> dict:
    """Validate a run directory (ours or the reference tool's); see the module docstring.

    Returns ``{"run_dir", "ok", "kind", "errors", "warnings", "errors_suppressed", "counts":
    {"steps", "episodes"}, "files_checked", "unchecked"}``; ``ok`` is true when there are no
    errors; ``unchecked`` names what could not be checked (e.g. checksums of a run whose run.json
    has no ``extra.files``), also shown in the report's summary line.
    ``chunk_bytes`` is the JSON Lines text parsed per batch (memory vs. per-batch overhead).
    """
    run_dir = os.fspath(run_dir)
    rep, ctx, checked = _Report(max_errors), _Ctx(), []
    counts = {"steps": 0, "episodes": 0}
    if not os.path.isdir(run_dir):
        rep.error("RUN_DIR_MISSING", run_dir, "not a directory")
    elif not os.path.exists(os.path.join(run_dir, "run.json")):
        rep.error("RUN_JSON_MISSING", "run.json", "no run.json: the run is incomplete or this "
                  "is not a run directory")
    else:
        checked.append("run.json")
        meta, err = _load_run_json(os.path.join(run_dir, "run.json"))
        if err is not None:
            rep.error("RUN_JSON_INVALID", "run.json", f"not valid JSON: {err}")
        elif not isinstance(meta, dict):
            rep.error("RUN_JSON_INVALID", "run.json", f"not a JSON object ({type(meta).__name__})")
        else:
            ctx.meta_ok = True
            _check_run_json(meta, ctx, rep)
    if os.path.isdir(run_dir):
        counts = _check_run_dir(run_dir, ctx, rep, checked, check_parquet, chunk_bytes)
    unchecked = []
    if ctx.meta_ok and not ctx.ours:
        unchecked.append("completeness, counts, sizes and checksums (run.json has no extra.status/counts/files)")
    if any(w.startswith("UNCHECKED") for w in rep.warnings):
        unchecked.append("what the UNCHECKED warnings name")
    return {"run_dir": run_dir, "ok": not rep.entries and not rep.suppressed, "kind": ctx.kind,
            "errors": rep.error_strings(), "warnings": rep.warnings,
            "errors_suppressed": rep.suppressed, "counts": counts, "files_checked": checked,
            "unchecked": unchecked}


def _check_run_dir(run_dir, ctx, rep, checked, check_parquet, chunk_bytes) -> dict:
    files = list_run_files(run_dir)
    _check_files(run_dir, files, ctx, rep)
    _fill_from_records(run_dir, files, ctx, rep)
    pool = ThreadPoolExecutor(max_workers=2)  # parsing; decompression has its own thread
    sides = {}
    try:
        for base, layout in ((_STEPS, STEP_LAYOUT), (_EPISODES, EPISODE_LAYOUT)):
            name = files.parquet[base]
            if name and check_parquet:
                sides[base] = _ParquetSide(os.path.join(run_dir, name), layout, ctx, rep)
            elif name:
                rep.warn("PARQUET_SKIPPED", name, "not compared (check_parquet=False)")
        streams = {base: _Stream(run_dir, files.jsonl[base], layout, ctx, rep, sides.get(base),
                                 pool, chunk_bytes)
                   for base, layout in ((_STEPS, STEP_LAYOUT), (_EPISODES, EPISODE_LAYOUT))}
        _check_records(streams[_STEPS], streams[_EPISODES], ctx, rep)
        for stream in streams.values():
            for name, (nlines, size, sha) in zip(stream.files, stream.file_info):
                checked.append(name)
                _check_manifest_entry(run_dir, name, ctx, rep, nlines, sha, size)
        for base, stream in streams.items():
            name, side = files.parquet[base], sides.get(base)
            if side is not None:
                side.finish(stream.lines)
            if name:
                checked.append(name)
                rows = side.rows if side is not None else None
                if rows is None:
                    try:
                        rows = pq.ParquetFile(os.path.join(run_dir, name)).metadata.num_rows
                    except Exception:  # noqa: BLE001 - reported by the Parquet side
                        pass
                _check_manifest_entry(run_dir, name, ctx, rep, rows)
        for name in sorted(set(ctx.files or ()) - set(checked)):  # other files listed
            if os.path.isfile(os.path.join(run_dir, name)):
                checked.append(name)
                _check_manifest_entry(run_dir, name, ctx, rep, None)
        return {"steps": streams[_STEPS].lines, "episodes": streams[_EPISODES].lines}
    finally:
        for side in sides.values():
            side.close()
        pool.shutdown(wait=True)


def format_report(res: dict) -> str:
    """A readable multi-line report of ``validate_run_artifacts``' result."""
    lines = [f"run: {res['run_dir']}",
             f"kind: {res['kind']}   steps: {res['counts']['steps']}   "
             f"episodes: {res['counts']['episodes']}",
             f"files checked: {', '.join(res['files_checked']) or '-'}"]
    n = len(res["errors"]) - (1 if res["errors_suppressed"] else 0) + res["errors_suppressed"]
    nw = len(res["warnings"])
    if res["ok"]:
        not_checked = f"; NOT CHECKED: {'; '.join(res['unchecked'])}" if res.get("unchecked") else ""
        lines.append(f"OK ({nw} warning{'s' if nw != 1 else ''}{not_checked})")
    else:
        lines.append(f"NOT OK: {n} error{'s' if n != 1 else ''}")
    if res["errors"]:
        lines.append("errors:")
        lines += [f"  {e}" for e in res["errors"]]
    if res["warnings"]:
        lines.append("warnings:")
        lines += [f"  {w}" for w in res["warnings"]]
    return "\n".join(lines)
