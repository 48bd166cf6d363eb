"""Smoke test of the benchmark harness with tiny sizes: in-process engine, no Ray, no reference."""
import json
import math
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from benchmarks import policies, reference, suite
from benchmarks.__main__ import Sizes, run_suite


def test_summary_and_intervals():
    s = suite.summary([3.0, 1.0, 2.0, None])
    assert (s["median"], s["min"], s["max"], s["n"]) == (2.0, 1.0, 3.0, 3)
    assert suite.summary([])["median"] is None
    lo, hi = policies.wilson(8, 100)
    assert 0.04 < lo < 0.08 < hi < 0.16
    assert policies.wilson(0, 10)[0] == 0.0 and math.isclose(policies.wilson(10, 10)[1], 1.0)
    lo, hi = policies.bootstrap(np.arange(100.0))
    assert lo < 49.5 < hi
    assert policies.bootstrap([1.0]) is None


def test_reference_cost_model():
    model = reference.cost_model(0.75, [(40_000, 3.75), (39_000, 3.75), (41_000, 3.0)])
    assert model["fixed_s"] == 0.75 and math.isclose(model["rate"], 40_000 / 3.0)
    assert math.isclose(reference.extrapolate(model, 1_000_000), 0.75 + 75.0)
    assert reference.cost_model(None, [(10, 1.0)]) is None and reference.cost_model(2.0, [(10, 1.0)]) is None
    assert reference.extrapolate(None, 10) is None


def test_family_memory_sums_descendants():
    code = ("import subprocess, sys, time; a = b'x' * (120 << 20); "
            "c = subprocess.Popen([sys.executable, '-c', 'import time; b = bytes([1]) * (80 << 20); time.sleep(1.5)']); "
            "time.sleep(1.5); c.wait()")
    r = suite.run_child([sys.executable, "-c", code], interval=0.05)
    assert r.rc == 0
    assert r.memory["peak_rss_mb"] > 200 and r.memory["peak_processes"] >= 2


def test_memory_guard_kills_the_family():
    r = suite.run_child([sys.executable, "-c", "import time; a = b'x' * (300 << 20); time.sleep(30)"],
                        interval=0.05, pss_limit_mb=150, timeout=60)
    assert r.rc != 0 and "killed: PSS" in r.stderr and r.wall_s < 29  # before its own 30 s end


def test_suite_tiny_local(tmp_path):
    sizes = Sizes(throughput_steps=2000, throughput_repeats=1, memory_steps=(2000, 2000), validate_repeats=1,
                  steady_n0=1000, steady_n=3000, steady_repeats=1, ceiling_steps=2000, ray=False)
    res = run_suite(sizes, ("throughput", "memory", "steady", "ceiling", "validate"), out_dir=tmp_path, tag="smoke",
                    log=lambda *a: None)
    fig = res["figures"]
    assert fig["steady"]["jsonl"]["capture_rate"]["median"] > 0 and "ray_jsonl" not in fig["steady"]
    assert {"jsonl", "both"} <= set(fig["ceiling"]["fraction"])  # tiny runs may have no marginal rate
    assert {"jsonl", "both"} <= set(fig["ceiling"]["fraction_standard"])
    assert fig["ceiling"]["rates"]["jsonl_standard"]["median"] > 0
    assert fig["ceiling"]["rates"]["jsonl"]["median"] > 0 and 0 < fig["ceiling"]["runs"][0]["rows"] <= 2000
    assert fig["whole_process"]["jsonl"]["runs"][0]["steps"] > 0
    assert fig["whole_process"]["both"]["capture_rate"]["median"] > 0
    assert set(fig["memory"]) >= {"2000", "growth_peak_rss_mb"}
    assert fig["validate"]["ok"], fig["validate"]["errors"]
    written = json.loads(next(tmp_path.glob("*-smoke.json")).read_text())
    assert written["meta"]["commit"] is not None and written["machine"]["cores"] >= 1
    md = next(tmp_path.glob("*-smoke.md")).read_text()
    assert "| whole process, " in md and "M steps, JSONL (CLI, default engine)" in md and "peak memory" in md


def test_policy_metrics_match_records(tmp_path):
    r = policies.run_one("oriented", "surge_cast", {"grid": 32, "sigma": 10.0, "goal_radius": 3.0}, episodes=12,
                         seed=5, max_steps=80, work=tmp_path)
    assert r["episodes"] == 12 and 0 <= r["success_rate"] <= 1
    lo, hi = r["success_ci"]
    assert lo <= r["success_rate"] <= hi
    # episode_metrics against a plain per-record computation
    from plume_capture.capture import capture
    from plume_capture.config import complete_config
    from plume_capture.kernels.start import start_position

    res = capture(complete_config({"output": str(tmp_path), "experiment": "m", "episodes": 6, "seed": 3,
                                   "parquet": True, "env": {"grid_size": [16, 16], "max_steps": 40,
                                                            "goal_radius": 2.0, "action_type": "run_tumble"},
                                   "policy": {"name": "run_tumble_chemotaxis"}, "engine": {"kind": "local"}}))
    m = policies.episode_metrics(res.run_dir)
    rows = pq.read_table(res.run_dir / "steps.parquet").to_pylist()
    eps = pq.read_table(res.run_dir / "episodes.parquet").to_pylist()
    for i, e in enumerate(eps):
        recs = [x for x in rows if x["seed"] == 3 + i]
        x0, y0 = start_position(3 + i, 16, 16)
        path, (px, py) = 0.0, (x0, y0)
        for x in recs:
            p = x["agent_position"]
            path += math.hypot(p["x"] - px, p["y"] - py)
            px, py = p["x"], p["y"]
        assert math.isclose(m["path"][i], path, abs_tol=1e-9)
        assert bool(m["success"][i]) == e["terminated"]
        shortest = max(0.0, math.hypot(x0 - 15, y0 - 15) - 2.0)
        assert math.isclose(m["shortest"][i], shortest)
        if e["terminated"] and shortest > 0:
            assert 0 < m["efficiency"][i] <= 1 + 1e-12
        else:
            assert np.isnan(m["efficiency"][i])


def test_policy_main_quick(tmp_path, capsys):
    rc = policies.main(["--quick", "--episodes", "30", "--max-steps", "200", "--no-plot", "--out", str(tmp_path)])
    assert rc in (0, 1)
    assert "| 64x64 | 20 | 5 | oriented | surge_cast |" in capsys.readouterr().out
    doc = json.loads(next(tmp_path.glob("policies-*.json")).read_text())
    assert {c["policy"] for c in doc["checks"]} == {"surge_cast", "temporal_derivative"}
    assert list(tmp_path.glob("policies-*.md"))


@pytest.mark.parametrize("bad", [["--quick", "--issue3"]])
def test_main_rejects_conflicting_modes(bad):
    r = subprocess.run([sys.executable, "-m", "benchmarks", *bad], capture_output=True, text=True, cwd=suite.ROOT)
    assert r.returncode == 2


def test_bench_puff_writes_its_results(tmp_path):
    from benchmarks import bench_puff

    out = tmp_path / "puff.json"
    doc = bench_puff.main(["--steps", "9000", "--static-steps", "9000", "--repeat", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(doc))
    rows = {(r["grid"], r["plume"]): r for r in doc["results"]}
    assert set(rows) == {(g, p) for g in (128, 1024) for p in ("static", "puff")}
    assert all(r["steps_per_s_median"] > 0 for r in rows.values())
    assert 20 < rows[128, "puff"]["live_puffs_mean"] <= 256 and rows[1024, "puff"]["max_puffs"] == 256


def test_stages_report_every_stage_and_a_fraction(tmp_path):
    """Issue 30: the stage-by-stage account, tiny sizes (a real pass and a real in-process steady state)."""
    from benchmarks import bench_stages

    sizes = Sizes(stages_steps=400_000, stages_n0=100_000, stages_repeats=1)
    res = run_suite(sizes, ("stages",), out_dir=tmp_path, tag="smoke", log=lambda *a: None)
    s = res["figures"]["stages"]
    assert set(bench_stages.STAGES) <= set(s["ns_per_step"])
    # Shape only: the figures are timings (a loaded machine moves them; the JSON text stage is a
    # difference of two timings), so the test asserts they were measured, not their size.
    for k in bench_stages.STAGES:
        assert all(math.isfinite(s["ns_per_step"][k][c]["median"]) for c in ("cpu", "wall")), k
    assert s["steps"] > 300_000 and 250 < s["bytes_per_step"]["text"] < 400
    for name in ("jsonl", "both"):
        assert 0 < s["fraction"][name]["median"] < math.inf, (name, s["fraction"], s["bound"])
    assert s["bound"]["jsonl"]["median"] > s["bound"]["both"]["median"]
    md = next(tmp_path.glob("*-smoke.md")).read_text()
    for k in bench_stages.STAGES:
        assert f"stage: {bench_stages.LABELS[k]}, ns per step" in md
    assert "of the bound" in md and "load average before" in md


def test_stage_bound_splits_the_stages_over_the_cores():
    from benchmarks.bench_stages import bound

    ns = {"kernels": 100.0, "records": 50.0, "json_text": 250.0, "gzip": 100.0, "parquet": 200.0,
          "file_writes": 60.0, "parquet_writes": 10.0, "driver": 40.0}
    assert math.isclose(bound(ns, parquet=True), 2 / 800e-9)
    assert math.isclose(bound(ns, parquet=False), 2 / 590e-9)
    assert math.isclose(bound(ns, parquet=False, cores=1), 1 / 590e-9)
