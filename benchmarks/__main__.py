"""The performance suite: one command, a JSON record and a Markdown table.

    python -m benchmarks [--quick | --issue3 | --startup | --stages] [--skip-reference] [--out DIR]

Default (9 min on this 2-core machine when it is otherwise idle; 4.5 of them are one run of the
reference tool): kernel env-steps/s by envs and threads; the runbook's 8x8 demo latency (whole
process, warm Numba cache); whole-process capture of ~10M steps (128x128, max_steps 1000, random
policy, the CLI's default engine) for JSON Lines only and JSON Lines + Parquet; steady-state rates
of the default engine and of Ray, 1 -> 2 actor scaling and the serialization ceilings, side by
side; peak memory summed over all processes at 10M and 40M steps; validation rate of a 10M run;
the reference tool side by side, small and at ~5.8M steps. ``--issue3`` measures issue 3's
acceptance sizes instead (>= 50M-step throughput, memory at 10M and 100M; ~6 min idle; no
kernel/demo/validation/reference). ``--quick`` is a ~2-4 min sanity run. ``--stages`` (also in the
default) is the stage-by-stage account (issue 30): ns per step of the kernels, the records, JSON text,
gzip, Parquet, file writes and the driver on one run's records, and the in-process steady state as a
fraction of the bound they give on 2 cores (``benchmarks/bench_stages.py``).

Results: ``benchmarks/results/<date>-<host>[-quick|-issue3|-startup|-stages].json`` and ``.md`` (printed).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import capture_bench as cb
from . import suite
from .suite import fmt_stat, load_str, loadavg, summary

ALL = ("kernel", "demo", "throughput", "memory", "steady", "ceiling", "validate", "reference", "startup", "stages")


@dataclass(frozen=True)
class Sizes:
    kernel_steps: int = 5_000_000
    kernel_repeats: int = 3
    demo_repeats: int = 5
    throughput_steps: int = 10_000_000
    throughput_repeats: int = 3
    memory_steps: tuple = (10_000_000, 40_000_000)
    steady_n0: int = 2_000_000
    steady_n: int = 20_000_000
    steady_repeats: int = 3
    ceiling_steps: int = 10_000_000
    validate_repeats: int = 2
    ref_episodes: int = 40
    ref_repeats: int = 3
    ref_large_episodes: int = 6000  # one reference run of ~5.8M steps (~5 min) between ours
    ray: bool = True  # steady-state Ray variants and 1 -> 2 actor scaling
    startup_repeats: int = 10  # issue 17: demo ours/reference alternating, import, --help
    startup_sweep_repeats: int = 3
    stages_steps: int = 10_000_000  # issue 30: stage by stage on one run's records, against its steady state
    stages_n0: int = 2_000_000
    stages_repeats: int = 3


MODES = {
    "default": (Sizes(), ALL),
    "startup": (Sizes(startup_repeats=12), ("startup",)),
    "stages": (Sizes(), ("stages",)),
    "quick": (Sizes(kernel_steps=1_000_000, kernel_repeats=2, demo_repeats=3, throughput_steps=2_000_000,
                    throughput_repeats=2, memory_steps=(2_000_000, 6_000_000), steady_n0=500_000,
                    steady_n=2_000_000, steady_repeats=2, ceiling_steps=1_000_000, validate_repeats=1,
                    ref_episodes=12, ref_repeats=2, ref_large_episodes=100, startup_repeats=3,
                    startup_sweep_repeats=1, stages_steps=2_000_000, stages_n0=500_000, stages_repeats=2), ALL),
    # ~3% of random-policy episodes on 128x128 end early: 52M/104M nominal give >= 50M/100M steps
    "issue3": (Sizes(throughput_steps=52_000_000, throughput_repeats=3, memory_steps=(10_000_000, 104_000_000),
                     steady_n=30_000_000), ("throughput", "memory", "steady", "ceiling")),
}

TARGETS = {
    "demo_s": 1.5, "jsonl_rate": 1.8e6, "both_rate": 1.35e6, "ceiling_fraction": 0.9, "scaling": 1.8,
    "rss_mb": 1500, "rss_growth": 0.10, "validate_rate": 1.0e6, "validate_rss_mb": 500, "reference_ratio": 100,
    "stages_fraction": 0.9,
}


def _mark(ok) -> str:
    return "" if ok is None else (" ✓" if ok else " ✗")


def _ge(v, target):
    return None if v is None else v >= target


def _le(v, target):
    return None if v is None else v <= target


def _steps(r: dict, nominal: int) -> str:
    """Steps a whole-process figure actually captured (episodes = nominal / max_steps; some end early)."""
    runs = r.get("runs") or []
    return f"{(runs[0]['steps'] if runs else nominal) / 1e6:.3g}M"


def _failed(r: dict) -> str:
    f = r.get("failures") or []
    return f"; {len(f)} run(s) FAILED: {f[0]['reason']}" if f else ""


def run_suite(sizes: Sizes, sections=ALL, *, skip_reference: bool = False, out_dir: Path | None = suite.RESULTS,
              tag: str = "", command: str = "python -m benchmarks", log=print) -> dict:
    """Run the selected sections; returns the result record (and writes it when ``out_dir``)."""
    t_start = time.perf_counter()
    res = {"meta": {"date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "command": command,
                    "commit": suite.commit(), "load_before": loadavg(), "sizes": asdict(sizes),
                    "sections": list(sections)},
           "machine": suite.machine(), "versions": suite.versions(), "figures": {}, "rows": [], "notes": []}
    fig, rows, notes = res["figures"], res["rows"], res["notes"]
    m = res["machine"]
    log(f"plume-capture benchmarks on {m['host']}: {m['cores']} cores, {m['ram_gb']} GB, load {loadavg()}")
    kept_run = None
    try:
        if "kernel" in sections:
            log("kernel (env-steps/s by envs and threads) ...")
            fig["kernel"] = _kernel(sizes)
            for r in fig["kernel"]["results"]:
                rows.append({"figure": f"kernel, {r['n_envs']} envs, {r['threads']} thread(s)",
                             "result": f"{fmt_stat(r, 1e6)} M env-steps/s", "load": load_str(*fig["kernel"]["load"])})
        if "demo" in sections:
            log("demo latency (runbook 8x8, whole process, warm cache) ...")
            fig["demo"] = _demo(sizes.demo_repeats)
            d = fig["demo"]["latency_s"]
            rows.append({"figure": "8x8 demo latency, whole process (ours)", "result": f"{fmt_stat(d)} s"
                         + _mark(_le(d["median"], TARGETS["demo_s"])), "target": f"≤ {TARGETS['demo_s']} s",
                         "load": load_str(*fig["demo"]["load"])})
        if "throughput" in sections or "memory" in sections:
            _throughput_and_memory(sizes, sections, fig, rows, notes, log)
            kept_run = fig.get("_kept_run")
        if "steady" in sections:
            log("steady state, scaling and the serialization ceiling (side by side) ...")
            variants = [{"name": "jsonl", "engine": "local"}, {"name": "both", "parquet": True, "engine": "local"}]
            if sizes.ray:
                variants += [{"name": "ray_jsonl", "engine": "ray"}, {"name": "ray_both", "parquet": True, "engine": "ray"},
                             {"name": "ray_jsonl_1actor", "num_actors": 1, "engine": "ray"}]
            fig["steady"] = cb.steady(variants, n0=sizes.steady_n0, n=sizes.steady_n, repeats=sizes.steady_repeats,
                                      ceiling_steps=sizes.ceiling_steps if "ceiling" in sections else None, log=log)
            st = fig["steady"]
            ld = load_str(*st["_load"])
            for name, label in (("jsonl", "JSONL, default engine (in-process, 2 threads)"),
                                ("both", "JSONL + Parquet, default engine (in-process, 2 threads)"),
                                ("ray_jsonl", "JSONL, Ray (2 actors)"), ("ray_both", "JSONL + Parquet, Ray (2 actors)"),
                                ("ray_jsonl_1actor", "JSONL, Ray (1 actor)")):
                if name not in st:
                    continue
                rows.append({"figure": f"steady state, {label} ({sizes.steady_n / 1e6:g}M − {sizes.steady_n0 / 1e6:g}M "
                                       f"steps, marginal)", "result": f"{fmt_stat(st[name]['steady_rate'], 1e6)} M/s; "
                                       f"capture only {fmt_stat(st[name]['capture_rate'], 1e6)} M/s; fixed cost per run "
                                       f"{fmt_stat(st[name]['fixed_s'])} s; worker utilization "
                                       f"{fmt_stat(st[name]['actor_utilization'])}", "load": ld})
        if "steady" in sections and sizes.ray:
            st = fig["steady"]
            ld = load_str(*st["_load"])
            one, two = st["ray_jsonl_1actor"]["steady_rate"], st["ray_jsonl"]["steady_rate"]
            scale = two["median"] / one["median"] if one["median"] and two["median"] else None
            paired = summary(b / a if a and b else None
                             for a, b in zip(st["ray_jsonl_1actor"]["marginal"], st["ray_jsonl"]["marginal"]))
            fig["scaling"] = {"median_ratio": scale, "paired": paired}
            rows.append({"figure": "scaling 1 → 2 Ray actors (steady state, JSONL)",
                         "result": "–" if scale is None else
                         f"{one['median'] / 1e6:.2f} → {two['median'] / 1e6:.2f} M/s = {scale:.2f}x "
                         f"(paired per repeat {fmt_stat(paired)})" + _mark(_ge(scale, TARGETS["scaling"])),
                         "target": f"≥ {TARGETS['scaling']}x", "load": ld})
        if "ceiling" in sections:
            c = (fig.get("steady") or {}).get("ceiling")
            if c is None:
                log("serialization ceiling ...")
                one = cb.ceiling(sizes.ceiling_steps, log=log)
                c = {"rates": {k: summary([v]) for k, v in one["rates"].items()}, "runs": [one], "fraction": {},
                     "best_jsonl_writer": one["best_jsonl_writer"], "procs": one["procs"]}
            fig["ceiling"] = c
            rates = {k: v["median"] for k, v in c["rates"].items()}
            rows.append({"figure": f"ceiling: JSONL writer alone on the run's rows, {c['procs']} processes "
                                   f"({c['best_jsonl_writer']})",
                         "result": f"{fmt_stat(c['rates']['jsonl'], 1e6)} M rows/s (polars write_ndjson + isal "
                                   f"{rates['polars_ndjson_isal1'] / 1e6:.2f}, encode_jsonl {rates['encode_jsonl'] / 1e6:.2f})"})
            rows.append({"figure": f"ceiling: JSONL + Parquet writers alone, {c['procs']} processes",
                         "result": f"{fmt_stat(c['rates']['jsonl+parquet'], 1e6)} M rows/s (Parquet zstd alone "
                                   f"{rates['parquet_zstd'] / 1e6:.2f})"})
            for name, label in (("jsonl", "JSONL, default engine"), ("both", "JSONL + Parquet, default engine"),
                                ("ray_jsonl", "JSONL, Ray 2 actors"), ("ray_both", "JSONL + Parquet, Ray 2 actors")):
                frac = c["fraction"].get(name)
                std = (c.get("fraction_standard") or {}).get(name)
                if std and std["median"] is not None:
                    rows.append({"figure": f"steady state / fastest standard writer (polars write_ndjson + isal"
                                           f"{', + pyarrow Parquet' if 'both' in name else ''}), {label} (paired per repeat)",
                                 "result": fmt_stat(std) + _mark(_ge(std["median"], TARGETS["ceiling_fraction"])),
                                 "target": f"≥ {TARGETS['ceiling_fraction']}"})
                if frac and frac["median"] is not None:
                    rows.append({"figure": f"steady state / our encoder alone (strict ceiling), {label} (paired per repeat)",
                                 "result": fmt_stat(frac) + _mark(_ge(frac["median"], TARGETS["ceiling_fraction"])),
                                 "target": f"≥ {TARGETS['ceiling_fraction']}"})
        if "validate" in sections:
            if kept_run is None:
                notes.append("validation skipped: no run directory was kept")
            else:
                log("validation rate ...")
                fig["validate"] = _validate(Path(kept_run), sizes.validate_repeats, log)
                v = fig["validate"]
                rows.append({"figure": f"validation, {v['steps'] / 1e6:g}M-step run (JSONL + Parquet, own process)",
                             "result": f"{fmt_stat(v['rate'], 1e6)} M steps/s, peak RSS {fmt_stat(v['maxrss_mb'], digits=0)} MB"
                                       f", ok={v['ok']}" + _mark(_ge(v["rate"]["median"], TARGETS["validate_rate"])
                                                                  and _le(v["maxrss_mb"]["median"], TARGETS["validate_rss_mb"])),
                             "target": "≥ 1M steps/s, ≤ 500 MB", "load": load_str(*v["load"])})
        if "reference" in sections:
            if skip_reference:
                notes.append("reference side by side skipped (--skip-reference)")
            else:
                _reference(sizes, fig, rows, notes, log)
        if "startup" in sections:
            _startup(sizes, fig, rows, skip_reference, log)
        if "stages" in sections:
            _stages(sizes, fig, rows, notes, log)
    finally:
        if kept_run:
            shutil.rmtree(Path(kept_run).parent.parent, ignore_errors=True)
        fig.pop("_kept_run", None)
    res["meta"]["load_after"] = loadavg()
    res["meta"]["elapsed_s"] = time.perf_counter() - t_start
    if out_dir is not None:
        write(res, out_dir, tag, log)
    return res


def write(res: dict, out_dir: Path, tag: str = "", log=print) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{res['meta']['date'][:10]}-{res['machine']['host']}{'-' + tag if tag else ''}"
    jp, mp = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    jp.write_text(json.dumps(res, indent=1, default=str) + "\n")
    text = suite.markdown(res)
    mp.write_text(text)
    log("")
    log(text)
    log(f"written: {jp} and {mp}")
    return jp, mp


# ------------------------------------------------------------------------------------------------
# Sections

def _kernel(sizes: Sizes) -> dict:
    r = suite.run_child([sys.executable, "-m", "benchmarks.bench_kernels", "--steps", str(sizes.kernel_steps),
                         "--repeat", str(sizes.kernel_repeats), "--json"], cwd=suite.ROOT, memory=False).check()
    out = json.loads(r.stdout[r.stdout.index("{"):])
    out["load"] = [r.load_before, r.load_after]
    return out


def _demo(repeats: int) -> dict:
    walls, load0 = [], loadavg()
    for k in range(repeats + 1):  # the first run warms the Numba cache and the page cache
        out = Path(tempfile.mkdtemp(prefix="demo-", dir=_cache()))
        try:
            r = suite.run_child(suite.cli("--output", str(out), "--experiment", "demo", "--episodes", "2",
                                          "--seed", "100", "--grid", "8x8"), memory=False).check()
            if k > 0:
                walls.append(r.wall_s)
        finally:
            shutil.rmtree(out, ignore_errors=True)
    return {"latency_s": summary(walls), "load": [load0, loadavg()]}


def _cache() -> Path:
    suite.CACHE.mkdir(parents=True, exist_ok=True)
    return suite.CACHE


def _startup(sizes: Sizes, fig, rows, skip_reference: bool, log):
    from . import bench_startup

    log("startup (issue 17) ...")
    r = fig["startup"] = bench_startup.measure(sizes.startup_repeats, sizes.startup_sweep_repeats,
                                               reference=not skip_reference)
    ref = r["demo_reference_s"]
    rows += [
        {"figure": "startup: runbook demo warm, whole process, ours | reference (alternating)",
         "result": f"{fmt_stat(r['demo_ours_s'])} s | " + (f"{fmt_stat(ref)} s, ratio "
                   f"{fmt_stat(r['demo_ratio_ours_over_reference'])}" if isinstance(ref, dict) else ref),
         "target": "≤ reference"},
        {"figure": "startup: `import plume_capture.capture` | `plume-nav-capture --help`",
         "result": f"{fmt_stat(r['import_capture_s'])} s | {fmt_stat(r['help_s'])} s", "target": "≤ 0.3 s"},
        {"figure": "startup: 100-point sweep of tiny runs (-m seed=range(0,100) episodes=2 env.grid_size=[8,8])",
         "result": f"{fmt_stat(r['sweep100_s'])} s", "target": "≤ 3 s"},
        {"figure": "startup: empty Numba cache, demo | a compiled run (20 episodes 32x32, with a notice)",
         "result": f"{fmt_stat(r['demo_empty_cache_s'])} s | {fmt_stat(r['compiled_run_empty_cache_s'])} s",
         "target": "≤ 2 s, or a notice and ≤ 3 s"},
    ]


def _throughput_and_memory(sizes: Sizes, sections, fig, rows, notes, log):
    n = sizes.throughput_steps
    wp = {}
    if "throughput" in sections:
        for parquet in (False, True):
            label = "JSONL + Parquet" if parquet else "JSONL"
            log(f"whole process, {n / 1e6:g}M steps, {label} ...")
            keep = parquet and "validate" in sections and n in sizes.memory_steps[:1]
            # Whole process as an operator runs it: the CLI's default engine (auto).
            wp[parquet] = r = cb.whole_process(n, parquet=parquet, repeats=sizes.throughput_repeats,
                                              keep_last=keep, engine="auto", log=log)
            if r["run_dir"]:
                fig["_kept_run"] = r["run_dir"]
            target = TARGETS["both_rate" if parquet else "jsonl_rate"]
            rows.append({"figure": f"whole process, {_steps(r, n)} steps, {label} (CLI, default engine)",
                         "result": f"{fmt_stat(r['rate'], 1e6)} M/s" + _mark(_ge(r["rate"]["median"], target)) + _failed(r),
                         "target": f"≥ {target / 1e6:g}M/s (at ≥ 50M steps)", "load": load_str(*r["load"])})
            rows.append({"figure": f"  same runs, capture only (run.json timing)",
                         "result": f"{fmt_stat(r['capture_rate'], 1e6)} M/s", "load": load_str(*r["load"])})
        fig["whole_process"] = {"jsonl": wp[False], "both": wp[True]}
        r = wp[False]
        rows.append({"figure": f"peak memory, {_steps(r, n)} steps, JSONL only, sum over all processes",
                     "result": f"{_peaks(r)}; RSS at the peak: " + _roles_str(r),
                     "target": f"≤ {TARGETS['rss_mb']} MB", "load": load_str(*r["load"])})
    if "memory" in sections:
        mem = {}
        for k, steps in enumerate(sizes.memory_steps):
            if steps == n and True in wp:
                mem[steps] = wp[True]
                continue
            log(f"memory, {steps / 1e6:g}M steps, JSONL + Parquet ...")
            keep = k == 0 and "validate" in sections and "_kept_run" not in fig
            mem[steps] = r = cb.whole_process(steps, parquet=True, repeats=1, keep_last=keep, engine="auto",
                                              log=log)
            if r["run_dir"]:
                fig["_kept_run"] = r["run_dir"]
        fig["memory"] = {str(s): {"peak_rss_mb": r["peak_rss_mb"], "peak_pss_mb": r["peak_pss_mb"],
                                  "rss_mb_at_peak_by_role": _roles(r), "rate": r["rate"], "load": r["load"]}
                         for s, r in mem.items()}
        small, large = (mem[s] for s in sizes.memory_steps)
        for s in sizes.memory_steps:
            r = mem[s]
            rows.append({"figure": f"peak memory, {_steps(r, s)} steps, JSONL + Parquet, sum over all processes",
                         "result": f"{_peaks(r)}{_failed(r)}; {fmt_stat(r['rate'], 1e6)} M steps/s whole process; "
                                   f"RSS at the peak: " + _roles_str(r),
                         "target": f"≤ {TARGETS['rss_mb']} MB", "load": load_str(*r["load"])})
        for key in ("peak_rss_mb", "peak_pss_mb"):
            a, b = small[key]["median"], large[key]["median"]
            growth = b / a - 1 if a and b else None
            fig["memory"][f"growth_{key}"] = growth
            rows.append({"figure": f"memory growth {_steps(small, sizes.memory_steps[0])} → "
                                   f"{_steps(large, sizes.memory_steps[1])} "
                                   f"steps ({key.split('_')[1].upper()})",
                         "result": "–" if growth is None else f"{growth * 100:+.1f}%"
                                   + _mark(abs(growth) <= TARGETS["rss_growth"]),
                         "target": "within 10%"})
        notes.append("Memory: RSS summed over the driver, the Ray workers and Ray's own processes (gcs, raylet, "
                     "dashboard/log monitor ...), sampled every 100 ms; RSS counts pages shared between processes "
                     "(Ray's object store, libraries) once per process, PSS splits them.")


def _stages(sizes: Sizes, fig, rows, notes, log):
    from . import bench_stages as bs

    log(f"stages, {sizes.stages_steps / 1e6:g}M steps, each pass then the steady state of the same run ...")
    s = fig["stages"] = bs.measure(sizes.stages_steps, sizes.stages_n0, sizes.stages_repeats, log=log)
    ld = load_str(*s["load"])
    b = s["bytes_per_step"]
    for k in bs.STAGES:
        x = s["ns_per_step"][k]
        extra = {"json_text": f"; {b['text']:.0f} B of text per step",
                 "gzip": f"; {b['gzip']:.1f} B per step",
                 "parquet": f"; {b['parquet']:.1f} B per step",
                 "file_writes": f"; of which the Parquet files {fmt_stat(s['ns_per_step']['parquet_writes']['cpu'], digits=0)}"}
        rows.append({"figure": f"stage: {bs.LABELS[k]}, ns per step, one thread, on the run's "
                               f"{s['steps'] / 1e6:.3g}M steps", "result": f"CPU {fmt_stat(x['cpu'], digits=0)}; "
                               f"wall {fmt_stat(x['wall'], digits=0)}" + extra.get(k, ""), "load": ld})
    for name, label in (("jsonl", "JSON Lines"), ("both", "JSON Lines + Parquet")):
        rows.append({"figure": f"stages: bound on {s['cores']} cores, {label} = {s['cores']} / sum of the stages' "
                               f"CPU ns per step", "result": f"{fmt_stat(s['bound'][name], 1e6)} M steps/s "
                               f"(from wall ns: {fmt_stat(s['bound_wall'][name], 1e6)})", "load": ld})
        rows.append({"figure": f"stages: steady state, {label}, in-process (2 threads), / that bound (per repeat)",
                     "result": f"{fmt_stat(s['steady_rate'][name], 1e6)} M steps/s = "
                               f"{fmt_stat(s['fraction'][name])} of the bound"
                               + _mark(_ge(s["fraction"][name]["median"], TARGETS["stages_fraction"])),
                     "target": f"≥ {TARGETS['stages_fraction']}", "load": ld})
        rows.append({"figure": f"stages: the same, load-free: sum of the stages' CPU ns / the pipeline's CPU ns per "
                               f"step ({label}, in-process, all threads)",
                     "result": f"{fmt_stat(s['cpu_fraction'][name])} (pipeline "
                               f"{fmt_stat(s['pipeline_cpu_ns_per_step'][name], digits=0)} CPU ns per step)", "load": ld})
    notes.append("Stages: one pass in a child process with one thread per library, over the shards of the run "
                 "whose steady state follows (same config and seed: the same records). CPU = time.process_time of "
                 "that process. JSON text = encode_jsonl − gzip, gzip = isal compressing that same text alone. The "
                 "bound assumes the stages overlap perfectly on the cores (the engine runs shards on 2 worker "
                 "threads and commits on the driver thread); see benchmarks/bench_stages.py.")


def _peaks(r: dict) -> str:
    """Peak RSS and PSS of a whole-process figure, each against the memory target."""
    return ", ".join(f"{key[5:8].upper()} {fmt_stat(r[key], digits=0)} MB"
                     f"{_mark(_le(r[key]['median'], TARGETS['rss_mb']))}" for key in ("peak_rss_mb", "peak_pss_mb"))


def _roles_str(r: dict) -> str:
    return ", ".join(f"{k} {v:.0f}" for k, v in _roles(r).items())


def _roles(r: dict) -> dict:
    """RSS by process role at the peak of the run with the highest peak."""
    runs = r.get("runs") or []
    if not runs:
        return {}
    return max(runs, key=lambda x: x.get("peak_rss_mb", 0)).get("rss_mb_at_peak_by_role", {})


def _validate(run_dir: Path, repeats: int, log) -> dict:
    from .bench_validate import validate_in_child

    out, load0 = [], loadavg()
    for _ in range(repeats):
        r = validate_in_child(run_dir, True)
        out.append(r)
        log(f"    validated {r['counts']['steps']:,} steps in {r['seconds']:.2f} s, peak RSS {r['maxrss_mb']:.0f} MB, "
            f"ok={r['ok']}")
    steps = out[0]["counts"]["steps"]
    return {"steps": steps, "rate": summary(steps / r["seconds"] for r in out),
            "maxrss_mb": summary(r["maxrss_mb"] for r in out), "ok": all(r["ok"] for r in out),
            "errors": out[0].get("errors", [])[:5], "load": [load0, loadavg()]}


def _reference(sizes: Sizes, fig, rows, notes, log):
    from . import reference as ref

    log("reference side by side ...")
    r = ref.side_by_side(episodes=sizes.ref_episodes, repeats=sizes.ref_repeats, demo_repeats=sizes.demo_repeats,
                         large_episodes=sizes.ref_large_episodes, log=log)
    fig["reference"] = r
    if "skipped" in r:
        rows.append({"figure": "reference side by side", "result": f"skipped: {r['skipped']}"})
        return
    d = r["demo_latency_s"]
    if d["median"] is not None:
        rows.append({"figure": "8x8 demo latency, whole process (reference)", "result": f"{fmt_stat(d)} s"})
    st = r["settings"]
    ld = load_str(*r["load"])
    for key, label in (("jsonl", "JSONL"), ("parquet", "--parquet")):
        x = r[key]
        failed = f"; reference FAILED ({x['reference_failed'][0]}), rate up to the failure" if x["reference_failed"] else ""
        rows.append({"figure": f"reference vs ours, equal work: {st['episodes']} episodes {st['grid']}, max_steps "
                               f"{st['max_steps']}, {st['action_type']}, {label}, whole process, alternating",
                     "result": f"reference {fmt_stat(x['reference_rate'], 1e3, 1)}k steps/s in "
                               f"{fmt_stat(x['reference_wall_s'])} s; ours {fmt_stat(x['ours_rate'], 1e3, 0)}k steps/s in "
                               f"{fmt_stat(x['ours_wall_s'])} s; ratio {fmt_stat(x['ratio_rate'], digits=1)}x{failed}",
                     "load": ld})
    lg = r.get("large")
    if lg:
        ref_rate = lg["reference_rate"]
        for key, label in (("jsonl", "JSONL"), ("parquet", "ours --parquet, reference JSONL (it cannot write Parquet)")):
            x = lg[key]
            ratio = x["ratio"]
            fig.setdefault("reference_ratio", {})[key] = ratio
            rows.append({"figure": f"reference vs ours, equal work, large: {lg['episodes']} episodes {st['grid']}, "
                                   f"max_steps {st['max_steps']}, {st['action_type']}, {label}, whole process, "
                                   f"ours twice before and twice after the reference",
                         "result": "reference FAILED: " + str(lg["reference_failed"]) if not ref_rate else
                         f"reference {lg['reference_steps'] / 1e6:.2f}M steps in {lg['reference_wall_s']:.0f} s = "
                         f"{ref_rate / 1e3:.1f}k steps/s; ours {x['ours_steps'] / 1e6:.2f}M steps in "
                         f"{fmt_stat(x['ours_wall_s'])} s = {fmt_stat(x['ours_rate'], 1e6)} M steps/s; ratio "
                         f"{fmt_stat(ratio, digits=0)}x" + _mark(_ge(ratio["median"], TARGETS["reference_ratio"])),
                         "target": f"≥ {TARGETS['reference_ratio']}x", "load": load_str(lg["runs"][0]["load"][0],
                                                                                      lg["runs"][-1]["load"][1])})
    model = r.get("reference_model")
    if model:
        rows.append({"figure": "reference cost model: start-up = its 8x8 demo; rate = steps / (wall − start-up) "
                               "of its JSONL runs",
                     "result": f"{model['fixed_s']:.2f} s + steps / {model['rate']:,.0f} steps/s "
                               f"({model['rate_range'][0]:,.0f}–{model['rate_range'][1]:,.0f})"})
        wp = fig.get("whole_process")
        if wp:
            for key, label in (("jsonl", "JSONL"), ("both", "JSONL + Parquet (reference: JSONL only)")):
                ours = wp[key]
                steps = ours["runs"][0]["steps"] if ours["runs"] else None
                if not steps:
                    continue
                ref_wall = ref.extrapolate(model, steps)
                ratio = summary(ref_wall / x["wall_s"] for x in ours["runs"])
                fig.setdefault("reference_ratio_at_scale", {})[key] = ratio
                rows.append({"figure": f"end to end vs reference at {steps / 1e6:.3g}M steps, {label}: reference "
                                       f"predicted {ref_wall / 60:.0f} min / ours whole process",
                             "result": f"{fmt_stat(ratio, digits=0)}x" + _mark(_ge(ratio["median"], TARGETS["reference_ratio"])),
                             "target": f"≥ {TARGETS['reference_ratio']}x"})
    notes.append("Reference: PyPI plume-nav-sim 0.1.0 in its own venv (benchmarks/.cache/ref-venv) with its hydra "
                 "extra, driven in config mode (its flags-only mode crashes in 0.1.0); its --parquet raises "
                 "ValueError('Parquet export is no longer supported in data_capture') after running the episodes.")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="small sizes (~3 min), a sanity run")
    g.add_argument("--issue3", action="store_true", help="issue 3's sizes: 50M-step throughput, memory at 10M/100M")
    g.add_argument("--startup", action="store_true", help="only the start-up group (issue 17), ~1 min")
    g.add_argument("--stages", action="store_true", help="only the stage-by-stage account (issue 30), ~3 min")
    ap.add_argument("--skip-reference", action="store_true", help="do not install or run the reference tool")
    ap.add_argument("--out", type=Path, default=suite.RESULTS, help="where the .json/.md go")
    a = ap.parse_args(argv)
    mode = ("quick" if a.quick else "issue3" if a.issue3 else "startup" if a.startup else "stages" if a.stages
            else "default")
    sizes, sections = MODES[mode]
    command = "python -m benchmarks" + "".join(f" {x}" for x in (sys.argv[1:] if argv is None else argv))
    run_suite(sizes, sections, skip_reference=a.skip_reference, out_dir=a.out,
              tag="" if mode == "default" else mode, command=command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
