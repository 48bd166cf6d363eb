"""Replay: re-simulate recorded episodes from ``run.json`` and compare every recorded step.

Runs written by plume-capture are re-run with the capture kernel and policy (``extra.env``,
``extra.policy``, seeds), so every field must agree, actions included. Runs of the reference tool
(unseeded random actions) are replayed by driving ``PlumeNavEnv`` with the recorded actions.
Wall-clock fields (``ts``, ``run_id``) are not compared.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from plume_capture.sim.params import EnvParams, PolicyParams
from plume_capture.io.jsonl_decode import STEP_LAYOUT, iter_jsonl_batches
from plume_capture.io.rundir import list_run_files
from plume_capture.spec import STEPS_BASENAME, episode_id

COMPARED = ("action", "agent_position", "distance_to_goal", "observation_summary", "reward", "terminated",
            "truncated", "step", "seed", "episode_id")


CHUNK_ROWS = 1 << 18  # recorded steps compared per re-simulation call (whole episodes)


def _iter_chunks(run_dir: Path):
    """Yield Arrow tables of the recorded steps in file order, each holding whole episodes (one
    episode may exceed ``CHUNK_ROWS``), read through the run-format decoder."""
    import pyarrow as pa

    pending, rows = [], 0
    for name in list_run_files(run_dir).jsonl[STEPS_BASENAME]:
        for batch, problems in iter_jsonl_batches(run_dir / name, STEP_LAYOUT):
            if problems:
                line, code, msg = problems[0]
                raise ValueError(f"{name}:{line}: {code}: {msg} (run plume-nav-validate for a full report)")
            t = batch.to_arrow()
            pending.append(t if isinstance(t, pa.Table) else pa.Table.from_batches([t]))
            rows += t.num_rows
            if rows >= CHUNK_ROWS:
                table = pa.concat_tables(pending)
                ids = table.column("episode_id")
                last = ids[len(ids) - 1]
                cut = len(ids) - _run_length_at_end(ids, last)
                if cut > 0:
                    yield table.slice(0, cut)
                    pending, rows = [table.slice(cut)], table.num_rows - cut
    if rows:
        yield pa.concat_tables(pending)


def _run_length_at_end(ids, last) -> int:
    """How many rows at the end of ``ids`` equal ``last``."""
    import pyarrow.compute as pc

    eq = pc.equal(ids, last).to_numpy(zero_copy_only=False)
    import numpy as np

    diff = np.flatnonzero(~eq)
    return len(eq) if len(diff) == 0 else len(eq) - 1 - int(diff[-1])


def _episodes_of(table):
    """``(episode_id, [step records])`` of a chunk, in order."""
    current, steps = None, []
    for rec in table.to_pylist():
        if rec["episode_id"] != current:
            if current is not None:
                yield current, steps
            current, steps = rec["episode_id"], []
        steps.append(rec)
    if current is not None:
        yield current, steps


def _same_columns(expected, recorded) -> bool:
    """Whether two step tables agree in every compared column (Arrow equality, no Python objects)."""
    return expected.num_rows == recorded.num_rows and all(
        expected.column(k).equals(recorded.column(k)) for k in COMPARED)


def run_env_params(meta: dict) -> EnvParams:
    """The env that ran, from ``extra.env`` (ours) or ``env_config``/``extra.env`` (the reference's),
    in the config tree's shape so ``EnvParams.from_config`` does the mapping."""
    env = dict(meta.get("extra", {}).get("env") or {})
    ec = meta.get("env_config") or {}
    movie = env.pop("movie", None) or {}
    plume_movie = env.get("plume") == "movie"
    cfg_env = {k: v for k, v in env.items() if k in EnvParams.__dataclass_fields__ or k in (
        "grid_size", "goal_location", "start_location")}
    reference = {"grid_size": ec.get("grid_size"), "goal_location": ec.get("source_location"),
                 "goal_radius": ec.get("goal_radius"), "sigma": (ec.get("plume_params") or {}).get("sigma"),
                 "max_steps": ec.get("max_steps")}
    for key, value in reference.items():  # what neither states takes the default
        if cfg_env.get(key) is None and value is not None:
            cfg_env[key] = value
    mv = {"path": movie.get("path"), "source_location": env.get("goal_location") if plume_movie else None}
    if movie.get("step_policy") is not None:
        mv["step_policy"] = movie["step_policy"]
    return EnvParams.from_config({"env": cfg_env, "wind": env.get("wind") or {}, "movie": mv,
                                  "puff": env.get("puff") or {}})


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and (
            a == b or (math.isnan(a) and math.isnan(b)))
    return a == b


def _diff(expected: dict, actual: dict):
    for k in COMPARED:
        e, a = expected.get(k), actual.get(k)
        if isinstance(e, list) and isinstance(a, list):
            if len(e) != len(a) or not all(_same(x, y) for x, y in zip(e, a)):
                return k, e, a
        elif not _same(e, a):
            return k, e, a
    return None


def _simulate_policy(runner, index: int) -> list[dict]:
    """Our engine's records for episode ``index`` (0-based), built by the capture runner."""
    from plume_capture.sim.plan import Shard

    return runner.run_table(Shard(0, index, index + 1)).to_pylist()


def _simulate_actions(params: EnvParams, seed: int, actions: list[int]) -> list[dict]:
    from plume_capture.envs.plume_nav import PlumeNavEnv

    env = PlumeNavEnv(**{k: getattr(params, k) for k in params.__dataclass_fields__})
    env.reset(seed=seed)
    out = []
    for a in actions:
        obs, r, te, tr, info = env.step(a)
        x, y = info["agent_position"]
        out.append({"action": a, "agent_position": {"x": x, "y": y}, "distance_to_goal": info["distance_to_goal"],
                    "observation_summary": [float(v) for v in obs], "reward": r, "terminated": te,
                    "truncated": tr, "step": info["step_count"], "seed": seed})
        if te or tr:
            break
    return out


def replay_run(run_dir, *, episodes: int | None = None, progress=None) -> dict:
    """Re-simulate the first ``episodes`` recorded episodes (all when None) and compare each step;
    ``progress(steps)`` is called as steps are checked.

    Returns ``{"run_dir", "ok", "mode", "episodes_checked", "steps_checked", "divergence"}`` where
    ``divergence`` is None or ``{"episode", "step", "field", "expected", "actual"}`` (expected =
    re-simulated, actual = recorded) for the first difference.
    """
    run_dir = Path(run_dir)
    meta = json.loads((run_dir / "run.json").read_text())
    params = EnvParams.build(run_env_params(meta)).params
    base_seed = int(meta["base_seed"])
    pol = (meta.get("extra") or {}).get("policy")
    mode = "policy" if isinstance(pol, dict) and pol.get("name") else "actions"
    runner = None
    if mode == "policy":
        from plume_capture.sim.plan import Shard
        from plume_capture.sim.runner import Job, ShardRunner

        policy = PolicyParams.from_config({"policy": pol})
        runner = ShardRunner(Job(env=params, policy=policy, run_id="replay", base_seed=base_seed))
    result = {"run_dir": str(run_dir), "ok": True, "mode": mode, "episodes_checked": 0, "steps_checked": 0,
              "divergence": None}
    i = 0  # episodes checked so far = index of the next one
    for chunk in _iter_chunks(run_dir):
        if episodes is not None:
            chunk = _first_episodes(chunk, episodes - i)
            if chunk.num_rows == 0:
                break
        if mode == "policy":
            # Fast path: the chunk's episodes re-simulated in one call and compared column by column;
            # only a chunk that differs is walked step by step to locate the first divergence.
            n = _count_episodes(chunk)
            expected = runner.run_table(Shard(0, i, i + n))
            if _same_columns(expected, chunk):
                i += n
                result["episodes_checked"] = i
                result["steps_checked"] += chunk.num_rows
                if progress is not None:
                    progress(chunk.num_rows)
                continue
        for eid, recorded in _episodes_of(chunk):
            div, agreed = _check_episode(i, eid, recorded, mode, runner, params, base_seed)
            result["steps_checked"] += agreed
            if div is None or div["field"] != "episode_id":  # an unexpected episode is not checked
                i += 1
            result["episodes_checked"] = i
            if div is not None:
                result.update(ok=False, divergence=div)
                return result
        if progress is not None:
            progress(chunk.num_rows)
    return result


def _count_episodes(table) -> int:
    import pyarrow.compute as pc

    ids = table.column("episode_id")
    return 1 + int(pc.sum(pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1))).as_py() or 0)


def _first_episodes(table, n: int):
    """The rows of the first ``n`` episodes of ``table``."""
    import numpy as np

    if n <= 0:
        return table.slice(0, 0)
    ids = table.column("episode_id").to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    return table if len(starts) <= n else table.slice(0, int(starts[n]))


def _check_episode(i, eid, recorded, mode, runner, params, base_seed):
    """``(divergence or None, steps that agreed)`` of recorded episode ``i``, step by step."""
    if eid != episode_id(i):
        return {"episode": eid, "step": None, "field": "episode_id", "expected": episode_id(i), "actual": eid}, 0
    seed = base_seed + i
    if mode == "policy":
        expected = _simulate_policy(runner, i)
    else:
        expected = _simulate_actions(params, seed, [r["action"] for r in recorded])
        for e in expected:
            e["episode_id"] = eid
    for k in range(max(len(expected), len(recorded))):
        if k >= len(expected) or k >= len(recorded):
            return {"episode": eid, "step": k + 1, "field": "length",
                    "expected": len(expected), "actual": len(recorded)}, k
        d = _diff(expected[k], recorded[k])
        if d is not None:
            return {"episode": eid, "step": recorded[k].get("step", k + 1),
                    "field": d[0], "expected": d[1], "actual": d[2]}, k
    return None, len(recorded)
