"""Streaming reader for exports: a run's steps as per-episode chunks, in order, bounded memory.

Each chunk holds whole episodes only (the last, unfinished episode of a source batch is carried
into the next chunk), with the observations as a float32 matrix and the reset observation of each
episode recomputed from its seed by ``PlumeNav-v0`` on the capture kernels (never the policy).
"""
from __future__ import annotations

import contextlib
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow.parquet as pq

from plume_capture import spec
from plume_capture.io.jsonl_decode import STEP_LAYOUT, iter_jsonl_batches, strict_loads
from plume_capture.io.rundir import list_run_files
from plume_capture.readback.validate import parquet_source_usable, validate_run_artifacts
from plume_capture.errors import BadInput


class ExportError(BadInput):
    """The run cannot be exported (bad input: the CLI reports it in one line, exit 2)."""


@dataclass(frozen=True)
class Chunk:
    """Whole episodes, rows in step order. Invariant: ``starts`` indexes the first row of each
    episode, ``reset_obs[i]`` is episode i's observation before its first step, and ``obs[r]``
    the observation after row r's step."""

    episode: np.ndarray  # int64 0-based episode index per row
    step: np.ndarray  # int64, 1-based
    action: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    obs: np.ndarray  # (n, d) float32
    starts: np.ndarray  # int64 first row of each episode
    seeds: np.ndarray  # int64 seed per episode
    reset_obs: np.ndarray  # (episodes, d) float32

    @property
    def n(self) -> int:
        return len(self.step)

    def prev_obs(self) -> np.ndarray:
        """Observation before each row's step (the reset observation at an episode's first row)."""
        out = np.empty_like(self.obs)
        out[1:] = self.obs[:-1]
        out[self.starts] = self.reset_obs
        return out


@dataclass(frozen=True)
class RunSource:
    """A run being exported: its run.json, the env keyword arguments that ran, and its validation,
    which runs in a background thread while the export converts into its staging directory.
    Invariant: nothing is renamed into place before ``confirm()`` returned (the run is valid)."""

    run_dir: str
    meta: dict
    env_kwargs: dict
    validation: Future

    def confirm(self) -> dict:
        """Wait for validation; -> its counts {"steps", "episodes"}; ExportError if it failed."""
        rep = self.validation.result()
        if not rep["ok"]:
            raise ExportError(f"{self.run_dir} fails validation: {rep['errors'][0]}")
        return rep["counts"]


def open_run(run_dir, *, full_validation: bool = False) -> RunSource:
    """Start validating ``run_dir`` and resolve its env; raises ExportError when it cannot be
    exported (a run that fails validation is reported by its first validation error).

    A run with Parquet (which the export converts from) is validated on its Parquet records, its
    JSON Lines by size and sha256 against run.json; ``full_validation`` (or a run without Parquet)
    parses the JSON Lines too."""
    from plume_capture.readback.replay import run_env_params

    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise ExportError(f"not a run directory: {run_dir}")
    pool = ThreadPoolExecutor(1, thread_name_prefix="export-validate")
    source = "parquet" if not full_validation and parquet_source_usable(run_dir) else "jsonl"
    validation = pool.submit(validate_run_artifacts, run_dir, max_errors=1, source=source)
    pool.shutdown(wait=False)
    try:
        with open(os.path.join(run_dir, "run.json"), "rb") as f:
            meta = strict_loads(f.read())
        params = run_env_params(meta).build().params
    except Exception as exc:
        RunSource(run_dir, {}, {}, validation).confirm()
        raise ExportError(f"{run_dir}: cannot rebuild its env: {exc}") from None
    kwargs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.__dict__.items()}
    return RunSource(run_dir, meta, kwargs, validation)


@contextlib.contextmanager
def validated(src: RunSource):
    """Around an export's conversion: an error while reading an invalid run is reported as the
    run's validation error; the block's end waits for validation to pass."""
    try:
        yield
    except Exception:
        src.confirm()
        raise
    src.confirm()


# Episodes follow each other in order with steps 1..T (a run where they do not fails validation and
# is refused), so the episode index is the running count of step-1 rows and episode_id (a string)
# is never decoded.
_COLS = ["action", "observation_summary", "reward", "seed", "step", "terminated", "truncated"]


def _parquet_batches(run_dir, names, rows: int):
    for rb in (rb for name in names
               for rb in pq.ParquetFile(os.path.join(run_dir, name)).iter_batches(batch_size=rows, columns=_COLS)):
        lst = rb.column("observation_summary")
        vals = lst.values.slice(lst.offsets[0].as_py(), lst.offsets[-1].as_py() - lst.offsets[0].as_py())
        yield {"obs": vals.to_numpy(), "offsets": lst.offsets.to_numpy(),
               **{k: rb.column(k).to_numpy(zero_copy_only=False)
                  for k in ("action", "reward", "seed", "step", "terminated", "truncated")}}


def _jsonl_batches(run_dir, files, chunk_bytes: int):
    for name in files:
        for batch, problems in iter_jsonl_batches(os.path.join(run_dir, name), STEP_LAYOUT,
                                                  chunk_bytes=chunk_bytes):
            if problems:  # a damaged file; validated() reports it as the validation error
                raise ExportError(f"{name}:{problems[0][0]}: {problems[0][2]}")
            c = batch.cols
            yield {"obs": c["observation_summary.values"],
                   "offsets": c["observation_summary.offsets"],
                   **{k: c[k] for k in ("action", "reward", "seed", "step", "terminated", "truncated")}}


class ResetObservations:
    """Reset observation of an episode from its seed, by the env the run used."""

    def __init__(self, env_kwargs: dict):
        import gymnasium

        import plume_capture.envs  # noqa: F401  (registers PlumeNav-v0)

        self.env = gymnasium.make("PlumeNav-v0", disable_env_checker=True, **env_kwargs).unwrapped

    def __call__(self, seeds: np.ndarray) -> np.ndarray:
        return np.stack([self.env.reset(seed=int(s))[0] for s in seeds]) if len(seeds) else \
            np.zeros((0, self.env.observation_space.shape[0]), np.float32)


def iter_chunks(src: RunSource, *, rows: int = 1 << 18, chunk_bytes: int = 32 << 20) -> Iterator[Chunk]:
    """Yield the run's steps as Chunks of whole episodes, in order."""
    files = list_run_files(src.run_dir)
    base = spec.STEPS_BASENAME
    batches = _parquet_batches(src.run_dir, files.parquet[base], rows) \
        if files.parquet[base] else _jsonl_batches(src.run_dir, files.jsonl[base], chunk_bytes)
    reset = ResetObservations(src.env_kwargs)
    d = reset.env.observation_space.shape[0]
    carry, seen = None, 0
    for b in batches:
        n = len(b["step"])
        if n == 0:
            continue
        off = np.asarray(b["offsets"])
        if not np.array_equal(np.diff(off), np.full(n, d)):
            raise ExportError(f"{src.run_dir}: observation_summary is not {d} values per step")
        cols = {k: np.asarray(b[k]) for k in ("step", "action", "reward", "terminated", "truncated",
                                               "seed")}
        first = cols["step"] == 1
        cols["episode"] = seen - 1 + np.cumsum(first)
        seen += int(np.count_nonzero(first))
        cols["obs"] = np.asarray(b["obs"], np.float64).astype(np.float32).reshape(n, d)
        if carry is not None:
            cols = {k: np.concatenate([carry[k], cols[k]]) for k in cols}
        ep = cols["episode"]
        last_start = int(np.flatnonzero(np.r_[True, ep[1:] != ep[:-1]])[-1])
        carry = {k: v[last_start:] for k, v in cols.items()}
        if last_start > 0:
            yield _chunk({k: v[:last_start] for k, v in cols.items()}, reset)
    if carry is not None:
        yield _chunk(carry, reset)


def _chunk(c: dict, reset: ResetObservations) -> Chunk:
    ep = c["episode"]
    starts = np.flatnonzero(np.r_[True, ep[1:] != ep[:-1]]).astype(np.int64)
    seeds = c["seed"][starts].astype(np.int64)
    return Chunk(ep.astype(np.int64), c["step"].astype(np.int64), c["action"].astype(np.int64),
                 c["reward"].astype(np.float64), c["terminated"].astype(bool),
                 c["truncated"].astype(bool), c["obs"], starts, seeds, reset(seeds))
