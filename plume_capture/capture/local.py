"""The in-process backend: shards on worker threads, written in shard order by the calling thread."""
from __future__ import annotations

import collections
import itertools
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from plume_capture.sim.runner import ShardRunner
from plume_capture.errors import CaptureError


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


def run_local(work, progress, on_done=None) -> list[dict]:
    """Shards of one or more runs on one set of worker threads (the kernels, the JSON assembler,
    isal and polars release the GIL), each run's shards written in its order by this thread.

    ``work``: ``[(prepared, shards, sink), ...]``; the shards of all runs go through one window in
    run order, so a sweep of small runs keeps every thread busy. ``on_done(i, execution)`` is
    called as soon as run ``i``'s last shard is written (it can be committed while later runs go
    on). Returns each run's execution record.

    Memory is bounded by shard *slots*, not by a window alone: a worker takes a slot before it
    runs a shard, and the slot comes back only once the sink is done with the shard's records
    (Parquet is written on a background thread). So at most ``threads + 2`` shards' records exist
    at any time, however long the run, and a Parquet-bound run does not pile up results.
    """
    tasks = [(i, shard) for i, (_, shards, _) in enumerate(work) for shard in shards]
    n = max(1, min(max(p.threads for p, _, _ in work), len(tasks)))
    window = max(p.window for p, _, _ in work)
    free = [queue.SimpleQueue() for _ in work]  # idle runners of each run
    made = [0] * len(work)
    made_lock = threading.Lock()
    slots = threading.Semaphore(n + 2)
    stop = threading.Event()
    busy = [0.0] * len(work)
    left = [len(shards) for _, shards, _ in work]

    def runner_for(i):
        with made_lock:
            if free[i].empty() and made[i] < n:
                made[i] += 1
                p = work[i][0]
                try:
                    return ShardRunner(p.job(), threads=1, physics=p.physics)
                except BaseException as exc:
                    made[i] -= 1  # no runner will come back to free[i] from this one
                    if isinstance(exc, Exception) and not isinstance(exc, (OSError, MemoryError)):
                        raise CaptureError(f"a worker could not start: {type(exc).__name__}: {exc}") from exc
                    raise
        while True:  # a runner comes back when another shard is done, unless the run stopped
            try:
                return free[i].get(timeout=0.1)
            except queue.Empty:
                if stop.is_set():
                    raise CaptureError("cancelled") from None

    def run(i, shard):
        while not slots.acquire(timeout=0.1):
            if stop.is_set():
                raise CaptureError("cancelled")
        runner = None
        try:
            runner = runner_for(i)
            return runner.run(shard)
        except BaseException:
            slots.release()
            raise
        finally:
            if runner is not None:
                free[i].put(runner)

    t_start = time.perf_counter()
    starts = [None] * len(work)
    out: list = [None] * len(work)

    def finish(i):
        wall = time.perf_counter() - (starts[i] or t_start)
        out[i] = {"kind": "local", "actors": 1, "threads": n, "nodes": 1, "actor_busy_s": busy[i],
                  "actor_utilization": busy[i] / (n * wall) if wall > 0 else None,
                  "shared_with_runs": len(work) if len(work) > 1 else None,
                  "started": starts[i]}
        if on_done is not None:
            on_done(i, out[i])

    for i, shards in enumerate(s for _, s, _ in work):
        if not shards:  # nothing left to run (a resumed run whose shards were all written)
            starts[i] = time.perf_counter()
            finish(i)
    from plume_capture.io.jsonl_encode import configure_threads, load_polars_for

    configure_threads(1)  # what each runner sets (one thread each), before polars is imported
    load_polars_for(max((p.shard_episodes * p.physics.params.max_steps for p, shards, _ in work if shards), default=0))
    todo = iter(tasks)
    pending: collections.deque = collections.deque()
    with ThreadPoolExecutor(n, thread_name_prefix="shard") as pool:
        try:
            for i, shard in itertools.islice(todo, n * window):
                starts[i] = starts[i] or time.perf_counter()
                pending.append((i, pool.submit(run, i, shard)))
            while pending:
                i, fut = pending.popleft()
                res = fut.result()
                for j, shard in itertools.islice(todo, 1):
                    starts[j] = starts[j] or time.perf_counter()
                    pending.append((j, pool.submit(run, j, shard)))
                busy[i] += res.seconds
                work[i][2].append(res, on_written=slots.release)
                progress.update(res.shard.episodes, res.steps)
                del res  # the slot's records must not outlive the sink's use of them
                left[i] -= 1
                if left[i] == 0:
                    finish(i)
        finally:  # interrupted or failed: drop queued shards, wait for the running ones
            stop.set()
            for _, f in pending:
                f.cancel()
    return out
