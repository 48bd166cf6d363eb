"""Side by side with the reference tool (PyPI ``plume-nav-sim`` 0.1.0, its ``plume-nav-capture``).

The reference is installed into its own virtual environment, ``benchmarks/.cache/ref-venv``
(never into ours), with its ``hydra`` extra: in 0.1.0 the flags-only path of its CLI always fails
(``max_steps`` None reaches the env, and without a config the capture wrapper dereferences
``None``), so it is driven in its config mode — ``--config-name data_capture/config`` with
overrides for the same settings. Its ``--parquet`` raises ``ValueError("Parquet export is no
longer supported in data_capture")`` after the episodes have run; that variant is timed up to the
failure and reported as failed.

Both tools run as whole processes, alternating, on the same grid, max steps, action type,
episodes and seeds (random policy). The reference draws its actions unseeded, so its step counts
vary a little; rates are steps/s over the steps actually written.

With ``large_episodes`` (the suite: 6000, ~5.8M steps) one more equal-work comparison at a size
where start-up costs no longer dominate: the reference once (~5 min) between four runs of ours.

    python -m benchmarks.reference [--episodes 40] [--repeats 3] [--grid 128x128] [--action-type oriented]
                                   [--large-episodes 6000]
"""
from __future__ import annotations

import argparse
import gzip
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .suite import CACHE, cli, load_str, loadavg, only_run_dir, run_child, summary

REF_VENV = CACHE / "ref-venv"
REF_SPEC = "plume-nav-sim[hydra]==0.1.0"


def ref_bin() -> Path:
    return REF_VENV / "bin" / "plume-nav-capture"


def ensure_reference(log=print) -> tuple[Path | None, str]:
    """The reference CLI, installing it on first use; ``(None, reason)`` when it cannot be."""
    exe = ref_bin()
    if exe.exists():
        return exe, "cached"
    try:
        if not (REF_VENV / "bin" / "python").exists():
            log(f"  creating {REF_VENV} ...")
            subprocess.run([sys.executable, "-m", "venv", str(REF_VENV)], check=True, capture_output=True,
                           text=True, timeout=300)
        log(f"  pip install {REF_SPEC} into {REF_VENV} ...")
        r = subprocess.run([str(REF_VENV / "bin" / "python"), "-m", "pip", "install", "-q", REF_SPEC],
                           capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            return None, f"pip install {REF_SPEC} failed: {r.stderr.strip()[-500:]}"
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"could not create the reference venv: {exc}"
    return (exe, "installed") if exe.exists() else (None, "the reference package has no plume-nav-capture")


def ref_args(output, episodes: int, *, grid: str, max_steps: int, action_type: str, seed: int,
             parquet: bool, experiment: str = "ref") -> list:
    w, h = grid.lower().split("x")
    args = ["--config-name", "data_capture/config", f"output={output}", f"experiment={experiment}",
            f"episodes={episodes}", f"seed={seed}", f"env.grid_size=[{w},{h}]", f"env.max_steps={max_steps}",
            f"env.action_type={action_type}"]
    return args + (["--parquet"] if parquet else [])


def our_args(output, episodes: int, *, grid: str, max_steps: int, action_type: str, seed: int,
             parquet: bool, experiment: str = "ours") -> list:
    args = ["--output", str(output), "--experiment", experiment, "--episodes", str(episodes), "--seed", str(seed),
            "--grid", grid, "--max-steps", str(max_steps), "--action-type", action_type, "--quiet"]
    return args + (["--parquet"] if parquet else [])


def _count_steps(output: Path) -> int:
    """Step records the run wrote (the reference leaves an unclosed gzip stream when it fails)."""
    n = 0
    for f in Path(output).glob("*/*/steps*.jsonl*gz"):
        try:
            with gzip.open(f, "rb") as g:
                for block in iter(lambda: g.read(1 << 20), b""):
                    n += block.count(b"\n")
        except (EOFError, OSError):
            pass
    return n


def one_run(kind: str, exe, episodes: int, *, grid, max_steps, action_type, seed, parquet) -> dict:
    out = Path(tempfile.mkdtemp(prefix=f"ref-{kind}-", dir=CACHE))
    try:
        if kind == "reference":
            argv = [str(exe), *ref_args(out, episodes, grid=grid, max_steps=max_steps, action_type=action_type,
                                        seed=seed, parquet=parquet)]
        else:
            argv = cli(*our_args(out, episodes, grid=grid, max_steps=max_steps, action_type=action_type,
                                 seed=seed, parquet=parquet))
        r = run_child(argv)
        steps = _count_steps(out)
        failure = None
        if r.rc != 0:
            lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
            failure = lines[-1] if lines else f"exit {r.rc}"
        elif kind != "reference":
            only_run_dir(out)
        return {"tool": kind, "parquet": parquet, "episodes": episodes, "steps": steps, "wall_s": r.wall_s,
                "rate": steps / r.wall_s if r.wall_s > 0 else None, "rc": r.rc, "failure": failure,
                "peak_rss_mb": r.memory.get("peak_rss_mb"), "load": [r.load_before, r.load_after]}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def side_by_side(*, episodes: int = 40, repeats: int = 3, demo_repeats: int = 5, grid: str = "128x128",
                 max_steps: int = 1000, action_type: str = "oriented", seed: int = 0, large_episodes: int = 0,
                 log=print) -> dict:
    """Alternating whole-process runs of the reference and ours, with and without ``--parquet``,
    and the reference's cost model for :func:`extrapolate`: its fixed cost is the whole-process
    time of the runbook's 8x8 demo (2 steps: interpreter, imports, config, env), its per-step
    rate ``steps / (wall - fixed)`` over its JSONL runs."""
    exe, how = ensure_reference(log)
    if exe is None:
        log(f"  reference skipped: {how}")
        return {"skipped": how}
    common = dict(grid=grid, max_steps=max_steps, action_type=action_type, seed=seed)
    runs = []
    load0 = loadavg()
    for k in range(repeats):
        for parquet in (False, True):
            for kind in (("reference", "ours") if k % 2 == 0 else ("ours", "reference")):
                r = one_run(kind, exe, episodes, parquet=parquet, **common)
                runs.append(r)
                log(f"    {kind:9s} {'+parquet' if parquet else 'jsonl   '} {r['steps']:>7,} steps "
                    f"{r['wall_s']:6.2f} s = {r['rate'] or 0:>12,.0f} steps/s"
                    f"{'  FAILED: ' + r['failure'] if r['failure'] else ''}  load {load_str(*r['load'])}")
    large = None
    if large_episodes:
        large = large_run(exe, large_episodes, common, log)
    demo = demo_latency(exe, demo_repeats)
    log(f"    reference 8x8 demo: {demo['median']:.2f} s (min {demo['min']:.2f}, max {demo['max']:.2f})"
        if demo["median"] is not None else "    reference 8x8 demo failed")
    res = {"settings": {"episodes": episodes, **common, "policy": "random", "reference": REF_SPEC},
           "runs": runs, "demo_latency_s": demo, "large": large, "load": [load0, loadavg()]}
    for parquet in (False, True):
        key = "parquet" if parquet else "jsonl"
        ref = [r for r in runs if r["tool"] == "reference" and r["parquet"] == parquet]
        ours = [r for r in runs if r["tool"] == "ours" and r["parquet"] == parquet]
        res[key] = {"reference_rate": summary(r["rate"] for r in ref),
                    "reference_failed": [r["failure"] for r in ref if r["rc"] != 0],
                    "ours_rate": summary(r["rate"] for r in ours if r["rc"] == 0),
                    "ours_wall_s": summary(r["wall_s"] for r in ours if r["rc"] == 0),
                    "reference_wall_s": summary(r["wall_s"] for r in ref),
                    # equal work: same settings and episodes, whole process each, paired in run order
                    "ratio_rate": summary(o["rate"] / r["rate"] for o, r in zip(ours, ref)
                                          if o["rc"] == 0 and r["rate"])}
    res["reference_model"] = cost_model(demo["median"], [(r["steps"], r["wall_s"]) for r in runs
                                                         if r["tool"] == "reference" and not r["parquet"]
                                                         and r["rc"] == 0])
    return res


def large_run(exe, episodes: int, common: dict, log=print) -> dict:
    """Equal work at a size where start-up no longer dominates: one reference run (JSON Lines; it
    cannot write Parquet) between four runs of ours, two before and two after, each with and
    without ``--parquet`` (ours vary by ~±10% from run to run here)."""
    ours = [("ours", False), ("ours", True)] * 2
    order = ours + [("reference", False)] + ours
    runs = []
    for kind, parquet in order:
        r = one_run(kind, exe, episodes, parquet=parquet, **common)
        runs.append(r)
        log(f"    large: {kind:9s} {'+parquet' if parquet else 'jsonl   '} {r['steps']:>10,} steps "
            f"{r['wall_s']:7.2f} s = {r['rate'] or 0:>12,.0f} steps/s"
            f"{'  FAILED: ' + r['failure'] if r['failure'] else ''}  load {load_str(*r['load'])}")
    ref = runs[len(ours)]
    out = {"episodes": episodes, "runs": runs, "reference_rate": ref["rate"] if ref["rc"] == 0 else None,
           "reference_wall_s": ref["wall_s"], "reference_steps": ref["steps"],
           "reference_failed": ref["failure"]}
    for key, parquet in (("jsonl", False), ("parquet", True)):
        ours = [r for r in runs if r["tool"] == "ours" and r["parquet"] == parquet and r["rc"] == 0]
        out[key] = {"ours_rate": summary(r["rate"] for r in ours), "ours_wall_s": summary(r["wall_s"] for r in ours),
                    "ours_steps": ours[0]["steps"] if ours else None,
                    # steps/s end to end, whole process each (the reference's actions are unseeded, so
                    # its step count differs slightly from ours)
                    "ratio": summary(r["rate"] / out["reference_rate"] for r in ours if out["reference_rate"])}
    return out


def cost_model(fixed_s: float | None, runs) -> dict | None:
    """``wall = fixed_s + steps / rate`` with ``rate`` the median of ``steps / (wall - fixed_s)``."""
    rates = [n / (w - fixed_s) for n, w in runs if fixed_s is not None and w > fixed_s]
    if not rates:
        return None
    s = summary(rates)
    return {"fixed_s": fixed_s, "rate": s["median"], "rate_range": [s["min"], s["max"]]}


def extrapolate(model: dict | None, steps: int) -> float | None:
    """The reference's predicted whole-process wall time for ``steps`` steps."""
    if not model:
        return None
    return max(0.0, model["fixed_s"]) + steps / model["rate"]


def demo_latency(exe, repeats: int = 5) -> dict | None:
    """The runbook's 8x8 demo through the reference (config mode, see the module docstring)."""
    if exe is None:
        return None
    walls = []
    for k in range(repeats + 1):
        out = Path(tempfile.mkdtemp(prefix="refdemo-", dir=CACHE))
        try:
            r = run_child([str(exe), "--config-name", "data_capture/config", f"output={out}", "experiment=demo",
                           "episodes=2", "seed=100", "env.grid_size=[8,8]", "env.max_steps=1000"], memory=False)
            if r.rc == 0 and k > 0:
                walls.append(r.wall_s)
        finally:
            shutil.rmtree(out, ignore_errors=True)
    return summary(walls)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--grid", default="128x128")
    ap.add_argument("--max-steps", type=int, default=1000)
    ap.add_argument("--action-type", default="oriented", choices=("discrete", "oriented", "run_tumble"))
    ap.add_argument("--large-episodes", type=int, default=0, help="also one large equal-work run (e.g. 6000)")
    a = ap.parse_args(argv)
    t = time.perf_counter()
    res = side_by_side(episodes=a.episodes, repeats=a.repeats, grid=a.grid, max_steps=a.max_steps,
                       action_type=a.action_type, large_episodes=a.large_episodes)
    if "skipped" in res:
        return 0
    for key in ("jsonl", "parquet"):
        r = res[key]
        print(f"{key}: reference {r['reference_rate']['median'] or 0:,.0f} steps/s, ours {r['ours_rate']['median']:,.0f} "
              f"steps/s, ratio {r['ratio_rate']['median'] or 0:.1f}x (equal work, whole process)"
              f"{'; reference failed: ' + r['reference_failed'][0] if r['reference_failed'] else ''}")
    if res.get("large"):
        lg = res["large"]
        for key in ("jsonl", "parquet"):
            print(f"large {key}: reference {lg['reference_rate'] or 0:,.0f} steps/s, ours "
                  f"{lg[key]['ours_rate']['median'] or 0:,.0f} steps/s, ratio {lg[key]['ratio']['median'] or 0:.0f}x")
    print(f"reference model: {res['reference_model']}; {time.perf_counter() - t:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
