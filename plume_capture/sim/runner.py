"""``ShardRunner``: runs a shard's episodes with the capture kernel and returns its records,
already encoded. The same class runs in-process and as a Ray actor (``ray.remote(ShardRunner)``).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from plume_capture.sim.params import EnvParams, PolicyParams
from plume_capture.spec import EPISODE_SCHEMA, SCHEMA_VERSION, STEP_SCHEMA, episode_id
from plume_capture.io.arrow import column, strings
from plume_capture.sim.plan import Shard

_OBS_TYPE = STEP_SCHEMA.field("observation_summary").type
# A movie larger than MOVIE_MAPPED_BYTES runs at most MOVIE_CHUNK_ROWS steps per kernel call, and the
# pages a call mapped are released after it. A touched cell maps its page and up to 15 cached
# neighbours (the kernel's 64 KiB fault-around): 8Ki-step calls peaked at ~330 MB mapped per actor
# on an 8 GiB movie, and 2Ki-step calls left an in-process driver at 569 MB (460 MB with 512). A
# smaller movie stays mapped (releasing it after every call cost ~3x in page faults on a 46 MB movie).
MOVIE_MAPPED_BYTES = 256 << 20
MOVIE_CHUNK_ROWS = 1 << 9


@dataclass(frozen=True)
class Job:
    """Everything a runner needs; small and picklable (sent once to each actor)."""
    env: EnvParams  # resolved (``Physics.params``)
    policy: PolicyParams
    run_id: str
    base_seed: int
    parquet: bool = False
    rotate: bool = False
    gzip_level: int = 1
    chunk_rows: int = 1 << 18  # most rows per kernel call (a default shard fits in one call)
    movie: dict | None = None  # the movie the driver described (a worker must open the same one)
    # A multi-shard run (io.shardfiles): each shard's files are made here and, when this process
    # sees ``staging`` (its probe file holds ``token``), written here; else the bytes go back.
    staging: str | None = None
    token: str = ""
    rotate_size: int | None = None
    config_hash: str = ""


@dataclass
class ShardResult:
    shard: Shard
    steps: int
    steps_jsonl: object  # io.jsonl_encode.EncodedJsonl
    episodes_jsonl: object
    steps_table: pa.Table | None = None
    episodes_table: pa.Table | None = None
    pieces: list | None = None  # multi-shard run: the shard's files (io.shardfiles.Piece), in order
    written: bool = False  # the pieces were written by the worker (else they carry their bytes)
    seconds: float = 0.0
    node: str = ""
    pid: int = field(default_factory=os.getpid)


def _empty(n: int, dtype) -> np.ndarray:
    """An uninitialised array in Arrow's memory pool (mimalloc). Shard records are allocated on
    worker threads and freed on others (the Parquet thread); in glibc's per-thread heaps that
    pattern grew the RSS of long Parquet runs without bound (+25% from 10M to 100M steps), and
    fresh blocks page-faulted on every shard. Arrow's pool does neither."""
    dtype = np.dtype(dtype)
    return np.frombuffer(pa.allocate_buffer(max(1, n) * dtype.itemsize), dtype)[:n]


def _copy(a: np.ndarray, dtype=None) -> np.ndarray:
    """``a`` (cast to ``dtype``) in Arrow's pool."""
    out = _empty(a.size, a.dtype if dtype is None else dtype).reshape(a.shape)
    np.copyto(out, a)
    return out


def _constant(value: str, n: int) -> pa.Array:
    return strings([value]).take(column(np.zeros(n, np.int32)))


def _node_id() -> str:
    """The Ray node id inside a Ray worker (hosts of a one-machine cluster share a hostname), else the hostname."""
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        try:
            return ray.get_runtime_context().get_node_id()
        except Exception:  # pragma: no cover - defensive: never fail a shard over a label
            pass
    return os.uname().nodename


def open_movie_env(job: Job):
    """``job.env`` built here, its movie's frames opened: OperationalError (exit 3, one line) when
    this node cannot see the movie the driver described or sees another one at its path."""
    from plume_capture.errors import ConfigError, OperationalError

    expected = job.movie
    try:
        physics = job.env.build()
    except ConfigError as exc:
        raise OperationalError(f"node {os.uname().nodename} cannot use movie {expected['path']!r}: {exc}") from None
    if physics.movie["identity"] != expected["identity"]:
        raise OperationalError(f"movie {expected['path']!r} on node {os.uname().nodename} is not the movie this "
                               f"run uses (identity {physics.movie['identity'][:12]} != {expected['identity'][:12]})")
    physics.field  # noqa: B018 - open (map, decode or check) the frames now
    return physics


class ShardRunner:
    """Runs shards of one job. Kernels are compiled (or loaded from Numba's cache) once."""

    def __init__(self, job: Job, threads: int = 1, physics=None):
        from plume_capture.io.jsonl_encode import configure_threads
        from plume_capture.kernels import _jit, specialize

        # Ray sets OMP_NUM_THREADS for an actor but not Numba's or polars' thread counts.
        configure_threads(max(1, threads))
        if not _jit.will_interpret():
            numba = _jit.load_numba()
            numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
        from plume_capture.kernels.rollout import run_episodes

        self.job = job
        if physics is not None:  # in-process: reuse the driver's (movie frames are mapped once)
            self.physics = physics
        elif job.movie is not None:
            self.physics = open_movie_env(job)
        else:
            self.physics = job.env.build()
        ka = self.args = self.physics.kernel_args(job.policy)  # opens (memory-maps) a movie's frames
        example = (ka.params, ka.field, np.zeros(1, np.int64), ka.state, ka.rows(1), ka.episodes(1))
        self.kernel = specialize(run_episodes, ka.codes, example)  # example arguments: the kernel's types
        self.node = _node_id()
        self._release, self._chunk_rows = None, job.chunk_rows
        if self.physics.movie is not None and ka.field.nbytes > MOVIE_MAPPED_BYTES:
            from plume_capture.sim.movie import release_pages

            # A movie's pages stay mapped until released: at most MOVIE_CHUNK_ROWS steps' worth at a time.
            self._release, self._chunk_rows = release_pages, min(job.chunk_rows, MOVIE_CHUNK_ROWS)
        self._sees = None  # whether this process sees the staging directory (multi-shard runs)

    def ping(self) -> int:
        return os.getpid()

    def run_table(self, shard: Shard) -> pa.Table:
        """The shard's step records as an Arrow table (no encoding)."""
        return self._simulate(shard)[0]

    def run_tables(self, shard: Shard) -> tuple[pa.Table, pa.Table]:
        """The shard's step and episode records as Arrow tables (no encoding)."""
        return self._simulate(shard)

    def run(self, shard: Shard) -> ShardResult:
        from plume_capture.io.jsonl_encode import BLOCK_BYTES, encode_jsonl

        t0 = time.perf_counter()
        steps, episodes = self._simulate(shard)
        block = BLOCK_BYTES if self.job.rotate else None
        if self.job.staging is not None:
            return self._pieces(shard, steps, episodes, block, t0)
        return ShardResult(
            shard=shard, steps=steps.num_rows,
            steps_jsonl=encode_jsonl(steps, block_bytes=block, level=self.job.gzip_level),
            episodes_jsonl=encode_jsonl(episodes, block_bytes=block, level=self.job.gzip_level),
            steps_table=steps if self.job.parquet else None,
            episodes_table=episodes if self.job.parquet else None,
            seconds=time.perf_counter() - t0, node=self.node)

    def _pieces(self, shard: Shard, steps: pa.Table, episodes: pa.Table, block, t0: float) -> ShardResult:
        from plume_capture.io import shardfiles
        from plume_capture.io.jsonl_encode import encode_jsonl

        job = self.job
        meta = {"schema_version": SCHEMA_VERSION, "run_id": job.run_id, "config_hash": job.config_hash}
        pieces = shardfiles.encode_shard(
            encode_jsonl(steps, block_bytes=block, level=job.gzip_level),
            encode_jsonl(episodes, block_bytes=block, level=job.gzip_level), job.rotate_size,
            steps, episodes, meta if job.parquet else None)
        if self._sees is None:  # once per runner: a runner never moves to another node
            self._sees = shardfiles.sees(job.staging, job.token)
        if self._sees:
            pieces = shardfiles.write_pieces(job.staging, shard.index, pieces)
        return ShardResult(shard=shard, steps=steps.num_rows, steps_jsonl=None, episodes_jsonl=None,
                           pieces=pieces, written=self._sees,
                           seconds=time.perf_counter() - t0, node=self.node)

    def _simulate(self, shard: Shard) -> tuple[pa.Table, pa.Table]:
        job, ph = self.job, self.physics
        n = shard.episodes
        seeds = np.arange(job.base_seed + shard.start, job.base_seed + shard.stop, dtype=np.int64)
        ids = strings([episode_id(i) for i in range(shard.start, shard.stop)])
        ka, st = self.args, self.args.state
        summary = ka.episodes(n)
        busy_s = np.zeros(n, np.float64)  # each kernel call's wall time, split evenly over its steps
        for buf in st:
            buf[:] = 0
        batches = []
        max_steps = job.env.max_steps
        while st.episode[0] < n:
            e0 = int(st.episode[0])
            # Fresh output rows for each call, in Arrow's pool: the Arrow arrays then wrap them (no copies).
            cols = ka.rows(int(min(self._chunk_rows, (n - e0) * max_steps)), _empty)
            t0 = time.perf_counter()
            r = self.kernel(ka.params, ka.field, seeds, st, cols, summary)
            per_step = (time.perf_counter() - t0) / r
            if self._release is not None:  # the movie pages this call touched leave this process's RSS
                self._release(ka.field)
            # Short episodes leave most of the bound unused; the records must not pin it.
            cols = tuple(c[:r] if 2 * r >= len(c) else _copy(c[:r]) for c in cols)
            o_ep, o_step, o_action, o_reward, o_term, o_trunc, o_x, o_y, o_heading, o_dist, o_obs = cols
            ts = time.time()
            e1 = int(o_ep[r - 1])
            # Rows are ordered by episode: one count per episode of this call.
            busy_s[e0:e1 + 1] += np.bincount(o_ep, minlength=e1 + 1)[e0:] * per_step
            # Every column that outlives this call lives in Arrow's pool (see _empty).
            obs = _copy(o_obs.reshape(-1), np.float64)
            offsets = _empty(r + 1, np.int32)
            offsets[:] = np.arange(0, obs.size + 1, ph.obs_size, dtype=np.int32)
            seed_col = _empty(r, np.int64)
            np.take(seeds, o_ep, out=seed_col)
            ts_col = _empty(r, np.float64)
            ts_col.fill(ts)
            batches.append(pa.RecordBatch.from_arrays([
                column(o_action),
                pa.StructArray.from_arrays([column(o_x), column(o_y)], names=["x", "y"]),
                column(o_dist),
                ids.take(column(o_ep)),
                pa.ListArray.from_arrays(column(offsets), column(obs), type=_OBS_TYPE),
                column(o_reward),
                _constant(job.run_id, r),
                _constant(SCHEMA_VERSION, r),
                column(seed_col),
                column(o_step),
                column(o_term),
                column(o_trunc),
                column(ts_col),
            ], schema=STEP_SCHEMA))
        steps = pa.Table.from_batches(batches, schema=STEP_SCHEMA)
        duration_ms = busy_s * 1000.0
        e_steps, e_reward, e_term, e_trunc, e_x, e_y, e_dist = summary
        episodes = pa.Table.from_arrays([
            column(duration_ms / e_steps),
            column(duration_ms),
            ids,
            column(e_dist),
            pa.StructArray.from_arrays([column(e_x), column(e_y)], names=["x", "y"]),
            _constant(job.run_id, n),
            _constant(SCHEMA_VERSION, n),
            column(e_term),
            column(e_reward),
            column(e_steps),
            column(e_trunc),
        ], schema=EPISODE_SCHEMA)
        return steps, episodes
