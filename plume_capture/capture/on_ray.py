"""The Ray backend: the same ``ShardRunner`` as a Ray actor, and the driver's shard table.

The driver keeps a bounded window of shards in flight (``ray.wait``), a reorder buffer so results
are written in shard order, and drops each result once written. A shard whose actor dies is
re-queued on a live actor; the dead actor is restarted by Ray (``max_restarts=-1``) and used again
once it answers a ping.
"""
from __future__ import annotations

import collections
import os
import time

from plume_capture.sim.runner import Job, ShardRunner
from plume_capture.config.resolve import OBJECT_STORE_MB_DEFAULT
from plume_capture.errors import CaptureError, OperationalError


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


class RunnerHost:
    """A Ray actor (one CPU) that runs shards of any run of a sweep: a ``ShardRunner`` per run, made
    on first use (also after Ray restarted the actor), the least recently used dropped beyond a
    few (a sweep's shards arrive in run order)."""

    KEEP = 2

    def __init__(self, threads: int = 1):
        from plume_capture.io.jsonl_encode import configure_threads

        configure_threads(max(1, threads))  # before anything imports polars in this process
        self.threads = threads
        self.runners: collections.OrderedDict = collections.OrderedDict()

    def run(self, key: int, job: Job, shards: list):
        """Results of ``shards`` (consecutive shards of run ``key``), in order."""
        runner = self.runners.pop(key, None) or ShardRunner(job, self.threads)
        self.runners[key] = runner
        while len(self.runners) > self.KEEP:
            self.runners.popitem(last=False)
        return [runner.run(shard) for shard in shards]

    def ping(self) -> int:
        return os.getpid()


class RayPool:
    """Long-lived ``RunnerHost`` actors (one CPU each) on the connected Ray instance or cluster."""

    def __init__(self, num_actors: int | None, headroom: int | None = None, actor_cls=None):
        import ray

        cpus = int(ray.cluster_resources().get("CPU", 1))
        if headroom is None:  # a restarted actor needs a free CPU once a node is gone
            headroom = 1 if sum(1 for n in ray.nodes() if n.get("Alive")) > 1 else 0
        self.n = max(1, num_actors or cpus - headroom)
        remote = ray.remote(actor_cls or RunnerHost)  # another class: benchmarks of the driver alone
        # No runtime_env: actors start on Ray's prestarted workers; RunnerHost sets its own
        # Numba and polars thread counts.
        self.actors = [remote.options(num_cpus=1, max_restarts=-1, max_task_retries=0,
                                      scheduling_strategy=_strategy(node)).remote(1)
                       for node in _placement(self.n)]

    def kill(self):
        import ray

        for a in self.actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception:
                pass


GROUP_MAX = 4  # most shards per actor call


def _groups(shards: list, slots: int) -> list:
    """``shards`` cut into consecutive groups, one actor call each. Each call costs the driver ~2 ms
    of Ray's bookkeeping (its own and its threads'; ~8 ns/step with 256Ki-step shards), so a run with
    many shards per slot (actors x window) sends up to GROUP_MAX at a time; a run with few keeps one
    per call, so every actor gets work and the tail stays short. Scheduling only: the shards, their
    files and records are the same either way."""
    g = max(1, min(GROUP_MAX, len(shards) // (4 * max(1, slots))))
    return [tuple(shards[k:k + g]) for k in range(0, len(shards), g)]


def run_ray(work, progress, pool: RayPool | None = None, on_done=None) -> list[dict]:
    """Shards of one or more runs (``[(prepared, shards, sink), ...]``) on one pool of actors: one
    window over all runs' shards in run order, a reorder buffer so each run's results are written in
    its shard order, each result dropped once written. ``on_done(i, execution)`` is called as soon
    as run ``i`` is written. A shard whose actor dies is re-queued on a live actor; the dead actor
    is restarted by Ray (``max_restarts=-1``) and used again once it answers a ping."""
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    try:
        from ray.exceptions import ObjectLostError
    except ImportError:  # pragma: no cover
        ObjectLostError = RayActorError
    own_pool = pool is None
    if own_pool:
        first = work[0][0].spec.engine
        pool = RayPool(first.num_actors, first.headroom_cpus)
    # Each job goes to the object store once: pickling it into every shard call cost the driver
    # ~0.1 ms per shard.
    jobs = [ray.put(p.job(ray.put(p.physics.field) if p.physics.params.plume == "movie" else None))
            for p, _, _ in work]
    window = max(p.window for p, _, _ in work)
    todo = collections.deque((r, group) for r, (_, shards, _) in enumerate(work)
                             for group in _groups(shards, pool.n * window))
    total = len(todo)
    left = [len(shards) for _, shards, _ in work]
    inflight: dict = {}  # ref -> (run, shards, actor index)
    load = [0] * pool.n
    alive = [True] * pool.n
    pings: dict = {}  # ping ref -> actor index
    buffered: dict = {}  # (run, shard index) -> result
    # Shards in flight or waiting to be written: a window of calls per actor. (Results that carry
    # bytes — a node without the output directory — wait here while an earlier shard is late.)
    limit = pool.n * window * max((len(g) for _, g in todo), default=1)
    pending = 0  # shards in flight
    nodes = [set() for _ in work]
    retries = [0] * len(work)
    actor_s = [0.0] * len(work)
    starts = [None] * len(work)
    out: list = [None] * len(work)
    t_start = time.perf_counter()

    def finish(r):
        wall = time.perf_counter() - (starts[r] or t_start)
        out[r] = {"kind": "ray", "actors": pool.n, "nodes": len(nodes[r]), "shard_retries": retries[r],
                  "actor_busy_s": actor_s[r], "actor_utilization": actor_s[r] / (pool.n * wall) if wall > 0 else None,
                  "shared_with_runs": len(work) if len(work) > 1 else None,
                  "started": starts[r]}
        if on_done is not None:
            on_done(r, out[r])

    for r in range(len(work)):
        if left[r] == 0:  # nothing left to run (a resumed run whose shards were all written)
            finish(r)
    try:
        while todo or inflight or buffered:
            # Fill the window: least-loaded live actor, bounded by in flight + buffered results.
            while todo and pending + len(buffered) < limit:
                cands = [i for i in range(pool.n) if alive[i] and load[i] < window]
                if not cands:
                    break
                i = min(cands, key=lambda j: load[j])
                r, group = todo.popleft()
                starts[r] = starts[r] or time.perf_counter()
                inflight[pool.actors[i].run.remote(r, jobs[r], group)] = (r, group, i)
                load[i] += 1
                pending += len(group)
            waitable = list(inflight) + list(pings)
            if not waitable:
                if buffered and not any((r, work[r][2].next_shard) in buffered for r in range(len(work))):
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
                    r, group, i = inflight.pop(ref)
                    load[i] -= 1
                    pending -= len(group)
                    try:
                        results = ray.get(ref)
                    except (RayActorError, ObjectLostError) as exc:
                        # The actor (or its node) died: discard the shard's partial work, re-queue it
                        # first, and use the actor again once it answers (Ray restarts it).
                        retries[r] += 1
                        if sum(retries) > 10 * total + 10:
                            raise CaptureError(f"giving up after {sum(retries)} shard failures: {exc}") from exc
                        todo.appendleft((r, group))
                        if alive[i]:
                            alive[i] = False
                            pings[pool.actors[i].ping.remote()] = i
                        continue
                    except RayTaskError as exc:
                        if isinstance(getattr(exc, "cause", None), OSError):  # e.g. the disk is full
                            raise exc.cause from None
                        cause = getattr(exc, "cause", None)
                        why = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
                        raise CaptureError(f"shards {group[0].index}-{group[-1].index} failed: {why}") from exc
                    for res in results:
                        nodes[r].add(res.node)
                        actor_s[r] += res.seconds
                        buffered[(r, res.shard.index)] = res
                    del results
            for r, (_, _, sink) in enumerate(work):
                while (r, sink.next_shard) in buffered:
                    res = buffered.pop((r, sink.next_shard))
                    sink.append(res)
                    progress.update(res.shard.episodes, res.steps)
                    left[r] -= 1
                    if left[r] == 0:
                        finish(r)
    finally:
        if own_pool:
            pool.kill()
    return out


PROBE_TIMEOUT_S = 10.0  # how long a cluster address may take to connect, and then to answer

# Ray's GCS and its client server speak gRPC: HTTP/2, whose server answers a client's connection
# preface with a SETTINGS frame (RFC 9113 §3.4). Something that accepts TCP but is not Ray
# (or hangs) does not.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_H2_SETTINGS = 4


def probe(address: str, source: str | None) -> None:
    """Raise OperationalError unless ``host:port`` accepts a TCP connection and answers as a
    gRPC (HTTP/2) server does, each within the bound (Ray itself retries an unreachable or silent
    address for minutes, printing a log line per try)."""
    import socket

    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    where = f" (from {source})" if source else ""
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S) as conn:
            conn.sendall(_H2_PREFACE)
            head = b""
            while len(head) < 9:
                got = conn.recv(9 - len(head))
                if not got:
                    break
                head += got
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError) or isinstance(exc, socket.timeout):
            reason = f"no answer within {PROBE_TIMEOUT_S:g} s"
        raise OperationalError(f"cannot reach Ray at {address}{where}: {reason}") from None
    if len(head) < 9 or head[3] != _H2_SETTINGS:
        raise OperationalError(f"{address}{where} accepts connections but does not answer as a Ray "
                               "cluster (its GCS or client server) does") from None


def ray_init(address: str | None, source: str | None = None, object_store_mb: int | None = None):
    """Connect to ``address`` or start a fresh local instance (with an object store of
    ``object_store_mb`` MiB, default :data:`OBJECT_STORE_MB_DEFAULT`). Returns True if we started it."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=True,
                  logging_level="ERROR")
    if address:
        probe(address, source)
        try:
            ray.init(address=address, **{k: v for k, v in kwargs.items() if k != "include_dashboard"})
        except ConnectionError as exc:
            where = f" (from {source})" if source else ""
            raise OperationalError(f"cannot connect to Ray at {address}{where}: {str(exc).splitlines()[0]}") from None
    else:
        # A bounded object store: in-flight shard results need ~100 MB; a larger store only lets
        # every process map (and count in its RSS) more shared pages.
        mb = OBJECT_STORE_MB_DEFAULT if object_store_mb is None else object_store_mb
        ray.init(address="local", object_store_memory=mb << 20, **kwargs)
    return True


