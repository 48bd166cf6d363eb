"""What a report needs from a run directory, read without holding the run in memory.

Episode outcomes come from the episode records (four columns); trajectories only for a sample of
episodes chosen deterministically by episode seed; the field from the run's environment
parameters (a movie's first frame). Parquet is read when present (only the needed columns and, for
steps, only the row groups of the sampled episodes), else the JSON Lines in one streaming pass.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from plume_capture import spec
from plume_capture.io.jsonl_decode import (EPISODE_LAYOUT, STEP_LAYOUT, GzipLines, iter_jsonl_batches, parse_chunk,
                                           strict_loads)
from plume_capture.io.parquet import read_parquet
from plume_capture.io.rundir import list_run_files
from plume_capture.kernels.jsonl_scan import count_lines
from plume_capture.report.stats import wilson_interval
from plume_capture.readback.replay import run_env_params
from plume_capture.sim.params import DEFAULT_GOAL_RADIUS, EnvParams
from plume_capture.errors import BadInput

DEFAULT_SAMPLE = 300
STEP_CHUNK_BYTES = 4 << 20  # decompressed bytes per chunk of the JSON Lines pass
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


class ReportError(BadInput):
    """Bad input for a report (the CLI prints it as one line and exits 2)."""


@dataclass(frozen=True)
class Trajectory:
    """Positions of one sampled episode, in step order (step 1 first)."""
    episode: int  # 0-based index
    seed: int
    x: np.ndarray
    y: np.ndarray
    reached_goal: bool


@dataclass
class RunSummary:
    """One run as the report shows it. Invariant: ``len(terminated) == n_episodes`` and every
    trajectory's episode is one of the run's episodes."""
    run_dir: str
    meta: dict
    n_episodes: int
    n_steps: int
    terminated: np.ndarray  # bool per episode (reached the goal)
    total_steps: np.ndarray
    total_reward: np.ndarray
    trajectories: list
    grid: tuple  # (W, H)
    goal: tuple
    goal_radius: float
    field: np.ndarray | None  # (H, W) or None when it cannot be rebuilt
    field_note: str = ""
    sources: dict = field(default_factory=dict)

    @property
    def successes(self) -> int:
        return int(self.terminated.sum())

    @property
    def success_rate(self) -> float:
        return self.successes / self.n_episodes if self.n_episodes else float("nan")

    @property
    def success_interval(self) -> tuple[float, float]:
        return wilson_interval(self.successes, self.n_episodes)

    @property
    def mean_length(self) -> float:
        return float(self.total_steps.mean()) if self.n_episodes else float("nan")

    @property
    def steps_per_s(self) -> float | None:
        v = ((self.meta.get("extra") or {}).get("timing") or {}).get("steps_per_s")
        return float(v) if isinstance(v, (int, float)) else None

    @property
    def label(self) -> str:
        return f"{self.meta.get('experiment', '?')}/{self.meta.get('run_id', os.path.basename(self.run_dir))}"

    def settings(self) -> dict:
        """Flat ``key: value`` view of the run's configuration (for the sweep table)."""
        extra = self.meta.get("extra") or {}
        cfg = extra.get("config")
        if isinstance(cfg, dict):
            cfg = {k: v for k, v in cfg.items() if k not in ("engine", "output", "experiment")}
        else:
            cfg = {"env_config": self.meta.get("env_config") or {}}
        out = _flatten(cfg)
        out["episodes"] = self.n_episodes
        out["seed"] = self.meta.get("base_seed")
        return out

    def provenance(self) -> dict:
        m, extra = self.meta, self.meta.get("extra") or {}
        env = extra.get("env") or {}
        seeds = m.get("episode_seeds") or []
        return {
            "run id": m.get("run_id"), "experiment": m.get("experiment"),
            "config hash": m.get("config_hash"), "base seed": m.get("base_seed"),
            "episode seeds": (f"{seeds[0]}..{seeds[-1]}" if seeds else "-"),
            "policy": (extra.get("policy") or {}).get("name", "(not recorded)"),
            "action": env.get("action_type", "?"), "observation": env.get("observation_type", "?"),
            "reward": env.get("reward_type", "?"),
            "episodes": self.n_episodes, "steps": self.n_steps,
            "grid": f"{self.grid[0]}x{self.grid[1]}",
        }


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


# ------------------------------------------------------------------------------------------------
# Which directories


def _read_meta(run_dir: str) -> dict | None:
    path = os.path.join(run_dir, "run.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as f:
            meta = strict_loads(f.read())
    except ValueError as e:
        raise ReportError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise ReportError(f"{path}: not a JSON object")
    return meta


def expand_run_dirs(paths) -> list[str]:
    """Run directories named by ``paths``: a run directory itself, or an experiment (sweep)
    directory expanding to the run directories it holds, in name order."""
    out = []
    for p in paths:
        p = os.fspath(p)
        if not os.path.isdir(p):
            raise ReportError(f"{p}: no such directory")
        if os.path.isfile(os.path.join(p, "run.json")):
            out.append(p)
            continue
        names = sorted(os.listdir(p))
        runs = [os.path.join(p, n) for n in names
                if os.path.isfile(os.path.join(p, n, "run.json"))]
        if runs:
            out.extend(runs)
        elif any(n.startswith((spec.STEPS_BASENAME + ".", spec.EPISODES_BASENAME + "."))
                 for n in names):
            raise ReportError(f"{p}: incomplete run (no run.json; an interrupted capture can be "
                              "finished with plume-nav-capture --resume)")
        else:
            raise ReportError(f"{p}: not a run directory (no run.json) nor a directory of runs")
    if not out:
        raise ReportError("no run directory given")
    return out


# ------------------------------------------------------------------------------------------------
# Episodes


def _episode_index(ids: pa.Array) -> np.ndarray:
    """0-based index from ``ep-NNNNNN`` ids."""
    digits = pc.utf8_slice_codeunits(ids, 3)
    return pc.cast(digits, pa.int64()).to_numpy(zero_copy_only=False) - 1


def _read_episodes(run_dir, files):
    cols = ["episode_id", "terminated", "total_steps", "total_reward"]
    pq_names = files.parquet[spec.EPISODES_BASENAME]
    if pq_names:
        pq_name = pq_names[0].split("/")[0]
        t = read_parquet(run_dir, pq_names, columns=cols)
        idx = _episode_index(t.column("episode_id").combine_chunks())
        return (idx, t.column("terminated").to_numpy().astype(bool),
                t.column("total_steps").to_numpy(), t.column("total_reward").to_numpy(),
                pq_name)
    names = files.jsonl[spec.EPISODES_BASENAME]
    if not names:
        raise ReportError(f"{run_dir}: incomplete run (no {spec.part_name(spec.EPISODES_BASENAME, 0)})")
    parts = {c: [] for c in cols}
    for name in names:
        for batch, problems in iter_jsonl_batches(os.path.join(run_dir, name), EPISODE_LAYOUT):
            if problems:
                line, code, msg = problems[0]
                raise ReportError(f"{run_dir}/{name}:{line}: {code}: {msg} (plume-nav-validate "
                                  "gives a full report)")
            for c in cols:
                parts[c].append(np.array(batch.cols[c], copy=True))
    cat = {c: (np.concatenate(v) if v else np.zeros(0)) for c, v in parts.items()}
    return (cat["episode_id"].astype(np.int64), cat["terminated"].astype(bool),
            cat["total_steps"].astype(np.int64), cat["total_reward"].astype(np.float64),
            ",".join(names))


# ------------------------------------------------------------------------------------------------
# Trajectory sample


def _mix(seeds: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a fixed, well-spread hash of each seed."""
    with np.errstate(over="ignore"):
        z = seeds.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def episode_seeds(meta: dict, n: int) -> np.ndarray:
    seeds = meta.get("episode_seeds")
    if isinstance(seeds, list) and len(seeds) >= n:
        return np.asarray(seeds[:n], dtype=np.int64)
    return int(meta.get("base_seed") or 0) + np.arange(n, dtype=np.int64)


def sample_episodes(seeds: np.ndarray, k: int) -> np.ndarray:
    """0-based indices of the ``k`` episodes whose seeds hash smallest (sorted)."""
    if k >= len(seeds):
        return np.arange(len(seeds), dtype=np.int64)
    h = _mix(seeds)
    return np.sort(np.argpartition(h, k - 1)[:k]).astype(np.int64)


def _read_sample_steps(run_dir, files, wanted: np.ndarray, total_steps: np.ndarray):
    """(episode index, step, x, y, source) of the steps of the ``wanted`` episodes only.

    JSON Lines: the steps are expected in episode order (as the engine writes them), so the
    episodes' lengths give the lines to parse and every other chunk is only decompressed; when
    the collected counts disagree with the lengths, one full pass reads them instead."""
    ends = np.cumsum(total_steps)
    line_ranges = np.stack([ends[wanted] - total_steps[wanted], ends[wanted]], axis=1)
    expected_counts = total_steps[wanted]
    pq_names = files.parquet[spec.STEPS_BASENAME]
    if pq_names:
        pq_name = pq_names[0].split("/")[0]
        ids = [spec.episode_id(int(i)) for i in wanted]
        t = read_parquet(run_dir, pq_names, columns=["episode_id", "step", "agent_position"],
                         filters=[("episode_id", "in", ids)])
        pos = t.column("agent_position").combine_chunks()
        return (_episode_index(t.column("episode_id").combine_chunks()),
                t.column("step").to_numpy(), pc.struct_field(pos, "x").to_numpy(),
                pc.struct_field(pos, "y").to_numpy(), pq_name)
    names = files.jsonl[spec.STEPS_BASENAME]
    if not names:
        raise ReportError(f"{run_dir}: incomplete run (no {spec.part_name(spec.STEPS_BASENAME, 0)})")
    got = _scan_steps(run_dir, names, wanted, line_ranges)
    counts = np.bincount(np.searchsorted(wanted, got[0]), minlength=len(wanted))
    if np.array_equal(counts, expected_counts):
        return (*got, ",".join(names))
    # Steps not in episode order: the chunks that were skipped may hold some; read them all.
    return (*_scan_steps(run_dir, names, wanted, None), ",".join(names))


def _scan_steps(run_dir, names, wanted, line_ranges):
    """Stream the step files, parsing only chunks that overlap ``line_ranges`` (global 0-based
    [start, end) line numbers of the wanted episodes, sorted; None = parse every chunk)."""
    out = {k: [] for k in ("e", "s", "x", "y")}
    expected = STEP_LAYOUT.expected(None)
    line = 0  # global line number of the chunk's first line
    for name in names:
        reader = GzipLines(os.path.join(run_dir, name), STEP_CHUNK_BYTES)
        first = 1
        for chunk in reader:
            nl = int(count_lines(chunk))
            if line_ranges is not None:
                k = np.searchsorted(line_ranges[:, 1], line, side="right")
                if k >= len(line_ranges) or line_ranges[k, 0] >= line + nl:
                    line, first = line + nl, first + nl
                    continue
            batch, problems = parse_chunk(STEP_LAYOUT, chunk, first, expected, None)
            if problems:
                ln, code, msg = problems[0]
                raise ReportError(f"{run_dir}/{name}:{ln}: {code}: {msg} (plume-nav-validate "
                                  "gives a full report)")
            line, first = line + nl, first + batch.nlines
            ep = batch.cols["episode_id"]
            m = np.isin(ep, wanted)
            if m.any():
                out["e"].append(ep[m].copy())
                out["s"].append(batch.cols["step"][m].copy())
                out["x"].append(batch.cols["agent_position.x"][m].copy())
                out["y"].append(batch.cols["agent_position.y"][m].copy())
        if reader.problem is not None:
            code, msg = reader.problem
            raise ReportError(f"{run_dir}/{name}: {code}: {msg} (plume-nav-validate gives a "
                              "full report)")
    return tuple(np.concatenate(out[k]) if out[k] else np.zeros(0, np.int64) for k in "esxy")


# ------------------------------------------------------------------------------------------------
# Field


def _env_params(meta: dict) -> EnvParams:
    cfg = (meta.get("extra") or {}).get("config")
    if isinstance(cfg, dict):
        return EnvParams.from_config(cfg)
    return run_env_params(meta)  # a run of the reference tool: its env_config


def _field(meta: dict):
    """-> (grid, goal, radius, field or None, note)."""
    params = _env_params(meta)
    try:
        phys = params.build()
    except Exception as e:  # noqa: BLE001 - e.g. a movie file no longer where the run read it
        env = meta.get("env_config") or {}
        grid = tuple(env.get("grid_size") or params.grid_size)
        goal = tuple(env.get("source_location") or params.goal_location or (0, 0))
        radius = float(env.get("goal_radius") or params.goal_radius or DEFAULT_GOAL_RADIUS)
        return grid, goal, radius, None, f"field not drawn: {str(e).splitlines()[0]}"
    p = phys.params
    if p.plume == "puff":
        from plume_capture.sim.puff import mean_field

        seed = int(meta.get("base_seed") or 0)
        f, stride, every = mean_field(phys, seed)
        note = (f"puff plume: mean of episode 1's plume (seed {seed}) over 20 frames, one every {every} steps"
                + (f", every {stride}th cell" if stride > 1 else ""))
        return tuple(p.grid_size), tuple(p.goal_location), float(p.goal_radius), f, note
    f = np.asarray(phys.field)
    note = ""
    if f.ndim == 3:  # (frames, H, W); a static field is one frame
        f, note = f[0], ("movie plume: frame 0 shown" if p.plume == "movie" else "")
    return tuple(p.grid_size), tuple(p.goal_location), float(p.goal_radius), f, note


# ------------------------------------------------------------------------------------------------


def summarize_run(run_dir, sample: int = DEFAULT_SAMPLE) -> RunSummary:
    """Read one run directory into a RunSummary; raises ReportError for bad input."""
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise ReportError(f"{run_dir}: no such directory")
    meta = _read_meta(run_dir)
    if meta is None:
        raise ReportError(f"{run_dir}: incomplete run (no run.json)")
    status = (meta.get("extra") or {}).get("status")
    if status not in (None, "complete"):
        raise ReportError(f"{run_dir}: incomplete run (run.json status {status!r})")
    files = list_run_files(run_dir)
    if files.missing_parts:
        raise ReportError(f"{run_dir}: incomplete run (missing {files.missing_parts[0][1]})")
    idx, term, tsteps, trew, ep_src = _read_episodes(run_dir, files)
    order = np.argsort(idx, kind="stable")
    idx, term, tsteps, trew = idx[order], term[order], tsteps[order], trew[order]
    n = len(idx)
    if n == 0:
        raise ReportError(f"{run_dir}: the run has no episode records")
    if idx[0] != 0 or idx[-1] != n - 1 or np.any(np.diff(idx) != 1):
        raise ReportError(f"{run_dir}: episode ids are not ep-000001..ep-{n:06d} "
                          "(run plume-nav-validate)")
    seeds = episode_seeds(meta, n)
    wanted = sample_episodes(seeds, sample)
    e, s, x, y, st_src = _read_sample_steps(run_dir, files, wanted, tsteps)
    o = np.lexsort((s, e))
    e, x, y = e[o], x[o], y[o]
    cuts = np.searchsorted(e, wanted, side="left"), np.searchsorted(e, wanted, side="right")
    trajs = [Trajectory(int(i), int(seeds[i]), x[a:b], y[a:b], bool(term[i]))
             for i, a, b in zip(wanted, *cuts) if b > a]
    grid, goal, radius, fld, note = _field(meta)
    return RunSummary(run_dir, meta, n, int(tsteps.sum()), term, tsteps, trew, trajs, grid, goal,
                      radius, fld, note, {"episodes": ep_src, "steps": st_src})
