"""Publishing cost (issue 15) on one large rotated run, and index correctness with many runs.

    python -m benchmarks.bench_publish --steps 50000000          # capture (cached), publish, compare
    python -m benchmarks.bench_publish --run RESULTS/exp/run-...  # an existing run instead
    python -m benchmarks.bench_publish --steps 0 --index-runs 1000

For the large run it reports the validation pass (time, M steps/s), publishing beyond validation
(copy+hash, manifest, ``dvc add``, index, git commit; per phase), ``cp -r`` + ``sha256sum`` of the
same files (before and after publishing; the ratio uses the faster), and a re-publish of the
unchanged run (sha256 comparison, no validation). For the index it captures ``--index-runs`` tiny
runs and publishes them from ``--writers`` concurrent processes (batches), then checks the index
lists every run once and equals the index rebuilt from the manifests. Results are appended to
``benchmarks/results/publish.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
RESULTS = HERE / "results" / "publish.json"
GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.org",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.org",
           "DVC_NO_ANALYTICS": "1"}


def _sh(args, cwd):
    subprocess.run(args, cwd=cwd, check=True, capture_output=True, env={**os.environ, **GIT_ENV})


def new_repo(parent: Path) -> Path:
    repo = Path(tempfile.mkdtemp(prefix="publish-repo-", dir=parent))
    _sh(["git", "init", "-q"], repo)
    _sh([sys.executable, "-m", "dvc", "init", "-q"], repo)
    _sh(["git", "add", ".dvc"], repo)
    _sh(["git", "commit", "-qm", "init"], repo)
    return repo


def big_run(steps: int, rotate_mb: int) -> Path:
    """A real capture of ~``steps`` steps (episodes of 1000 steps, JSON Lines rotated), cached."""
    from plume_capture.capture import capture
    from plume_capture.config import load_config

    out = CACHE / f"publish-{steps}-{rotate_mb}"
    done = sorted(out.glob("bench/run-*/run.json"))
    if done:
        return done[0].parent
    cfg = load_config(settings={"output": str(out), "experiment": "bench",
                                "episodes": max(1, steps // 1000), "env.max_steps": 1000,
                                "env.goal_radius": 0.0, "rotate_size": rotate_mb << 20,
                                "engine.kind": "local", "engine.quiet": True})
    t = time.perf_counter()
    res = capture(cfg)
    print(f"captured {res.steps} steps in {time.perf_counter() - t:.1f} s: {res.run_dir}",
          flush=True)
    return res.run_dir


def cp_sha(run: Path, parent: Path) -> float:
    dst = parent / "cp-baseline"
    shutil.rmtree(dst, ignore_errors=True)
    t = time.perf_counter()
    subprocess.run(f"cp -r '{run}' '{dst}' && sha256sum '{dst}'/* > /dev/null", shell=True,
                   check=True)
    dt = time.perf_counter() - t
    shutil.rmtree(dst)
    return dt


def bench_big(run: Path, work: Path) -> dict:
    from plume_capture.publish.dataset import publish_run

    os.environ.update(GIT_ENV)
    files = [p for p in run.iterdir() if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    repo = new_repo(work)
    try:
        base1 = cp_sha(run, work)
        tm: dict = {}
        t = time.perf_counter()
        res = publish_run(run, repo, timings=tm)
        total = time.perf_counter() - t
        base2 = cp_sha(run, work)
        t = time.perf_counter()
        again = publish_run(run, repo)
        republish = time.perf_counter() - t
        assert res.status == "published" and again.status == "unchanged"
        steps = res.manifest["counts"]["steps"]
        beyond = total - tm["validate_s"]
        base = min(base1, base2)
        return {"run": str(run), "files": len(files), "bytes": size, "steps": steps,
                "publish_total_s": round(total, 2), "phases_s": {k: round(v, 2) for k, v in tm.items()},
                "validate_s": round(tm["validate_s"], 2),
                "validate_M_steps_per_s": round(steps / tm["validate_s"] / 1e6, 3),
                "beyond_validation_s": round(beyond, 2),
                "cp_r_plus_sha256sum_s": [round(base1, 2), round(base2, 2)],
                "ratio_beyond_over_cp_sha": round(beyond / base, 2),
                "republish_unchanged_s": round(republish, 2)}
    finally:
        shutil.rmtree(repo)


_WRITER = """
import sys
from plume_capture.publish.dataset import publish_runs
publish_runs(sys.argv[2:], sys.argv[1])
"""


def bench_index(n: int, writers: int, work: Path) -> dict:
    from plume_capture.capture import capture
    from plume_capture.config import load_config
    from plume_capture.publish.dataset import open_repo, read_index, rebuild_index

    out = Path(tempfile.mkdtemp(prefix="index-runs-", dir=work))
    repo = new_repo(work)
    try:
        t = time.perf_counter()
        runs = []
        for i in range(n):
            cfg = load_config(settings={"output": str(out), "experiment": f"e{i % 4}",
                                        "episodes": 1, "seed": i, "env.max_steps": 5,
                                        "env.grid_size": [8, 8], "engine.kind": "local",
                                        "engine.quiet": True})
            runs.append(str(capture(cfg).run_dir))
        t_capture = time.perf_counter() - t
        t = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(repo), *runs[w::writers]],
                                  env={**os.environ, **GIT_ENV}, stderr=subprocess.PIPE, text=True)
                 for w in range(writers)]
        errs = [p.communicate()[1] for p in procs]
        if any(p.returncode for p in procs):
            raise RuntimeError("a writer failed: " + " | ".join(e for e in errs if e))
        t_publish = time.perf_counter() - t
        ds = open_repo(repo)
        idx = read_index(ds)
        ids = [e["run_id"] for e in idx["runs"]]
        t = time.perf_counter()
        rebuilt = rebuild_index(ds)
        t_rebuild = time.perf_counter() - t
        status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True,
                                text=True).stdout
        return {"runs": n, "writers": writers, "capture_s": round(t_capture, 1),
                "publish_s": round(t_publish, 1), "index_entries": len(ids),
                "index_unique": len(set(ids)) == len(ids) == n,
                "index_matches_published": sorted(ids) == sorted(Path(r).name for r in runs),
                "index_equals_rebuilt": idx == rebuilt, "rebuild_s": round(t_rebuild, 2),
                "git_clean": status == ""}
    finally:
        shutil.rmtree(repo)
        shutil.rmtree(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=50_000_000, help="0: skip the large run")
    ap.add_argument("--rotate-mb", type=int, default=128)
    ap.add_argument("--run", type=Path, help="publish this run directory instead of a capture")
    ap.add_argument("--index-runs", type=int, default=1000, help="0: skip the index check")
    ap.add_argument("--writers", type=int, default=4)
    args = ap.parse_args(argv)
    CACHE.mkdir(exist_ok=True)
    doc = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": platform.node(),
           "cpus": os.cpu_count(), "argv": sys.argv[1:],
           "note": "machine shared with other agents while measuring; figures are noisy"}
    if args.run is not None or args.steps > 0:
        run = args.run or big_run(args.steps, args.rotate_mb)
        doc["big_run"] = bench_big(run, CACHE)
        print(json.dumps(doc["big_run"], indent=2), flush=True)
    if args.index_runs > 0:
        doc["index"] = bench_index(args.index_runs, args.writers, CACHE)
        print(json.dumps(doc["index"], indent=2), flush=True)
    doc["load_avg_1m"] = os.getloadavg()[0]
    RESULTS.parent.mkdir(exist_ok=True)
    prev = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    RESULTS.write_text(json.dumps(prev + [doc], indent=2) + "\n")


if __name__ == "__main__":
    main()
