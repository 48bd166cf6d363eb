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


def run_local(p, shards, sink, progress) -> dict:
    """Shards on worker threads (the kernels, the JSON assembler, isal and polars release the
    GIL), written in shard order by this thread.

    Memory is bounded by shard *slots*, not by a window alone: a worker takes a slot before it
    runs a shard, and the slot comes back only once the sink is done with the shard's records
    (Parquet is written on a background thread). So at most ``threads + 2`` shards' records exist
    at any time, however long the run, and a Parquet-bound run does not pile up results.
    """
    n = max(1, min(p.threads, len(shards)))
    job = p.job()
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


