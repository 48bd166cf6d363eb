"""The report's figures, drawn with matplotlib (Agg) and returned as PNG bytes."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plain_text():
    """A context in which every label is drawn as typed: a run or experiment name holding ``$…$``
    is text, not matplotlib math."""
    return matplotlib.rc_context({"text.parse_math": False})
import numpy as np  # noqa: E402
from matplotlib.patches import Circle  # noqa: E402

REACHED, MISSED = "#1b9e77", "#d95f02"


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


#: most trajectory points drawn per run: long random walks beyond it would hide the field
POINT_BUDGET = 20000


def drawn(trajs, budget: int = POINT_BUDGET) -> tuple[list, float]:
    """The sampled trajectories to draw (the first ones, in sample order, within ``budget`` points,
    at least 10) and their line transparency, lower when the paths are long."""
    out, points = [], 0
    for t in trajs:
        if len(out) >= 10 and points + len(t.x) > budget:
            break
        out.append(t)
        points += len(t.x)
    mean_len = points / len(out) if out else 1.0
    return out, float(np.clip(6.0 / np.sqrt(max(mean_len, 1.0)), 0.1, 0.55))


def trajectories(run, title: str | None = None) -> bytes:
    """Field heat map with the sampled trajectories (start, path, end) and the goal radius."""
    w, h = run.grid
    fig, ax = plt.subplots(figsize=(5.2, 5.2 * h / max(w, 1) if w else 5.2), layout="constrained")
    if run.field is not None:
        im = ax.imshow(run.field, origin="lower", cmap="viridis", extent=(-0.5, w - 0.5, -0.5, h - 0.5))
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="concentration")
    shown, alpha = drawn(run.trajectories)
    for t in shown:
        c = REACHED if t.reached_goal else MISSED
        ax.plot(t.x, t.y, color=c, lw=0.7, alpha=alpha)
        ax.plot(t.x[:1], t.y[:1], "o", color=c, ms=2.5, alpha=0.8)
        ax.plot(t.x[-1:], t.y[-1:], "x", color=c, ms=3.5, alpha=0.9)
    ax.add_patch(Circle(run.goal, run.goal_radius, fill=False, color="white", lw=1.5, ls="--"))
    ax.plot(*run.goal, "*", color="white", ms=10, mec="black")
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(-0.5, h - 0.5)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    reached = sum(t.reached_goal for t in shown)
    of = f" of {len(run.trajectories)} sampled" if len(shown) < len(run.trajectories) else " sampled"
    ax.set_title(f"{title or run.label}\n{len(shown)}{of} episodes: {reached} reached goal "
                 f"(green), {len(shown) - reached} not (orange)", fontsize=8)
    return _png(fig)


def histograms(run, title: str | None = None) -> bytes:
    """Episode length and total reward, split by outcome."""
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 2.8), layout="constrained")
    for ax, values, name in ((axes[0], run.total_steps, "episode length (steps)"),
                             (axes[1], run.total_reward, "total reward")):
        vals = np.asarray(values, dtype=float)
        lo, hi = (float(vals.min()), float(vals.max())) if len(vals) else (0.0, 1.0)
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 41)
        ax.hist([vals[run.terminated], vals[~run.terminated]], bins=bins, stacked=True,
                color=[REACHED, MISSED], label=["reached goal", "not reached"])
        ax.set_xlabel(name)
        ax.set_ylabel("episodes")
        ax.locator_params(axis="x", nbins=5)
        ax.legend(fontsize=7)
    fig.suptitle(title or run.label, fontsize=8)
    return _png(fig)


def success_comparison(runs, labels=None) -> bytes:
    """Success rate with its 95% interval, one bar per run, labelled with ``labels`` (default run N)."""
    labels = labels or [f"run {i + 1}" for i in range(len(runs))]
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(runs) + 2), 3.4), layout="constrained")
    rates = [r.success_rate for r in runs]
    lo = [r.success_rate - r.success_interval[0] for r in runs]
    hi = [r.success_interval[1] - r.success_rate for r in runs]
    xs = np.arange(len(runs))
    ax.bar(xs, rates, yerr=[lo, hi], capsize=4, color=REACHED)
    ax.set_xticks(xs, [lab.replace(", ", "\n") for lab in labels], fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("success rate (95% Wilson)")
    return _png(fig)
