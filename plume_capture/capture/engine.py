"""``capture(config) -> CaptureResult``: run N episodes in-process or on Ray and write the run.

In-process, shards run on worker threads (one ``ShardRunner`` each) and this thread writes them
in shard order. On Ray, the driver owns the shard table: a bounded window of shards in flight
(``ray.wait``), a reorder buffer so results are written in shard order, and each result dropped
once written. A shard whose actor dies is re-queued on a live actor; the dead actor is restarted
by Ray (``max_restarts=-1``) and used again once it answers a ping.
"""
from __future__ import annotations

import collections
import contextlib
import functools
import itertools
import os
import queue
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from plume_capture import __version__
from plume_capture.errors import CaptureError, ConfigError
from plume_capture.sim.params import EnvParams, PolicyParams
from plume_capture.kernels import _jit
from plume_capture.capture import runmeta
from plume_capture.capture.plan import plan, shard_size
from plume_capture.capture.runner import Job, ShardRunner
from plume_capture.capture.sink import MANIFEST, RunSink, drop_bookkeeping, publish, staging_path

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
from plume_capture.spec import SEED_MAX  # noqa: E402


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

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.wall_s if self.wall_s > 0 else float("inf")


@dataclass
class Prepared:
    cfg: dict
    overrides: list
    physics: object
    policy: PolicyParams
    config_hash: str
    run_id: str
    run_dir: Path
    staging: Path
    episodes: int
    seed: int
    experiment: str
    rotate_size: int | None
    parquet: bool
    engine: str
    num_actors: int | None
    address: str | None
    shard_episodes: int
    window: int
    headroom: int | None = None
    threads: int = 1
    start_time: float = field(default_factory=time.time)


def _int_setting(name, value, lo, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ConfigError(f"{name} must be an integer >= {lo}, got {value!r}")
    return value


def _validate_name(experiment) -> str:
    if not isinstance(experiment, str) or not experiment or experiment in (".", "..") \
            or any(c in experiment for c in "/\\\0") or experiment.startswith("."):
        raise ConfigError(f"experiment must be a plain name (no path separators, not '.'/'..'), got {experiment!r}")
    return experiment


def prepare(cfg: dict, overrides=()) -> Prepared:
    """Validate the resolved config and fix everything about the run before anything is written."""
    try:
        from plume_capture.config import config_hash, validate_config
    except ImportError:  # pragma: no cover - config module is part of the package
        config_hash = validate_config = None
    if validate_config is not None:
        validate_config(cfg)
    physics = EnvParams.from_config(cfg).build()
    pol = dict(cfg.get("policy") or {})
    policy = PolicyParams(pol.get("name", "random"), pol.get("threshold", 1e-6), pol.get("persistence", 1),
                          pol.get("eps", 0.0)).validated(physics.params.action_type)
    episodes = _int_setting("episodes", cfg.get("episodes", 1), 1)
    seed = _int_setting("seed", cfg.get("seed", 123), 0)
    if seed + episodes - 1 > SEED_MAX:
        raise ConfigError(f"seed + episodes - 1 must be <= 2**32-1, got seed={seed} episodes={episodes}")
    rotate_size = _int_setting("rotate_size", cfg.get("rotate_size"), 1, allow_none=True)
    parquet = cfg.get("parquet", False)
    if not isinstance(parquet, bool):
        raise ConfigError(f"parquet must be true or false, got {parquet!r}")
    experiment = _validate_name(cfg.get("experiment", "default"))
    eng = dict(cfg.get("engine") or {})
    kind = eng.get("kind", "auto")
    if kind not in ("auto", "local", "ray"):
        raise ConfigError(f"engine.kind must be auto, local or ray, got {kind!r}")
    num_actors = _int_setting("engine.num_actors", eng.get("num_actors"), 1, allow_none=True)
    address = eng.get("address") or os.environ.get("RAY_ADDRESS") or None
    shard_eps = _int_setting("engine.shard_episodes", eng.get("shard_episodes"), 1, allow_none=True)
    window = _int_setting("engine.window", eng.get("window"), 1, allow_none=True) or 2
    headroom = _int_setting("engine.headroom_cpus", eng.get("headroom_cpus"), 0, allow_none=True)
    threads = local_threads(_int_setting("engine.threads", eng.get("threads"), 1, allow_none=True))
    if kind == "auto":
        kind = "local" if (address is None and num_actors is None and (
            episodes * physics.params.max_steps <= LOCAL_MAX_STEPS or (os.cpu_count() or 1) <= 2)) else "ray"
    output = cfg.get("output", "results")
    if not isinstance(output, str) or not output:
        raise ConfigError(f"output must be a directory path, got {output!r}")
    root = Path(output).expanduser()
    _check_writable(root)
    run_id = runmeta.new_run_id()
    run_dir = root / experiment / run_id
    h = config_hash(cfg) if config_hash is not None else ""
    return Prepared(cfg=cfg, overrides=list(overrides), physics=physics, policy=policy, config_hash=h,
                    run_id=run_id, run_dir=run_dir, staging=staging_path(run_dir), episodes=episodes, seed=seed,
                    experiment=experiment, rotate_size=rotate_size, parquet=parquet, engine=kind,
                    num_actors=num_actors, address=address,
                    shard_episodes=shard_size(physics.params.max_steps, shard_eps), window=window,
                    headroom=headroom, threads=threads)


def _check_writable(root: Path) -> None:
    p = root
    while not p.exists():
        if p.parent == p:
            break
        p = p.parent
    if not p.is_dir():
        raise ConfigError(f"output {str(root)!r} is not a directory ({str(p)!r} is a file)")
    if not os.access(p, os.W_OK | os.X_OK):
        raise ConfigError(f"output directory {str(p)!r} is not writable")


def _job(p: Prepared, rotate: bool, field_ref=None) -> Job:
    return Job(env=p.physics.params, policy=p.policy, run_id=p.run_id, base_seed=p.seed, parquet=p.parquet,
               rotate=rotate, field_ref=field_ref)


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


def local_threads(requested: int | None) -> int:
    """In-process worker threads: ``requested``, else the usable CPUs (at most 4: the GIL-held
    share of a shard, ~12%, caps what more threads can add; only 2 were measured)."""
    if requested:
        return requested
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 4))


def _run_local(p: Prepared, shards, sink: RunSink, progress: _Progress) -> dict:
    """Shards on worker threads (the kernels, the JSON assembler, isal and polars release the
    GIL), written in shard order by this thread.

    Memory is bounded by shard *slots*, not by a window alone: a worker takes a slot before it
    runs a shard, and the slot comes back only once the sink is done with the shard's records
    (Parquet is written on a background thread). So at most ``threads + 2`` shards' records exist
    at any time, however long the run, and a Parquet-bound run does not pile up results.
    """
    n = max(1, min(p.threads, len(shards)))
    job = _job(p, p.rotate_size is not None)
    free = queue.SimpleQueue()
    for _ in range(n):
        free.put(ShardRunner(job, threads=1, physics=p.physics))
    slots = threading.Semaphore(n + 2)
    stop = threading.Event()
    busy = 0.0

    def run(shard):
        while not slots.acquire(timeout=0.1):
            if stop.is_set():
                raise CaptureError("cancelled")
        runner = free.get()
        try:
            return runner.run(shard)
        except BaseException:
            slots.release()
            raise
        finally:
            free.put(runner)

    t_start = time.perf_counter()
    todo = iter(shards)
    pending: collections.deque = collections.deque()
    with ThreadPoolExecutor(n, thread_name_prefix="shard") as pool:
        try:
            for shard in itertools.islice(todo, n * p.window):
                pending.append(pool.submit(run, shard))
            while pending:
                res = pending.popleft().result()
                for shard in itertools.islice(todo, 1):
                    pending.append(pool.submit(run, shard))
                busy += res.seconds
                sink.append(res, on_written=slots.release)
                progress.update(res.shard.episodes, res.steps)
                del res  # the slot's records must not outlive the sink's use of them
        finally:  # interrupted or failed: drop queued shards, wait for the running ones
            stop.set()
            for f in pending:
                f.cancel()
    wall = time.perf_counter() - t_start
    return {"kind": "local", "actors": 1, "threads": n, "nodes": 1, "actor_busy_s": busy,
            "actor_utilization": busy / (n * wall) if wall > 0 else None}


def _placement(n: int) -> list:
    """Node ids for ``n`` actors: round-robin over the alive nodes, at most one per CPU of each
    (SPREAD alone is best-effort and may stack actors on one node); None beyond the CPUs."""
    import ray

    free = {node["NodeID"]: int(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node.get("Alive")}
    out = []
    while len(out) < n and any(v > 0 for v in free.values()):
        for node in sorted(free):
            if free[node] > 0 and len(out) < n:
                out.append(node)
                free[node] -= 1
    return out + [None] * (n - len(out))


def _strategy(node):
    """Soft affinity: a restarted actor whose node died goes to any live node."""
    if node is None:
        return "SPREAD"
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id=node, soft=True)


class RayPool:
    """Long-lived ShardRunner actors (one CPU each) on the connected Ray instance or cluster."""

    def __init__(self, job: Job, num_actors: int | None, headroom: int | None = None):
        import ray

        cpus = int(ray.cluster_resources().get("CPU", 1))
        if headroom is None:  # a restarted actor needs a free CPU once a node is gone
            headroom = 1 if sum(1 for n in ray.nodes() if n.get("Alive")) > 1 else 0
        self.n = max(1, num_actors or cpus - headroom)
        remote = ray.remote(ShardRunner)
        # No runtime_env: actors start on Ray's prestarted workers; ShardRunner sets its own
        # Numba and polars thread counts.
        self.actors = [remote.options(num_cpus=1, max_restarts=-1, max_task_retries=0,
                                      scheduling_strategy=_strategy(node)).remote(job, 1)
                       for node in _placement(self.n)]

    def kill(self):
        import ray

        for a in self.actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception:
                pass


def _run_ray(p: Prepared, shards, sink: RunSink, progress: _Progress, pool: RayPool | None = None) -> dict:
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    try:
        from ray.exceptions import ObjectLostError
    except ImportError:  # pragma: no cover
        ObjectLostError = RayActorError
    own_pool = pool is None
    if own_pool:
        field_ref = None
        if p.physics.params.plume == "movie":
            field_ref = ray.put(p.physics.field)
        pool = RayPool(_job(p, p.rotate_size is not None, field_ref), p.num_actors, p.headroom)
    queue = collections.deque(shards)
    inflight: dict = {}  # ref -> (shard, actor index)
    load = [0] * pool.n
    alive = [True] * pool.n
    pings: dict = {}  # ping ref -> actor index
    buffered: dict = {}
    limit = pool.n * p.window
    nodes = set()
    retries = 0
    actor_s = 0.0
    t_start = time.perf_counter()
    try:
        while queue or inflight or buffered:
            # Fill the window: least-loaded live actor, bounded by in flight + buffered results.
            while queue and len(inflight) + len(buffered) < limit:
                cands = [i for i in range(pool.n) if alive[i] and load[i] < p.window]
                if not cands:
                    break
                i = min(cands, key=lambda j: load[j])
                shard = queue.popleft()
                inflight[pool.actors[i].run.remote(shard)] = (shard, i)
                load[i] += 1
            waitable = list(inflight) + list(pings)
            if not waitable:
                if buffered and sink.next_shard not in buffered:
                    raise CaptureError("internal: shard results missing from the reorder buffer")
            else:
                ready, _ = ray.wait(waitable, num_returns=1, timeout=1.0)
                for ref in ready:
                    if ref in pings:
                        i = pings.pop(ref)
                        try:
                            ray.get(ref)
                            alive[i] = True
                        except (RayActorError, RayTaskError, ObjectLostError):
                            pings[pool.actors[i].ping.remote()] = i
                        continue
                    shard, i = inflight.pop(ref)
                    load[i] -= 1
                    try:
                        res = ray.get(ref)
                    except (RayActorError, ObjectLostError) as exc:
                        # The actor (or its node) died: discard the shard's partial work, re-queue it
                        # first, and use the actor again once it answers (Ray restarts it).
                        retries += 1
                        if retries > 10 * len(shards) + 10:
                            raise CaptureError(f"giving up after {retries} shard failures: {exc}") from exc
                        queue.appendleft(shard)
                        if alive[i]:
                            alive[i] = False
                            pings[pool.actors[i].ping.remote()] = i
                        continue
                    except RayTaskError as exc:
                        raise CaptureError(f"shard {shard.index} failed: {exc}") from exc
                    nodes.add(res.node)
                    actor_s += res.seconds
                    buffered[shard.index] = res
            while sink.next_shard in buffered:
                res = buffered.pop(sink.next_shard)
                sink.append(res)
                progress.update(res.shard.episodes, res.steps)
    finally:
        if own_pool:
            pool.kill()
    wall = time.perf_counter() - t_start
    return {"kind": "ray", "actors": pool.n, "nodes": len(nodes), "shard_retries": retries,
            "actor_busy_s": actor_s, "actor_utilization": actor_s / (pool.n * wall) if wall > 0 else None}


def _ray_init(address: str | None):
    """Connect to ``address`` (or RAY_ADDRESS) or start a fresh local instance. Returns True if we started it."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=True,
                  logging_level="ERROR")
    if address:
        ray.init(address=address, **{k: v for k, v in kwargs.items() if k != "include_dashboard"})
    else:
        # A bounded object store: in-flight shard results need ~100 MB; a larger store only lets
        # every process map (and count in its RSS) more shared pages.
        mb = int(os.environ.get("PLUME_CAPTURE_OBJECT_STORE_MB", "512"))
        ray.init(address="local", object_store_memory=mb << 20, **kwargs)
    return True


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


def _finalize(p: Prepared, sink: RunSink, execution: dict, wall: float) -> None:
    files = sink.close()
    sha, dirty = runmeta.git_info(os.getcwd())
    steps = sink.steps_written
    extra = {
        "status": "complete",
        "env": p.physics.effective(),
        "policy": {"name": p.policy.name, "threshold": p.policy.threshold,
                   "persistence": p.policy.persistence, "eps": p.policy.eps},
        "config": p.cfg,
        "overrides": p.overrides,
        "counts": {"steps": steps, "episodes": sink.episodes_written},
        "files": files,
        "engine": {**execution, "shard_episodes": p.shard_episodes, "shards": sink.next_shard,
                   "window": p.window, "versions": _versions()},
        "timing": {"wall_s": wall, "steps_per_s": steps / wall if wall > 0 else None},
        "git_dirty": dirty,
        "rotate_size": p.rotate_size,
    }
    doc = runmeta.build_run_json(
        run_id=p.run_id, experiment=p.experiment, start_time=p.start_time,
        effective_env=p.physics.effective(), base_seed=p.seed, episodes=p.episodes,
        package_version=__version__, config_hash=p.config_hash, git_sha=sha, system=runmeta.system_info(),
        extra=extra)
    runmeta.write_json_atomic(p.staging / "run.json", doc)
    # The rename is the commit point. Until then the journal and manifest stay, so a finalizer that
    # fails leaves a resumable run; a complete-looking run.json never stays behind in the staging dir.
    try:
        publish(p.staging, p.run_dir)
    except BaseException:
        (p.staging / "run.json").unlink(missing_ok=True)
        raise
    drop_bookkeeping(p.run_dir)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _execute(p: Prepared, progress_enabled: bool, pool: RayPool | None = None,
             checkpoint: dict | None = None, resuming: bool = False) -> CaptureResult:
    t0 = time.perf_counter()
    if not resuming:
        p.run_dir.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(p.run_dir):  # never run into (or later rename onto) an existing run
            raise CaptureError(f"run directory {p.run_dir} already exists")
        try:
            os.mkdir(p.staging)
        except FileExistsError as exc:
            raise CaptureError(f"staging directory {p.staging} already exists") from exc
        runmeta.write_json_atomic(p.staging / MANIFEST, {
            "run_id": p.run_id, "config_hash": p.config_hash, "config": p.cfg, "overrides": p.overrides,
            "start_time": p.start_time, "env": p.physics.effective(), "shard_episodes": p.shard_episodes})
    else:
        for name in ("steps.parquet", "episodes.parquet", "run.json", "run.json.tmp"):
            (p.staging / name).unlink(missing_ok=True)
    sink = RunSink(p.staging, rotate_size=p.rotate_size, parquet=p.parquet, run_id=p.run_id,
                   config_hash=p.config_hash, copy_parquet_input=p.engine != "local")
    shards = plan(p.episodes, p.shard_episodes)
    done = 0
    if resuming:
        from plume_capture.capture.resume import reopen, rebuild_parquet

        reopen(sink.steps, (checkpoint or {}).get("steps_files", []))
        reopen(sink.episodes, (checkpoint or {}).get("episodes_files", []))
        if checkpoint:
            done = checkpoint["shard"] + 1
            sink.next_shard = done
            sink.steps_written = checkpoint["steps"]
            sink.episodes_written = checkpoint["episodes"]
        if p.parquet:
            rebuild_parquet(sink)
    progress = _Progress(progress_enabled, p.episodes, p.experiment)
    progress.update(sink.episodes_written, 0)
    try:
        if p.engine == "local":
            tiny = p.episodes * p.physics.params.max_steps <= INTERPRET_MAX_STEPS
            with _jit.interpreting() if tiny else contextlib.nullcontext():
                execution = _run_local(p, shards[done:], sink, progress)
        else:
            execution = _run_ray(p, shards[done:], sink, progress, pool)
        wall = time.perf_counter() - t0
        execution["resumed_from_shard"] = done if resuming else None
        _finalize(p, sink, execution, wall)
    except BaseException as exc:
        sink.abort()
        if p.staging.is_dir():
            try:
                exc.staging = p.staging  # the CLI tells the operator what to --resume
            except AttributeError:  # pragma: no cover
                pass
        raise
    finally:
        progress.close()
    return CaptureResult(run_dir=p.run_dir, run_id=p.run_id, episodes=p.episodes, steps=sink.steps_written,
                         wall_s=time.perf_counter() - t0, config_hash=p.config_hash, engine=p.engine)


def execute_resumed(p: Prepared, progress: bool, checkpoint: dict | None) -> CaptureResult:
    started = False
    old = signal.getsignal(signal.SIGTERM)
    in_main = _is_main_thread()
    if in_main:  # SIGTERM stops a resumed run like SIGINT (exit 130, still resumable)
        signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        if p.engine == "ray":
            started = _ray_init(p.address)
            if in_main:  # ray.init installs its own SIGTERM handlers (exit 15)
                signal.signal(signal.SIGTERM, _raise_interrupt)
        return _execute(p, progress, checkpoint=checkpoint, resuming=True)
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, old)
        if started:
            import ray

            ray.shutdown()


def capture(cfg: dict, *, overrides=(), progress: bool = False, resume: str | None = None) -> CaptureResult:
    """Run the capture described by the resolved config ``cfg``; returns where it was written.

    Raises ConfigError for bad input (nothing is written), KeyboardInterrupt when interrupted (the
    staging directory stays, visibly incomplete), CaptureError for internal failures.
    """
    if resume is not None:
        from plume_capture.capture.resume import resume_run

        return resume_run(resume, cfg, overrides=overrides, progress=progress)
    return capture_many([cfg], overrides_list=[overrides], progress=progress)[0]


def capture_many(cfgs, *, overrides_list=None, progress: bool = False) -> list[CaptureResult]:
    """Run several captures (a sweep) one after another on one Ray instance/cluster."""
    overrides_list = overrides_list or [()] * len(cfgs)
    prepared = [prepare(c, o) for c, o in zip(cfgs, overrides_list)]  # all validated before any runs
    started = False
    old = signal.getsignal(signal.SIGTERM)
    in_main = _is_main_thread()
    if in_main:
        signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        if any(p.engine == "ray" for p in prepared):
            started = _ray_init(next((p.address for p in prepared if p.address), None))
            if in_main:  # ray.init installs its own SIGTERM handlers (exit 15)
                signal.signal(signal.SIGTERM, _raise_interrupt)
        return [_execute(p, progress) for p in prepared]
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, old)
        if started:
            import ray

            ray.shutdown()


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
