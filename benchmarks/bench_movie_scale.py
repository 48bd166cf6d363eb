"""Movies at dataset scale: driver peak RSS, each actor's RSS, object-store spill and steps/s for a
large synthetic ``.npy`` movie (default 8 GiB), in-process and on Ray actors, next to a 46 MB one.

    python -m benchmarks.bench_movie_scale [--gb 8] [--size 2048] [--episodes 200] [--max-steps 500]
                                           [--actors 2] [--dir DIR] [--keep] [--out RESULTS.json]

The movie is written block by block to ``--dir`` (local disk; removed afterwards unless ``--keep``).
Each capture runs in its own child process (``python -m benchmarks.bench_movie_scale --child``) so
its ``ru_maxrss`` is the driver's own. While it runs, the parent samples every process whose title
names ``RunnerHost`` (the Ray actors) every 0.2 s from ``/proc/PID/status``: peak ``VmRSS`` and its
parts ``RssAnon`` (private memory) and ``RssFile`` (mapped file pages: the movie, from the page
cache, shared between the processes of a node). Spill is the largest "Spilled N MiB" the raylet logged
during the run (the child's own Ray instance, object store 512 MiB as the CLI starts it).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def write_movie(path: Path, frames: int, height: int, width: int) -> float:
    """A float32 ``(frames, height, width)`` .npy of upscaled, shifted puff frames; seconds taken."""
    from plume_capture.sim.synth import puff_field

    t0 = time.perf_counter()
    base = puff_field(min(frames, 64), max(1, height // 8), max(1, width // 8), seed=0)
    with open(path, "wb") as f:
        np.lib.format.write_array_header_2_0(f, {"descr": "<f4", "fortran_order": False,
                                                 "shape": (frames, height, width)})
        for t in range(frames):
            b = base[t % len(base)]
            frame = np.repeat(np.repeat(b, height // b.shape[0] + 1, 0)[:height], width // b.shape[1] + 1, 1)[:, :width]
            f.write(np.ascontiguousarray(np.roll(frame, t // len(base), axis=0), np.float32).tobytes())
        f.flush()
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)  # as a movie on storage: not cached
    path.with_suffix(".json").write_text(json.dumps({"fps": 15.0}))
    return time.perf_counter() - t0


def child(args) -> int:
    """One capture in this process; prints a JSON line."""
    import ray

    from plume_capture.capture import capture

    cfg = {"output": args.output, "experiment": "scale", "episodes": args.episodes, "seed": 0,
           "env": {"plume": "movie", "max_steps": args.max_steps, "observation_type": "antennae"},
           "movie": {"path": args.movie, "step_policy": "wrap"},
           "engine": {"kind": args.engine, "num_actors": args.actors if args.engine == "ray" else None,
                      "quiet": True}}
    t0 = time.perf_counter()
    spilled = None
    if args.engine == "ray":
        from plume_capture.capture.on_ray import ray_init

        ray_init(None)
    res = capture(cfg)
    wall = time.perf_counter() - t0
    if args.engine == "ray":
        # The raylet logs "Spilled N MiB, ..." whenever it spills (the largest figure is the total).
        logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
        spilled = max([int(m) for f in logs.glob("raylet*.out")
                       for m in re.findall(r"Spilled (\d+) MiB", f.read_text(errors="replace"))], default=0)
        ray.shutdown()
    eng = json.loads((res.run_dir / "run.json").read_text())["extra"]["engine"]
    print(json.dumps({"engine": args.engine, "shard_retries": eng.get("shard_retries"), "steps": res.steps, "capture_wall_s": res.wall_s, "total_wall_s": wall,
                      "steps_per_s": res.steps / res.wall_s, "driver_peak_rss_mb":
                      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "spilled_mib": spilled,
                      "run_dir": str(res.run_dir)}))
    return 0


def _status(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[k] = int(v.split()[0]) / 1024
    return out


def _movie_rss(pid: int, path: str) -> float:
    """MiB of the movie file mapped and resident in process ``pid`` (/proc/PID/smaps)."""
    total, inside = 0, False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and not head[0].endswith(":"):
                inside = len(head) >= 6 and head[5] == path
            elif inside and head and head[0] == "Rss:":
                total += int(head[1])
    return total / 1024


def _cached_mb(path: Path) -> float | None:
    """MiB of ``path`` in the page cache (util-linux ``fincore``): after a run that started with
    none of it cached, what the run read of the movie."""
    try:
        out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                             capture_output=True, text=True, check=True).stdout
        return round(int(out.split()[0]) / 2**20, 1)
    except (OSError, subprocess.CalledProcessError, ValueError, IndexError):
        return None


def _actors(root: int) -> list[int]:
    """The Ray actors started under process ``root`` (the child's own Ray instance)."""
    import psutil

    pids = []
    try:
        kids = psutil.Process(root).children(recursive=True)
    except psutil.Error:
        return pids
    for p in kids:
        try:
            if any("RunnerHost" in c for c in p.cmdline()):
                pids.append(p.pid)
        except (psutil.Error, OSError):
            pass
    return pids


def measure(movie: Path, engine: str, args, out: Path) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_movie_scale", "--child", "--movie", str(movie), "--engine", engine,
           "--episodes", str(args.episodes), "--max-steps", str(args.max_steps), "--actors", str(args.actors),
           "--output", str(out)]
    peak: dict = {}
    stop = threading.Event()
    root = None

    def sample():
        nonlocal root
        while not stop.is_set():
            for pid in _actors(root):
                try:
                    s = _status(pid)
                    s["movie_rss"] = _movie_rss(pid, str(movie))
                except OSError:
                    continue
                cur = peak.setdefault(pid, {})
                for k, v in s.items():
                    cur[k] = max(cur.get(k, 0.0), v)
            time.sleep(0.2)

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    root = proc.pid
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    stdout, stderr = proc.communicate()
    stop.set()
    th.join()
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({proc.returncode}): {stderr.strip()[-2000:]}")
    row = json.loads(stdout.strip().splitlines()[-1])
    row["movie_cached_mb_after"] = _cached_mb(movie)
    shutil.rmtree(row.pop("run_dir"), ignore_errors=True)
    row["actors_peak_mb"] = [{k: round(v, 1) for k, v in p.items()} for p in peak.values()]
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--movie", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--engine", default="ray", help=argparse.SUPPRESS)
    ap.add_argument("--output", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--gb", type=float, default=8.0, help="size of the large movie (GiB)")
    ap.add_argument("--size", type=int, default=2048, help="its frame width = height")
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--max-steps", type=int, default=500)
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--engines", default="local,ray")
    ap.add_argument("--dir", default=None, help="where the movies are written (default: a temp dir)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--out", default=None, help="results JSON (default: print only)")
    args = ap.parse_args(argv)
    if args.child:
        return child(args)

    work = Path(tempfile.mkdtemp(prefix="bench-movie-scale-", dir=args.dir))
    try:
        frames = max(1, int(args.gb * 2**30 // (args.size * args.size * 4)))
        movies = {"small_46mb": (work / "small.npy", 150, 216, 406),
                  f"large_{args.gb:g}gib": (work / "large.npy", frames, args.size, args.size)}
        rows = []
        for name, (path, t, h, w) in movies.items():
            gen = write_movie(path, t, h, w)
            from plume_capture.sim.movie import describe_movie

            t0 = time.perf_counter()
            info = describe_movie(path)
            describe_s = time.perf_counter() - t0
            from plume_capture.sim.movie import open_frames

            t0 = time.perf_counter()
            open_frames(info)  # this node's first open: every value checked once (remembered per file version)
            first_open_s = time.perf_counter() - t0
            print(f"{name}: {path.stat().st_size / 2**30:.2f} GiB written in {gen:.1f} s; described (identity) "
                  f"in {describe_s * 1e3:.1f} ms; first open on this node {first_open_s:.1f} s", flush=True)
            for engine in args.engines.split(","):
                fd = os.open(path, os.O_RDONLY)  # every run starts cold: the movie is not in the page cache
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.close(fd)
                row = {"movie": name, "shape": info["shape"], "bytes": info["bytes"], "describe_s": describe_s,
                       "first_open_s": first_open_s,
                       **measure(path, engine, args, work / "runs")}
                print(json.dumps(row), flush=True)
                rows.append(row)
            if not args.keep:
                path.unlink()
        doc = {"bench": "movie_scale", "argv": sys.argv[1:], "date": time.strftime("%Y-%m-%d %H:%M"),
               "machine": {"cpus": os.cpu_count(), "mem_gib": round(os.sysconf("SC_PAGE_SIZE") *
                                                                    os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
               "rows": rows}
        if args.out:
            Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
