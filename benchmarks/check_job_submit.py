"""Checks what docs/cluster.md tells a cluster user: ``ray job submit --working-dir .`` of a capture
with an absolute output path, against a head started here (``ray start --head`` at node IP
127.0.0.2, dashboard on, in its own process group, stopped by that group's id — nothing else).

    python -m benchmarks.check_job_submit [--episodes 2000]   # with an interpreter that has ray[default]

Writes ``benchmarks/results/job-submit-<date>.json``: the commands, their exit codes, the run's
status and the validator's verdict.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .suite import RESULTS

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        return s.getsockname()[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.check_job_submit")
    ap.add_argument("--episodes", type=int, default=2000)
    a = ap.parse_args(argv)
    ray_cli = [sys.executable, "-m", "ray.scripts.scripts"]  # this interpreter's Ray (needs ray[default])
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    # The job's `python` is the cluster's: here, this interpreter's environment (a real cluster's
    # nodes have plume-capture's dependencies installed, e.g. in their image).
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    port, dash = _free_port(), _free_port()
    tmp = Path(tempfile.mkdtemp(prefix="job-submit-"))
    out = tmp / "results"
    head_cmd = [*ray_cli, "start", "--head", "--block", "--node-ip-address=127.0.0.2",
                f"--port={port}", "--include-dashboard=true", "--dashboard-host=127.0.0.2",
                f"--dashboard-port={dash}", "--num-cpus=2", "--disable-usage-stats"]
    head = subprocess.Popen(head_cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    res = {"head": " ".join(head_cmd)}
    try:
        url = f"http://127.0.0.2:{dash}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.2", dash), timeout=1).close()
                break
            except OSError:
                if head.poll() is not None:
                    raise SystemExit("head exited: " + head.stderr.read().decode()[-2000:])
                time.sleep(0.5)
        time.sleep(3)  # the job agent starts after the dashboard
        submit = [*ray_cli, "job", "submit", "--address", url, "--working-dir", ".",
                  "--runtime-env-json", json.dumps({"env_vars": {"RAY_AUTH_MODE": "disabled"}}), "--",
                  "python", "-m", "plume_capture", "--quiet", "--engine", "ray", "--parquet",
                  "--output", str(out), f"episodes={a.episodes}", "env.max_steps=500"]
        t0 = time.perf_counter()
        p = subprocess.run(submit, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        res.update(submit=" ".join(submit), submit_exit=p.returncode, submit_s=time.perf_counter() - t0,
                   submit_tail=p.stdout[-1500:] + p.stderr[-1500:])
        runs = [d for d in out.glob("*/*") if not d.name.startswith(".")] if out.exists() else []
        res["runs"] = [str(r) for r in runs]
        if len(runs) == 1:
            meta = json.loads((runs[0] / "run.json").read_text())
            res["status"] = meta["extra"]["status"]
            res["engine"] = {k: meta["extra"]["engine"].get(k) for k in (
                "kind", "actors", "nodes", "layout", "shards", "shards_written_by_workers", "shards_written_by_driver")}
            from plume_capture.readback.validate import validate_run_artifacts

            res["validate_ok"] = validate_run_artifacts(runs[0])["ok"]
    finally:
        if head.poll() is None:
            os.killpg(head.pid, signal.SIGTERM)  # the group of the head we started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"job-submit-{time.strftime('%Y-%m-%d-%H%M')}.json"
    path.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps({k: v for k, v in res.items() if k != "submit_tail"}, indent=2))
    print(path)
    ok = res.get("submit_exit") == 0 and res.get("status") == "complete" and res.get("validate_ok") is True
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
