"""JSON Lines read chunk by chunk (decompression and parsing in worker threads), every record's checks, and the
per-episode state carried across chunks and files."""
from __future__ import annotations

import os
import threading
import queue
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from plume_capture import spec as records
from plume_capture.kernels.checks import (EV_AFTER_END, EV_BACK, EV_DUP, EV_EP_GAP, EV_FIRST, EV_GAP, EV_ORDER,
                                          step_sequence)
from plume_capture.io.jsonl_decode import BufferPool, GzipLines, Layout, parse_fast, parse_slow
from plume_capture.io.rundir import jsonl_text_limit
from plume_capture.readback.validate.report import Report, concat_columns, eid, eid_range, fmt_value, take_rows
from plume_capture.readback.validate.run_json import Context, short

if TYPE_CHECKING:
    from plume_capture.readback.validate.parquet import ParquetSide


class Joiner:
    """Matches per-episode summaries of the steps with the episode records, both in order."""

    def __init__(self, rep: Report):
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
        S, E = concat_columns(self.S), concat_columns(self.E)
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
            self._compare(take_rows(S, si), take_rows(E, ei))
        self.S = [take_rows(S, slice(ns, None))] if ns < len(S["idx"]) else []
        self.E = [take_rows(E, slice(ne, None))] if ne < len(E["idx"]) else []

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
                parts.append(f"total_reward {fmt_value(e['total_reward'][k])} but the steps' rewards "
                             f"sum to {fmt_value(s['rsum'][k])}")
            if bad_pos[k]:
                parts.append(f"final_position ({e['x'][k]}, {e['y'][k]}) but the last step is at "
                             f"({s['x'][k]}, {s['y'][k]})")
            if bad_dist[k]:
                parts.append(f"final_distance_to_goal {fmt_value(e['dist'][k])} but the last step has "
                             f"{fmt_value(s['dist'][k])}")
            for flag, badf in (("terminated", bad_term), ("truncated", bad_trunc)):
                key = flag[:4] if flag == "terminated" else "trunc"
                if badf[k]:
                    parts.append(f"{flag} {fmt_value(bool(e[key][k]))} but the last step has "
                                 f"{fmt_value(bool(s[key][k]))}")
            self.rep.error("EPISODE_MISMATCH", f"{e['file'][k]}:{e['line'][k]}",
                           f"{eid(s['idx'][k])}: " + "; ".join(parts))
        extra = int(bad.sum()) - min(int(bad.sum()), self.rep.max_errors + 1)
        self.rep.suppressed += extra


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
    done = False
    try:
        while True:
            item = q.get()
            if item is None:
                done = True
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        # the consumer stopped early: the producer may wait for a buffer (a producer that is done
        # may still be alive; the pool it shares with the next file must stay open)
        if not done and t.is_alive():
            reader.pool.close()
        t.join()


class Stream:
    """The JSON Lines files of one base, parsed chunk by chunk (parsing overlaps with the next
    chunk's parse and decompression in worker threads)."""

    def __init__(self, run_dir, files, layout: Layout, ctx: Context, rep: Report,
                 parquet: ParquetSide | None, pool: ThreadPoolExecutor, chunk_bytes: int):
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
            reader = GzipLines(os.path.join(self.run_dir, name), pool=pool, auto_release=False,
                               max_bytes=jsonl_text_limit(self.ctx.meta, name))
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


def _flag(rep: Report, code: str, fname: str, batch, mask: np.ndarray, msg, check: str = ""):
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


def check_steps(rep: Report, ctx: Context, fname: str, b):
    c = b.cols
    _check_common(rep, ctx, fname, b)
    ep = c["episode_id"]
    if ctx.base_seed is not None:
        want = ctx.base_seed + ep
        _flag(rep, "SEED_MISMATCH", fname, b, (ep >= 0) & (c["seed"] != want),
              lambda i: f"{eid(ep[i])} step {c['step'][i]} has seed {c['seed'][i]}, expected "
                        f"base_seed + {ep[i]} = {want[i]}")
    x, y = c["agent_position.x"], c["agent_position.y"]
    dist, step = c["distance_to_goal"], c["step"]
    _check_positions(rep, ctx, fname, b, x, y, "agent_position")
    if ctx.goal is not None:
        dx, dy = x - ctx.goal[0], y - ctx.goal[1]
        want_d = np.sqrt((dx * dx + dy * dy).astype(np.float64))
        _flag(rep, "DISTANCE_MISMATCH", fname, b, want_d != dist,
              lambda i: f"distance_to_goal {fmt_value(dist[i])} at ({x[i]}, {y[i]}), expected "
                        f"{fmt_value(want_d[i])} from the goal {ctx.goal}")
    else:
        _flag(rep, "RECORD_VALUE", fname, b, dist < 0,
              lambda i: f"distance_to_goal {fmt_value(dist[i])} is negative", "dist")
    term, trunc = c["terminated"], c["truncated"]
    if ctx.radius is not None:
        reached = dist <= ctx.radius
        _flag(rep, "FLAG_MISMATCH", fname, b, term != reached,
              lambda i: f"terminated {fmt_value(term[i])} with distance_to_goal {fmt_value(dist[i])} and "
                        f"goal_radius {fmt_value(ctx.radius)}", "term")
        if ctx.reward_type is not None:
            miss = 0.0 if ctx.reward_type == "sparse" else records.STEP_PENALTY
            want_r = np.where(reached, 1.0, miss)
            r = c["reward"]
            _flag(rep, "REWARD_MISMATCH", fname, b, r != want_r,
                  lambda i: f"reward {fmt_value(r[i])} with distance_to_goal {fmt_value(dist[i])}, expected "
                            f"{fmt_value(want_r[i])} ({ctx.reward_type})")
    if ctx.max_steps is not None:
        _flag(rep, "FLAG_MISMATCH", fname, b, trunc != (step >= ctx.max_steps),
              lambda i: f"truncated {fmt_value(trunc[i])} at step {step[i]} with max_steps "
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
                  lambda i: f"observation_summary {short(vals[off[i]:off[i + 1]])} outside [0, 1]")


def check_episodes(rep: Report, ctx: Context, fname: str, b):
    c = b.cols
    _check_common(rep, ctx, fname, b)
    ts, dur, avg = c["total_steps"], c["duration_ms"], c["avg_step_time_ms"]
    _flag(rep, "RECORD_VALUE", fname, b, ts < 1, lambda i: f"total_steps {ts[i]} < 1", "steps")
    _flag(rep, "RECORD_VALUE", fname, b, (dur < 0) | (avg < 0),
          lambda i: f"duration_ms {fmt_value(dur[i])} / avg_step_time_ms {fmt_value(avg[i])} negative", "neg")
    with np.errstate(divide="ignore", invalid="ignore"):
        want = dur / np.maximum(ts, 1)
    _flag(rep, "RECORD_VALUE", fname, b, (ts >= 1) & (np.abs(avg - want) > 1e-9 * np.maximum(
        1.0, np.abs(want))), lambda i: f"avg_step_time_ms {fmt_value(avg[i])} != duration_ms / "
                                       f"total_steps = {fmt_value(want[i])}", "avg")
    fd = c["final_distance_to_goal"]
    _flag(rep, "RECORD_VALUE", fname, b, fd < 0,
          lambda i: f"final_distance_to_goal {fmt_value(fd[i])} is negative", "fdist")
    _flag(rep, "RECORD_VALUE", fname, b, ~(c["terminated"] | c["truncated"]),
          lambda i: f"{eid(c['episode_id'][i])} is neither terminated nor truncated", "unfinished")
    _check_positions(rep, ctx, fname, b, c["final_position.x"], c["final_position.y"],
                     "final_position")


class StepState:
    """Sequence checks of the steps, with the state carried from batch to batch."""

    def __init__(self):
        self.st = np.array([-1, -1, 0, 0, 0, 0, 0, 0, 0, 0], np.int64)
        self.sf = np.zeros(2, np.float64)

    def run(self, b, rep: Report, fname: str) -> dict:
        c = b.cols
        n = b.n + 1
        out = {"idx": np.empty(n, np.int64), "count": np.empty(n, np.int64),
               "rsum": np.empty(n, np.float64), "x": np.empty(n, np.int64),
               "y": np.empty(n, np.int64), "dist": np.empty(n, np.float64),
               "term": np.empty(n, np.int64), "trunc": np.empty(n, np.int64)}
        ev = np.empty((64, 4), np.int64)
        no, ne, ntot = step_sequence(
            c["episode_id"], c["step"], c["reward"], c["terminated"], c["truncated"],
            c["agent_position.x"], c["agent_position.y"], c["distance_to_goal"], self.st, self.sf,
            out["idx"], out["count"], out["rsum"], out["x"], out["y"], out["dist"], out["term"],
            out["trunc"], ev)
        lines = b.lines
        for code, row, a, bb in ev[:ne]:
            where = f"{fname}:{lines[row]}"
            e = c["episode_id"][row]
            if code == EV_EP_GAP:
                rep.error("EPISODE_MISSING", where, f"no steps for {eid_range(a, bb)} "
                          f"(next is {eid(e)})")
            elif code == EV_ORDER:
                rep.error("EPISODE_ORDER", where, f"{eid(a)} again, after other records" if a == bb
                          else f"{eid(a)} after {eid(bb)}")
            elif code == EV_FIRST:
                rep.error("STEP_SEQUENCE", where, f"{eid(e)} starts at step {a}, expected 1")
            elif code == EV_DUP:
                rep.error("DUPLICATE", where, f"{eid(e)} step {a} repeated")
            elif code == EV_GAP:
                missing = f"step {a + 1}" if bb - a == 2 else f"steps {a + 1}..{bb - 1}"
                rep.error("STEP_GAP", where, f"{eid(e)} step {bb} follows step {a} "
                          f"({missing} missing)")
            elif code == EV_BACK:
                rep.error("STEP_SEQUENCE", where, f"{eid(e)} step {bb} follows step {a}")
            elif code == EV_AFTER_END:
                rep.error("STEP_AFTER_END", where, f"{eid(e)} step {bb} follows step {a}, which "
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


class EpisodeState:
    """Order checks of the episode records; returns the rows to match with the steps."""

    def __init__(self):
        self.max_ep = -1

    def run(self, b, rep: Report, fname: str) -> dict:
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
                rep.error("DUPLICATE", where, f"episode record {eid(e[i])} repeated")
            elif order[i]:
                rep.error("EPISODE_ORDER", where, f"{eid(e[i])} after {eid(prior[i])}")
            else:
                rep.error("EPISODE_MISSING", where,
                          f"no episode record for {eid_range(prior[i] + 1, e[i] - 1)}")
        rep.suppressed += max(0, len(events) - rep.max_errors - 1)
        keep = valid & (e > prior)
        return {"idx": e[keep], "total_steps": c["total_steps"][keep],
                "total_reward": c["total_reward"][keep], "x": c["final_position.x"][keep],
                "y": c["final_position.y"][keep], "dist": c["final_distance_to_goal"][keep],
                "term": c["terminated"][keep].astype(np.int64),
                "trunc": c["truncated"][keep].astype(np.int64),
                "line": lines[keep], "file": np.full(int(keep.sum()), fname, dtype=object)}


