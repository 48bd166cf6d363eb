"""Policy benchmark: navigation policies x plume settings, captured through the engine.

    python -m benchmarks.policies [--episodes K] [--seed S] [--quick] [--no-plot] [--out DIR]

For each plume setting (grid 64/128, sigma 10/20, goal radius 2/5; max_steps 1000) and policy
(``random``, ``surge_cast``, ``temporal_derivative`` with oriented actions; ``random``,
``run_tumble_chemotaxis`` with run_tumble actions), K episodes (seeds S..S+K-1, the same for every
policy) are captured in-process with Parquet, and from the artifacts:

* success rate = share of episodes that terminated (reached the goal radius); 95% Wilson interval;
* steps to the source: mean and median ``total_steps`` of the successful episodes;
* path efficiency of a successful episode = shortest distance from the start to the goal circle
  (``max(0, |start - goal| - radius)``) / length of the path walked (Euclidean, start included;
  the start is ``kernels.start.start_position(seed, W, H)``); episodes that start inside the
  radius (shortest distance 0) are left out;
* mean episode reward;
* diagnostic: distinct move directions per episode (a policy that can only ever use two
  headings shows max 2).

Means and medians get 95% percentile-bootstrap intervals (2000 resamples, fixed seed). Writes
``benchmarks/results/policies-<date>.{json,md,png}`` (PNG needs matplotlib, the ``plot`` extra).
Check: on the default plume (64x64, sigma 20, radius 5), surge_cast and temporal_derivative must
beat random in success rate with non-overlapping intervals.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
CACHE = Path(__file__).resolve().parent / ".cache"
Z95 = 1.959963984540054
POLICIES = {"oriented": ("random", "surge_cast", "temporal_derivative"),
            "run_tumble": ("random", "run_tumble_chemotaxis")}
PLUMES = tuple({"grid": g, "sigma": s, "goal_radius": r} for g in (64, 128) for s in (20.0, 10.0) for r in (5.0, 2.0))
DEFAULT_PLUME = {"grid": 64, "sigma": 20.0, "goal_radius": 5.0}


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, mid - half), min(1.0, mid + half))


def bootstrap(x, stat=np.mean, b: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    """95% percentile-bootstrap interval of ``stat`` (None for fewer than 2 values)."""
    x = np.asarray(x, dtype=np.float64)
    if x.size < 2:
        return None
    idx = np.random.default_rng(seed).integers(0, x.size, (b, x.size))
    vals = stat(x[idx], axis=1)
    return (float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5)))


def _estimate(x, stat) -> dict:
    x = np.asarray(x, dtype=np.float64)
    return {"value": float(stat(x)) if x.size else None, "ci": bootstrap(x, stat), "n": int(x.size)}


def episode_metrics(run_dir: Path) -> dict:
    """Per-episode arrays from a run directory's Parquet files and run.json."""
    import pyarrow.parquet as pq

    from plume_capture.kernels.start import start_position

    meta = json.loads((Path(run_dir) / "run.json").read_text())
    env = meta["extra"]["env"]
    W, H = env["grid_size"]
    gx, gy = env["goal_location"]
    radius = float(env["goal_radius"])
    base = int(meta["base_seed"])
    eps = pq.read_table(Path(run_dir) / "episodes.parquet",
                        columns=["episode_id", "terminated", "total_steps", "total_reward"])
    k = eps.num_rows
    steps = pq.read_table(Path(run_dir) / "steps.parquet", columns=["seed", "agent_position"])
    ep = steps.column("seed").to_numpy() - base
    pos = steps.column("agent_position").combine_chunks()
    x = pos.field("x").to_numpy().astype(np.float64)
    y = pos.field("y").to_numpy().astype(np.float64)
    if env.get("start_location"):
        sx = np.full(k, float(env["start_location"][0]))
        sy = np.full(k, float(env["start_location"][1]))
    else:
        starts = np.array([start_position(base + i, W, H) for i in range(k)], dtype=np.float64).reshape(k, 2)
        sx, sy = starts[:, 0], starts[:, 1]
    first = np.ones(ep.size, bool)
    first[1:] = ep[1:] != ep[:-1]
    px, py = np.empty_like(x), np.empty_like(y)
    px[1:], py[1:] = x[:-1], y[:-1]
    px[first], py[first] = sx[ep[first]], sy[ep[first]]
    dx, dy = x - px, y - py
    d = np.hypot(dx, dy)
    path = np.bincount(ep, weights=d, minlength=k)
    moved = d > 0
    code = ep[moved] * 9 + (np.sign(dx[moved]) + 1).astype(np.int64) * 3 + (np.sign(dy[moved]) + 1).astype(np.int64)
    directions = np.bincount(np.unique(code) // 9, minlength=k)
    shortest = np.maximum(0.0, np.hypot(sx - gx, sy - gy) - radius)
    success = eps.column("terminated").to_numpy(zero_copy_only=False).astype(bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        eff = np.where(success & (shortest > 0) & (path > 0), shortest / path, np.nan)
    return {"success": success, "steps": eps.column("total_steps").to_numpy(),
            "reward": eps.column("total_reward").to_numpy(), "efficiency": eff, "path": path,
            "shortest": shortest, "directions": directions, "steps_rows": int(ep.size)}


def summarize(m: dict) -> dict:
    succ = m["success"]
    n, k = int(succ.size), int(succ.sum())
    eff = m["efficiency"][~np.isnan(m["efficiency"])]
    return {"episodes": n, "successes": k, "success_rate": k / n if n else None, "success_ci": wilson(k, n),
            "steps_mean": _estimate(m["steps"][succ], np.mean), "steps_median": _estimate(m["steps"][succ], np.median),
            "efficiency": _estimate(eff, np.mean), "reward": _estimate(m["reward"], np.mean),
            "directions_mean": float(m["directions"].mean()) if n else None,
            "directions_max": int(m["directions"].max()) if n else None,
            "started_in_radius": int((m["shortest"] == 0).sum())}


def run_one(action_type: str, policy: str, plume: dict, episodes: int, seed: int, max_steps: int,
            work: Path) -> dict:
    from plume_capture.capture import capture
    from plume_capture.config import complete_config

    g = plume["grid"]
    cfg = complete_config({
        "output": str(work), "experiment": f"{policy}-{action_type}", "episodes": episodes, "seed": seed,
        "parquet": True,
        "env": {"grid_size": [g, g], "sigma": plume["sigma"], "goal_radius": plume["goal_radius"],
                "max_steps": max_steps, "action_type": action_type},
        "policy": {"name": policy}, "engine": {"kind": "local", "quiet": True}})
    t = time.perf_counter()
    res = capture(cfg)
    wall = time.perf_counter() - t
    try:
        s = summarize(episode_metrics(res.run_dir))
    finally:
        shutil.rmtree(res.run_dir, ignore_errors=True)
    return {"action_type": action_type, "policy": policy, **plume, "max_steps": max_steps, "seed": seed,
            "capture_s": wall, "steps_captured": res.steps, **s}


def bench(episodes: int = 500, *, seed: int = 0, plumes=PLUMES, max_steps: int = 1000, log=print) -> list[dict]:
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="policies-", dir=CACHE))
    rows = []
    try:
        for plume in plumes:
            for action_type, pols in POLICIES.items():
                for pol in pols:
                    r = run_one(action_type, pol, plume, episodes, seed, max_steps, work)
                    rows.append(r)
                    log(_line(r))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def _ci(ci, fmt="{:.0f}") -> str:
    return "" if not ci else f" [{fmt.format(ci[0])}, {fmt.format(ci[1])}]"


def _val(e: dict, fmt="{:.0f}") -> str:
    return "–" if e["value"] is None else fmt.format(e["value"]) + _ci(e["ci"], fmt)


def _line(r: dict) -> str:
    lo, hi = r["success_ci"]
    return (f"  {r['grid']:3d}x{r['grid']:<3d} σ={r['sigma']:<4g} r={r['goal_radius']:<3g} {r['action_type']:10s} "
            f"{r['policy']:22s} success {r['success_rate'] * 100:5.1f}% [{lo * 100:4.1f}, {hi * 100:4.1f}]  "
            f"steps {_val(r['steps_median'])} (median)  eff {_val(r['efficiency'], '{:.2f}')}  "
            f"reward {_val(r['reward'], '{:.2f}')}  dirs ≤{r['directions_max']}")


def table(rows: list[dict]) -> str:
    out = ["| grid | σ | radius | actions | policy | success (95% CI) | steps to source: mean | median | "
           "path efficiency | mean reward | move directions (mean / max) |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lo, hi = r["success_ci"]
        out.append(f"| {r['grid']}x{r['grid']} | {r['sigma']:g} | {r['goal_radius']:g} | {r['action_type']} | "
                   f"{r['policy']} | {r['success_rate'] * 100:.1f}% [{lo * 100:.1f}, {hi * 100:.1f}] "
                   f"({r['successes']}/{r['episodes']}) | {_val(r['steps_mean'])} | {_val(r['steps_median'])} | "
                   f"{_val(r['efficiency'], '{:.2f}')} | {_val(r['reward'], '{:.2f}')} | "
                   f"{r['directions_mean']:.2f} / {r['directions_max']} |")
    return "\n".join(out)


def check_default(rows: list[dict]) -> list[dict]:
    """surge_cast and temporal_derivative vs random on the default plume (non-overlapping CIs)."""
    d = [r for r in rows if r["action_type"] == "oriented" and all(r[k] == v for k, v in DEFAULT_PLUME.items())]
    rnd = next((r for r in d if r["policy"] == "random"), None)
    out = []
    for r in d:
        if r["policy"] == "random" or rnd is None:
            continue
        ok = r["success_ci"][0] > rnd["success_ci"][1]
        out.append({"policy": r["policy"], "ok": ok, "policy_ci": r["success_ci"], "random_ci": rnd["success_ci"],
                    "policy_rate": r["success_rate"], "random_rate": rnd["success_rate"]})
    return out


def plot(rows: list[dict], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    settings = []
    for r in rows:
        key = (r["grid"], r["sigma"], r["goal_radius"])
        if key not in settings:
            settings.append(key)
    pols = [(a, p) for a, ps in POLICIES.items() for p in ps]
    fig, axes = plt.subplots(3, 1, figsize=(13, 11), sharex=True)
    width = 0.8 / len(pols)
    xs = np.arange(len(settings))
    panels = (("success rate", lambda r: (r["success_rate"], r["success_ci"])),
              ("steps to source (median, successes)", lambda r: (r["steps_median"]["value"], r["steps_median"]["ci"])),
              ("path efficiency (successes)", lambda r: (r["efficiency"]["value"], r["efficiency"]["ci"])))
    for ax, (title, get) in zip(axes, panels):
        for j, (a, p) in enumerate(pols):
            vals, los, his = [], [], []
            for s in settings:
                r = next((r for r in rows if (r["grid"], r["sigma"], r["goal_radius"]) == s
                          and r["action_type"] == a and r["policy"] == p), None)
                v, ci = get(r) if r else (None, None)
                v = np.nan if v is None else v
                vals.append(v)
                los.append(0 if ci is None or np.isnan(v) else max(0.0, v - ci[0]))
                his.append(0 if ci is None or np.isnan(v) else max(0.0, ci[1] - v))
            ax.bar(xs + (j - (len(pols) - 1) / 2) * width, vals, width, yerr=[los, his], capsize=2,
                   label=f"{p} ({a})")
        ax.set_ylabel(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylim(0, 1.05)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, ncol=len(pols), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0.965))
    axes[-1].set_xticks(xs, [f"{g}x{g}\nσ={s:g} r={r:g}" for g, s, r in settings], fontsize=8)
    k = rows[0]["episodes"] if rows else 0
    fig.suptitle(f"plume-capture policy benchmark: {k} episodes per cell, max_steps {rows[0]['max_steps'] if rows else ''}, "
                 f"95% intervals (Wilson / bootstrap)")
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.policies", description=__doc__.split("\n\n")[0])
    ap.add_argument("--episodes", type=int, default=500, help="episodes per policy and plume (default 500)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-steps", type=int, default=1000)
    ap.add_argument("--quick", action="store_true", help="only the default plume")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    t = time.perf_counter()
    plumes = (DEFAULT_PLUME,) if a.quick else PLUMES
    print(f"policy benchmark: {a.episodes} episodes per cell, seeds {a.seed}..{a.seed + a.episodes - 1}, "
          f"max_steps {a.max_steps}")
    rows = bench(a.episodes, seed=a.seed, plumes=plumes, max_steps=a.max_steps)
    checks = check_default(rows)
    date = dt.datetime.now().strftime("%Y-%m-%d")
    a.out.mkdir(parents=True, exist_ok=True)
    md = [f"## Policy benchmark {date}", "", f"`python -m benchmarks.policies --episodes {a.episodes}"
          f"{' --quick' if a.quick else ''}` · seeds {a.seed}..{a.seed + a.episodes - 1} · max_steps {a.max_steps}",
          "", table(rows), ""]
    for c in checks:
        md.append(f"* default plume: {c['policy']} {c['policy_rate'] * 100:.1f}% "
                  f"[{c['policy_ci'][0] * 100:.1f}, {c['policy_ci'][1] * 100:.1f}] vs random "
                  f"{c['random_rate'] * 100:.1f}% [{c['random_ci'][0] * 100:.1f}, {c['random_ci'][1] * 100:.1f}]: "
                  f"{'beats random (intervals do not overlap)' if c['ok'] else 'does NOT beat random with non-overlapping intervals'}")
    text = "\n".join(md) + "\n"
    print()
    print(text)
    (a.out / f"policies-{date}.md").write_text(text)
    (a.out / f"policies-{date}.json").write_text(json.dumps({"date": date, "episodes": a.episodes, "seed": a.seed,
                                                             "rows": rows, "checks": checks}, indent=1) + "\n")
    if not a.no_plot:
        p = plot(rows, a.out / f"policies-{date}.png")
        print(f"plot: {p}" if p else "plot skipped: matplotlib is not installed (pip install -e '.[plot]' in the checkout)")
    print(f"done in {time.perf_counter() - t:.0f} s")
    return 0 if all(c["ok"] for c in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
