"""``capture(spec) -> CaptureResult``: prepare a run from its :class:`RunSpec`, execute it on a
backend (:mod:`.local` threads or :mod:`.on_ray` actors) through one :class:`RunSink`, and commit it.

Write lifecycle: ``.<run_id>.partial/`` (staging, with ``capture.json`` and the journal) -> shards
appended in order -> rename to ``<run_id>/`` -> ``run.json`` written there (the commit point).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shutil
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from plume_capture import interrupts
from plume_capture._version import __version__
from plume_capture.capture import runmeta
from plume_capture.capture.local import local_threads, run_local
from plume_capture.capture.lock import RunLock
from plume_capture.sim.plan import plan, shard_size
from plume_capture.sim.runner import Job
from plume_capture.capture.sink import MANIFEST, RunSink, ShardedSink, drop_bookkeeping, publish, staging_path
from plume_capture.config import RunSpec
from plume_capture.errors import CaptureError, ConfigError
from plume_capture.kernels import _jit
from plume_capture.sim.params import Physics
from plume_capture.spec import EPISODES_BASENAME, MAX_PARTS, STEPS_BASENAME

# engine=auto runs in-process (no Ray start-up, ~6 s here) up to this many (max) steps, and on
# machines with two or fewer CPUs whatever the size: on a 2-vCPU VM the in-process engine's two
# worker threads (~5M steps/s steady) are faster than two Ray actors and their driver (~4.5M/s),
# before Ray's start-up is even counted.
LOCAL_MAX_STEPS = 2_000_000
# In-process runs of at most this many (max) steps run the kernels' Python source when Numba is not
# loaded yet: importing Numba and loading the kernels from its cache costs ~0.6 s (and compiling
# them ~7 s on an empty cache); interpreted, a step costs ~0.1 ms (measured: 2x1000 steps on 64x64
# 0.65-0.85 s interpreted vs 3x1000 compiled 0.86-1.25 s, whole process, warm cache, shared machine).
INTERPRET_MAX_STEPS = 2_000
DEFAULT_WINDOW = 2  # shards in flight per worker
# A multi-shard run has a JSON Lines part per shard, named steps.partNNNN.jsonl.gz: past MAX_PARTS
# the names would no longer sort in data order, so larger runs get larger shards.
MAX_SHARDS = MAX_PARTS


@dataclass
class CaptureResult:
    run_dir: Path
    run_id: str
    episodes: int
    steps: int
    wall_s: float
    status: str = "complete"
    config_hash: str = ""
    engine: str = ""
    startup_s: float = 0.0  # starting (or connecting to) Ray before the run; not part of wall_s

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.wall_s if self.wall_s > 0 else float("inf")


@dataclass(frozen=True)
class Prepared:
    """A run fixed before anything is written: its spec, the physics that run, its identity and
    place, and how it executes. Invariant: everything here follows from ``spec`` except the
    identity (``run_id``, ``start_time``) and, on resume, the original run's ``shard_episodes``."""

    spec: RunSpec
    physics: Physics
    run_id: str
    run_dir: Path
    engine: str  # local | ray
    shard_episodes: int
    window: int
    threads: int
    start_time: float = field(default_factory=time.time)
    token: str = field(default_factory=lambda: uuid.uuid4().hex)  # what workers find in the staging dir
    one_file: bool = False  # resuming a run begun in the one-file layout (by an earlier version)

    @property
    def shards(self) -> int:
        return -(-self.spec.episodes // self.shard_episodes)

    @property
    def sharded(self) -> bool:
        """A run of several shards has one set of files per shard (docs/format.md)."""
        return self.shards > 1 and not self.one_file

    @property
    def staging(self) -> Path:
        return staging_path(self.run_dir)

    @property
    def policy(self):
        return self.spec.policy

    @property
    def seed(self) -> int:
        return self.spec.seed

    @property
    def episodes(self) -> int:
        return self.spec.episodes

    def job(self) -> Job:
        """What every shard runner of this run gets."""
        s = self.spec
        return Job(env=self.physics.params, policy=s.policy, run_id=self.run_id, base_seed=s.seed,
                   parquet=s.parquet, rotate=s.rotate_size is not None, movie=self.physics.movie,
                   staging=str(self.staging.resolve()) if self.sharded else None, token=self.token,
                   rotate_size=s.rotate_size, config_hash=s.config_hash)


def planned_shard_episodes(spec: RunSpec, max_steps: int) -> int:
    """Episodes per shard of a new run of ``spec`` (the shard plan; ``capture.json`` records it)."""
    explicit = spec.engine.shard_episodes
    shard_episodes = shard_size(max_steps, explicit)
    if -(-spec.episodes // shard_episodes) > MAX_SHARDS:
        if explicit:
            raise ConfigError(f"engine.shard_episodes={explicit} cuts {spec.episodes} episodes into "
                              f"more than {MAX_SHARDS:,} shards (one file each); use at least "
                              f"{-(-spec.episodes // MAX_SHARDS)}")
        shard_episodes = -(-spec.episodes // MAX_SHARDS)
    return shard_episodes


def _check_rotation(spec: RunSpec, physics: Physics, run_id: str, shard_episodes: int) -> None:
    """ConfigError (with the smallest rotate_size that works) if ``rotate_size`` could cut the run's
    JSON Lines into more than MAX_PARTS files of an artifact, whatever the records hold."""
    from plume_capture.io.jsonl_encode import max_line_bytes
    from plume_capture.io.shardfiles import max_parts

    max_steps = physics.params.max_steps
    shards = -(-spec.episodes // shard_episodes)
    for base, rows in ((STEPS_BASENAME, shard_episodes * max_steps), (EPISODES_BASENAME, shard_episodes)):
        line = max_line_bytes(base, obs_size=physics.obs_size, run_id=run_id, episodes=spec.episodes,
                              max_steps=max_steps)

        def fits(size: int) -> bool:
            return shards * max_parts(rows, line, size) <= MAX_PARTS

        if fits(spec.rotate_size):
            continue
        low, high = spec.rotate_size, 2**62
        while high - low > 1:
            mid = (low + high) // 2
            low, high = (low, mid) if fits(mid) else (mid, high)
        raise ConfigError(f"rotate_size={spec.rotate_size} could cut this run's {base} into more than "
                          f"{MAX_PARTS:,} JSON Lines files ({shards:,} shard{'s' if shards > 1 else ''} of up to "
                          f"{rows:,} records); for this run use rotate_size >= {high:,} bytes, or null")


def prepare(spec: RunSpec, *, run_id: str | None = None, run_dir: Path | None = None,
            start_time: float | None = None, shard_episodes: int | None = None, one_file: bool = False) -> Prepared:
    """Build the physics and fix the run's identity, place and execution (nothing is written).
    ``run_id``/``run_dir``/``start_time``/``shard_episodes`` are given when resuming a run."""
    physics = spec.env.build()
    eng = spec.engine
    kind = eng.kind
    if kind == "auto":
        kind = "local" if (eng.address is None and eng.num_actors is None and (
            spec.episodes * physics.params.max_steps <= LOCAL_MAX_STEPS or (os.cpu_count() or 1) <= 2)) else "ray"
    if kind == "local" and physics.movie is not None:
        physics.field  # noqa: B018 - in-process, the driver runs the kernels: open (and check) the frames now
    if run_id is None:
        root = Path(spec.output).expanduser()  # checked writable by the config check (config.check)
        run_id = runmeta.new_run_id()
        run_dir = root / spec.experiment / run_id
    if shard_episodes is None:
        shard_episodes = planned_shard_episodes(spec, physics.params.max_steps)
    if spec.rotate_size is not None:
        _check_rotation(spec, physics, run_id, shard_episodes)
    return Prepared(spec=spec, physics=physics, run_id=run_id, run_dir=run_dir, engine=kind,
                    shard_episodes=shard_episodes, one_file=one_file,
                    window=eng.window or DEFAULT_WINDOW, threads=local_threads(eng.threads),
                    **({"start_time": start_time} if start_time is not None else {}))


class _Progress:
    def __init__(self, enabled: bool, episodes: int, label: str):
        self.bar = None
        self.start = time.perf_counter()
        self.steps = 0
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=episodes, unit="ep", desc=label, file=sys.stderr, dynamic_ncols=True)
            except ImportError:
                self.bar = None

    def update(self, episodes: int, steps: int) -> None:
        self.steps += steps
        if self.bar is not None:
            rate = self.steps / max(1e-9, time.perf_counter() - self.start)
            self.bar.set_postfix_str(f"{self.steps:,} steps, {rate / 1e6:.2f}M steps/s", refresh=False)
            self.bar.update(episodes)

    def close(self):
        if self.bar is not None:
            self.bar.close()


@functools.lru_cache(maxsize=None)
def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _versions() -> dict:
    import numpy
    import pyarrow

    v = {"plume_capture": __version__, "numpy": numpy.__version__, "numba": _dist_version("numba"),
         "pyarrow": pyarrow.__version__, "python": sys.version.split()[0]}
    for mod in ("ray", "polars", "isal"):
        m = sys.modules.get(mod)
        if m is not None:
            v[mod] = getattr(m, "__version__", None)
    if "ray" not in v:
        v["ray"] = _dist_version("ray")
    return v


def _run_doc(p: Prepared, sink: RunSink, execution: dict, wall: float, code) -> dict:
    """Close the run's files; -> its ``run.json``."""
    files = sink.close()
    code = code.result()
    sha, dirty = code["cwd"]["git_sha"], code["cwd"]["git_dirty"]
    steps = sink.steps_written
    s = p.spec
    extra = {
        "status": "complete",
        "env": p.physics.effective(),
        "policy": {"name": s.policy.name, "threshold": s.policy.threshold,
                   "persistence": s.policy.persistence, "eps": s.policy.eps},
        "config": s.config,
        "overrides": list(s.overrides),
        "counts": {"steps": steps, "episodes": sink.episodes_written},
        "files": files,
        "engine": {**execution, "shard_episodes": p.shard_episodes, "shards": sink.next_shard,
                   "layout": "per_shard" if p.sharded else "one_file",
                   **({"shards_written_by_workers": sink.by_workers,
                       "shards_written_by_driver": sink.by_driver} if p.sharded else {}),
                   "window": p.window, "versions": _versions()},
        "timing": {"wall_s": wall, "steps_per_s": steps / wall if wall > 0 else None},
        "git_dirty": dirty,
        "code": code,
        "rotate_size": s.rotate_size,
    }
    doc = runmeta.build_run_json(
        run_id=p.run_id, experiment=s.experiment, start_time=p.start_time,
        effective_env=p.physics.effective(), base_seed=s.seed, episodes=s.episodes,
        package_version=__version__, config_hash=s.config_hash, git_sha=sha, system=runmeta.system_info(),
        extra=extra)
    return doc


def _commit(p: Prepared, doc: dict) -> None:
    """Rename the staging directory to the run's name, then write ``run.json`` there: the commit
    point. ``run.json`` is never written in a staging directory, so no ``.partial`` ever looks
    complete; until it is written the journal and manifest stay, so a commit that fails (or a
    process killed between the two) leaves a resumable run (``--resume`` takes either name)."""
    publish(p.staging, p.run_dir)
    try:
        runmeta.write_json_atomic(p.run_dir / "run.json", doc)
    except BaseException:
        with contextlib.suppress(OSError):  # back to its staging name, where the CLI says to resume it
            (p.run_dir / "run.json.tmp").unlink(missing_ok=True)
            os.rename(p.run_dir, p.staging)
        raise
    drop_bookkeeping(p.run_dir)


def open_new(p: Prepared) -> tuple[RunSink, RunLock]:
    """Create the run's staging directory, locked, with its manifest (what a resume needs); -> a
    sink and the lock (held until the run is committed or has failed)."""
    p.run_dir.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(p.run_dir):  # never run into (or later rename onto) an existing run
        raise CaptureError(f"run directory {p.run_dir} already exists")
    try:
        os.mkdir(p.staging)
    except FileExistsError as exc:
        raise CaptureError(f"staging directory {p.staging} already exists") from exc
    lock = None
    try:
        lock = RunLock(p.staging)  # before the manifest: a resume needs the manifest, then the lock
        runmeta.write_json_atomic(p.staging / MANIFEST, {
            "run_id": p.run_id, "config_hash": p.spec.config_hash, "config": p.spec.config,
            "overrides": list(p.spec.overrides), "start_time": p.start_time, "env": p.physics.effective(),
            "shard_episodes": p.shard_episodes})
        return new_sink(p), lock
    except BaseException:  # e.g. an interrupt: nothing is recorded yet, so nothing is left
        if lock is not None:
            lock.release()
        shutil.rmtree(p.staging, ignore_errors=True)
        raise


def _open_all(prepared: list[Prepared]) -> list:
    """:func:`open_new` for each run, all or none: a failure (an interrupt) removes the staging
    directories already opened, which hold nothing yet."""
    opened = []
    try:
        for p in prepared:
            opened.append((p, *open_new(p)))
    except BaseException:
        for p, _, lock in opened:
            lock.release()
            shutil.rmtree(p.staging, ignore_errors=True)
        raise
    return opened


def new_sink(p: Prepared):
    s = p.spec
    if p.sharded:
        return ShardedSink(p.staging, rotate_size=s.rotate_size, parquet=s.parquet, token=p.token,
                           run_id=p.run_id, config_hash=s.config_hash)
    return RunSink(p.staging, rotate_size=s.rotate_size, parquet=s.parquet, run_id=p.run_id,
                   config_hash=s.config_hash, copy_parquet_input=p.engine != "local")


def execute(p: Prepared, sink: RunSink, lock: RunLock, progress_enabled: bool, pool=None) -> CaptureResult:
    """Run the shards the sink does not hold yet, then commit the run; releases ``lock`` at the
    end. On any failure the staging directory stays, visibly incomplete and resumable
    (``exc.staging`` names it)."""
    return execute_many([(p, sink, lock)], progress_enabled, pool)[0]


def execute_many(items, progress_enabled: bool, pool=None) -> list[CaptureResult]:
    """Runs ``[(prepared, sink, lock), ...]`` of one engine over one set of workers (in-process
    threads or Ray actors; a sweep's points share them), each committed as soon as its last shard
    is written. On a failure the runs not yet committed stay, incomplete and resumable
    (``exc.staging`` names the first)."""
    engine = items[0][0].engine
    assert all(p.engine == engine for p, _, _ in items), "one engine per call"
    t0 = time.perf_counter()
    code = _background(runmeta.provenance)  # git state of the code and the working directory (~50 ms)
    results: list = [None] * len(items)
    dones = [sink.next_shard for _, sink, _ in items]
    work = [(p, plan(p.episodes, p.shard_episodes)[done:], sink) for (p, sink, _), done in zip(items, dones)]
    progress = _Progress(progress_enabled, sum(p.episodes for p, _, _ in items), items[0][0].spec.experiment)
    progress.update(sum(sink.episodes_written for _, sink, _ in items), 0)

    def commit(i, execution):
        p, sink, lock = items[i]
        execution["resumed_from_shard"] = dones[i] if sink.resumed else None
        started = execution.pop("started", None)  # a sweep's later points: from their first shard
        wall = time.perf_counter() - (t0 if i == 0 or started is None else started)
        doc = _run_doc(p, sink, execution, wall, code)
        interrupts.check()  # a signal whose KeyboardInterrupt was lost: the run stays resumable
        with interrupts.held():
            _commit(p, doc)
            lock.release()
            results[i] = CaptureResult(run_dir=p.run_dir, run_id=p.run_id, episodes=p.episodes,
                                       steps=sink.steps_written, wall_s=wall, config_hash=p.spec.config_hash,
                                       engine=p.engine)
        if any(r is None for r in results):  # this run is published; the others stop at a signal
            interrupts.check()

    try:
        if engine == "local":
            # (A puff plume costs its live puffs per step: interpreted, even small runs are slow.)
            tiny = all(p.episodes * p.physics.params.max_steps <= INTERPRET_MAX_STEPS and not p.physics.is_puff
                       for p, _, _ in items)
            with _jit.interpreting() if tiny else contextlib.nullcontext():
                run_local(work, progress, on_done=commit)
        else:
            from plume_capture.capture.on_ray import run_ray

            run_ray(work, progress, pool, on_done=commit)
    except BaseException as exc:
        _failed(exc, [(p, sink) for (p, sink, _), r in zip(items, results) if r is None])
        raise
    finally:
        progress.close()
        for (_, _, lock), r in zip(items, results):
            if r is None:
                lock.release()
    return results


def _failed(exc: BaseException, unfinished) -> None:
    for p, sink in unfinished:
        sink.abort()
    stagings = [p.staging for p, _ in unfinished if p.staging.is_dir()]
    if stagings:
        try:  # the CLI tells the operator what to --resume
            exc.staging, exc.stagings = stagings[0], stagings
        except AttributeError:  # pragma: no cover
            pass


def _background(fn):
    from concurrent.futures import Future

    fut: Future = Future()

    def work():
        try:
            fut.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - delivered to whoever waits
            fut.set_exception(exc)

    threading.Thread(target=work, name="provenance", daemon=True).start()
    return fut


@contextlib.contextmanager
def session(prepared: list[Prepared], progress: bool = False):
    """SIGTERM stops a run like SIGINT (exit 130, the run stays resumable), and Ray is started (or
    connected to) when a run needs it and shut down afterwards if we started it. Yields
    ``{"ray_s": seconds spent starting or connecting to Ray}``; with ``progress`` a line on stderr
    says it is under way."""
    started = False
    info = {"ray_s": 0.0}
    with interrupts.raising():
        try:
            if any(p.engine == "ray" for p in prepared):
                from plume_capture.capture.on_ray import ray_init

                eng = next((p.spec.engine for p in prepared if p.spec.engine.address), None)
                if progress:
                    where = f"connecting to Ray at {eng.address}" if eng else "starting a local Ray instance"
                    print(f"plume-capture: {where} ...", file=sys.stderr, flush=True)
                t0 = time.perf_counter()
                started = ray_init(eng.address if eng else None, eng.address_from if eng else None,
                                   eng.object_store_mb if eng else None)
                info["ray_s"] = time.perf_counter() - t0 if started else 0.0
                interrupts.install()  # ray.init installs its own SIGTERM handler (exit 15)
                from plume_capture.capture.on_ray import check_movies

                check_movies([p.physics.movie for p in prepared if p.engine == "ray" and p.physics.movie])
            yield info
        finally:
            if started:
                import ray

                ray.shutdown()


def capture_many(specs, *, overrides_list=None, progress: bool = False) -> list[CaptureResult]:
    """Run several captures (a sweep) of :class:`RunSpec` ``specs``, all resolved before any runs
    (a config dict is resolved once, with its entry of ``overrides_list`` recorded). The points
    share one set of workers per engine (in-process threads, or Ray actors on one instance or
    cluster): each point its own sink and run directory, committed as soon as it is complete."""
    overrides_list = overrides_list or [()] * len(specs)
    specs = [s if isinstance(s, RunSpec) else RunSpec.from_dict(s, o) for s, o in zip(specs, overrides_list)]
    prepared = [prepare(s) for s in specs]
    with session(prepared, progress) as info:
        results: list = [None] * len(prepared)
        for engine in ("local", "ray"):
            idx = [i for i, p in enumerate(prepared) if p.engine == engine]
            if idx:
                done = execute_many(_open_all([prepared[i] for i in idx]), progress)
                for i, r in zip(idx, done):
                    results[i] = dataclasses.replace(r, startup_s=info["ray_s"]) if engine == "ray" else r
        return results
