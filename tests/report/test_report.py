"""plume-nav-report: numbers against the episode records, both readers, sampling, bad input."""
from __future__ import annotations

import gzip
import json
import math
import re
import shutil

import numpy as np
import pytest

from hostile import HOSTILE, run_cli
from plume_capture.cli.report import main
from runfactory import refresh_manifest
from plume_capture.report import summarize_run
from plume_capture.report.data import episode_seeds, sample_episodes
from plume_capture.report.stats import wilson_interval


def episode_records(run_dir):
    with gzip.open(run_dir / "episodes.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f]


def step_records(run_dir):
    with gzip.open(run_dir / "steps.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f]


def table_rows(html_text):
    rows = re.findall(r'<tr class="run-row">(.*?)</tr>', html_text)
    return [re.findall(r"<td>(.*?)</td>", r) for r in rows]


def header(html_text):
    return re.findall(r"<th>(.*?)</th>", html_text)


def test_wilson_interval_known_values():
    # 0 of n: upper bound z^2 / (n + z^2); n of n mirrors it.
    z2 = 1.959963984540054 ** 2
    lo, hi = wilson_interval(0, 40)
    assert lo == 0.0 and hi == pytest.approx(z2 / (40 + z2))
    lo, hi = wilson_interval(40, 40)
    assert hi == 1.0 and lo == pytest.approx(40 / (40 + z2))
    # 5 of 10: symmetric about 0.5, half-width z*sqrt(n/4 + z^2/4)/(n + z^2)
    lo, hi = wilson_interval(5, 10)
    half = math.sqrt(z2) * math.sqrt(10 / 4 + z2 / 4) / (10 + z2)
    assert (lo, hi) == (pytest.approx(0.5 - half), pytest.approx(0.5 + half))


def test_wilson_interval_holds_the_rate():
    for n in (1, 2, 3, 7, 40, 400, 1000, 52632):
        for k in sorted({0, 1, n // 3, n - 1, n}):
            lo, hi = wilson_interval(k, n)
            assert 0.0 <= lo <= k / n <= hi <= 1.0, (k, n, lo, hi)


def test_sweep_table_matches_episode_records(sweep_dir, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main([str(sweep_dir), "-o", str(out), "--png", str(tmp_path / "png")]) == 0
    text = out.read_text()
    head = header(text)
    assert head[2:4] == ["policy.name", "env.goal_radius"]  # only the keys that differ, as swept
    rows = table_rows(text)
    by_id = {json.loads((p / "run.json").read_text())["run_id"]: p for p in sweep_dir.iterdir()
             if (p / "run.json").exists()}
    assert len(rows) == len(by_id) == 4
    for row in rows:
        rd = by_id[row[1].rsplit("/", 1)[1]]
        meta = json.loads((rd / "run.json").read_text())
        eps = episode_records(rd)
        n = len(eps)
        k = sum(e["terminated"] for e in eps)
        cfg = meta["extra"]["config"]
        assert row[1].endswith(meta["run_id"])
        assert row[3] == str(cfg["env"]["goal_radius"]) and row[2] == cfg["policy"]["name"]
        assert int(row[4]) == n and int(row[5]) == k
        assert float(row[6]) == pytest.approx(k / n, abs=5e-5)
        lo, hi = map(float, row[7].strip("[]").split(","))
        assert (lo, hi) == wilson_interval(k, n) or \
            (lo == pytest.approx(wilson_interval(k, n)[0], abs=5e-5)
             and hi == pytest.approx(wilson_interval(k, n)[1], abs=5e-5))
        assert float(row[8]) == pytest.approx(sum(e["total_steps"] for e in eps) / n, abs=5e-3)
        assert float(row[9].replace(",", "")) == pytest.approx(
            meta["extra"]["timing"]["steps_per_s"], abs=0.51)
    pngs = sorted(p.name for p in (tmp_path / "png").iterdir())
    assert pngs == sorted([f"run{i}_{k}.png" for i in range(1, 5)
                           for k in ("trajectories", "histograms")] + ["success_comparison.png"])
    assert len(re.findall(r'<img data-figure="', text)) == 9
    assert "http://" not in text and "https://" not in text  # self-contained


def test_sweep_reads_in_the_order_of_its_grid(sweep_dir, tmp_path):
    """Rows, cards and bars follow the swept values (policy slowest, as the sweep ran), not the run
    ids' random suffixes; cards and bars are labelled with the swept values."""
    from plume_capture.report import figures

    labels = []
    real = figures.success_comparison

    def spy(runs, labels_=None):
        labels.extend(labels_)
        return real(runs, labels_)

    # the directory names sort against the grid (as random run-id suffixes may)
    metas = {p: json.loads((p / "run.json").read_text()) for p in sweep_dir.iterdir() if (p / "run.json").exists()}
    rank = {("random", 3.0): 3, ("random", 8.0): 2, ("surge_cast", 3.0): 1, ("surge_cast", 8.0): 0}
    for p, m in metas.items():
        cfg = m["extra"]["config"]
        shutil.copytree(p, tmp_path / "exp" / f"run-{rank[(cfg['policy']['name'], cfg['env']['goal_radius'])]}")
    figures.success_comparison = spy
    try:
        assert main([str(tmp_path / "exp"), "-o", str(tmp_path / "r.html")]) == 0
    finally:
        figures.success_comparison = real
    text = (tmp_path / "r.html").read_text()
    grid = [("random", "3.0"), ("random", "8.0"), ("surge_cast", "3.0"), ("surge_cast", "8.0")]
    assert [(r[2], r[3]) for r in table_rows(text)] == grid
    cards = re.findall(r"<h3>run (\d): (.*?)</h3>", text)
    assert cards == [(str(i), f"policy.name={p}, env.goal_radius={g}") for i, (p, g) in enumerate(grid, 1)]
    assert labels == [f"name={p}, goal_radius={g}" for p, g in grid]


def test_long_walks_are_drawn_thinner_and_fewer():
    from types import SimpleNamespace

    from plume_capture.report.figures import POINT_BUDGET, drawn

    short = [SimpleNamespace(x=np.zeros(20)) for _ in range(300)]
    long = [SimpleNamespace(x=np.zeros(1000)) for _ in range(300)]
    s_shown, s_alpha = drawn(short)
    l_shown, l_alpha = drawn(long)
    assert len(s_shown) == 300 and len(l_shown) == POINT_BUDGET // 1000 < 300
    assert l_alpha < s_alpha / 2
    assert len(drawn(long, budget=10)[0]) == 10  # always a few


def test_one_run_fills_the_page_and_notes_are_not_red(parquet_run, tmp_path):
    assert main([str(parquet_run), "-o", str(tmp_path / "r.html")]) == 0
    text = (tmp_path / "r.html").read_text()
    assert '<div class="run single">' in text and ".run.single{width:auto}" in text
    colour = re.search(r"\.note\{[^}]*?(?<![-\w])color:#([0-9a-f]{6}|[0-9a-f]{3})\b", text).group(1)
    if len(colour) == 3:
        colour = "".join(c * 2 for c in colour)
    r, g, b = (int(colour[i:i + 2], 16) for i in (0, 2, 4))
    assert not (r > g + 40 and r > b + 40)  # an informational note is not red


def test_sample_and_trajectories_follow_the_step_records(parquet_run):
    meta = json.loads((parquet_run / "run.json").read_text())
    seeds = episode_seeds(meta, 30)
    chosen = sample_episodes(seeds, 7)
    assert len(chosen) == 7 and list(chosen) == sorted(set(chosen.tolist()))
    # The choice depends on the seeds only, not on their order.
    perm = np.random.default_rng(0).permutation(30)
    assert sorted(perm[sample_episodes(seeds[perm], 7)].tolist()) == chosen.tolist()
    run = summarize_run(parquet_run, sample=7)
    assert run.sources == {"episodes": "episodes.parquet", "steps": "steps.parquet"}
    steps = step_records(parquet_run)
    eps = episode_records(parquet_run)
    assert [t.episode for t in run.trajectories] == chosen.tolist()
    for t in run.trajectories:
        mine = [s for s in steps if s["episode_id"] == f"ep-{t.episode + 1:06d}"]
        assert t.x.tolist() == [s["agent_position"]["x"] for s in mine]
        assert t.y.tolist() == [s["agent_position"]["y"] for s in mine]
        assert t.reached_goal == eps[t.episode]["terminated"] and t.seed == mine[0]["seed"]


def test_jsonl_and_parquet_readers_agree(parquet_run, tmp_path):
    copy = tmp_path / "jsonl_only"
    shutil.copytree(parquet_run, copy)
    for p in copy.glob("*.parquet"):
        p.unlink()
    refresh_manifest(copy)  # a run of JSON Lines only, as run.json says
    a, b = summarize_run(parquet_run, sample=10), summarize_run(copy, sample=10)
    assert b.sources == {"episodes": "episodes.jsonl.gz", "steps": "steps.jsonl.gz"}
    for name in ("terminated", "total_steps", "total_reward"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert [(t.episode, t.x.tolist(), t.y.tolist()) for t in a.trajectories] == \
        [(t.episode, t.x.tolist(), t.y.tolist()) for t in b.trajectories]
    assert a.n_steps == len(step_records(parquet_run))
    assert a.field is not None and a.field.shape == (32, 32) and a.goal == (24, 24)


def test_different_grids_are_said_and_drawn_apart(parquet_run, tmp_path, capsys):
    from tests.report.conftest import small_cfg
    from plume_capture.capture import capture_many

    other = capture_many([small_cfg(tmp_path, "g", env={"grid_size": [20, 12],
                                                         "goal_location": [10, 6]})])[0].run_dir
    out = tmp_path / "r.html"
    assert main([str(parquet_run), str(other), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "different grids (20x12, 32x32)" in err
    text = out.read_text()
    assert "different grids" in text and "grid: 20x12" in text and "grid: 32x32" in text
    assert len(re.findall(r'data-figure="run\d_trajectories"', text)) == 2


def test_reference_tool_run(tmp_path):
    out = tmp_path / "r.html"
    ref = "tests/fixtures/reference_runs/config_mode_64x64"
    assert main([ref, "-o", str(out)]) == 0
    rows = table_rows(out.read_text())
    eps = [json.loads(x) for x in gzip.open(f"{ref}/episodes.jsonl.gz", "rt")]
    assert len(rows) == 1 and int(rows[0][2]) == len(eps)
    assert rows[0][-1] == "-"  # the reference tool records no capture speed


@pytest.mark.parametrize("case", ["missing", "empty", "no_run_json", "status", "missing_part",
                                  "bad_sample", "png_is_file"])
def test_bad_input_one_line_exit_2(case, parquet_run, tmp_path, capsys):
    target = tmp_path / "x"
    args = []
    if case == "missing":
        pass
    elif case == "empty":
        target.mkdir()
    elif case == "no_run_json":
        shutil.copytree(parquet_run, target)
        (target / "run.json").unlink()
    elif case == "status":
        shutil.copytree(parquet_run, target)
        meta = json.loads((target / "run.json").read_text())
        meta["extra"]["status"] = "incomplete"
        (target / "run.json").write_text(json.dumps(meta))
    elif case == "missing_part":
        shutil.copytree(parquet_run, target)
        shutil.copy(target / "steps.jsonl.gz", target / "steps.part0002.jsonl.gz")
    elif case == "bad_sample":
        target = parquet_run
        args = ["--sample", "0"]
    elif case == "png_is_file":
        target = parquet_run
        (tmp_path / "f").write_text("")
        args = ["--png", str(tmp_path / "f")]
    out = tmp_path / "r.html"
    assert main([str(target), "-o", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("plume-nav-report: ") and err.count("\n") == 1
    assert not out.exists() and not list(tmp_path.glob("r.html*"))


def _jsonl_copy(run_dir, dest, reorder=False):
    shutil.copytree(run_dir, dest)
    for p in dest.glob("*.parquet"):
        p.unlink()
    if reorder:  # episodes' steps in reverse episode order
        lines = gzip.open(dest / "steps.jsonl.gz", "rt").read().splitlines(keepends=True)
        by_ep = {}
        for ln in lines:
            by_ep.setdefault(json.loads(ln)["episode_id"], []).append(ln)
        with gzip.open(dest / "steps.jsonl.gz", "wt") as f:
            for ep in sorted(by_ep, reverse=True):
                f.writelines(by_ep[ep])
    refresh_manifest(dest)  # run.json lists the files as they now are
    return dest


@pytest.mark.parametrize("reorder", [False, True])
def test_jsonl_pass_skips_chunks_yet_finds_every_step(parquet_run, tmp_path, monkeypatch, reorder):
    from plume_capture.report import data

    want = summarize_run(parquet_run, sample=4)
    monkeypatch.setattr(data, "STEP_CHUNK_BYTES", 4096)  # many chunks even in a small run
    parsed = []
    real = data.parse_chunk
    monkeypatch.setattr(data, "parse_chunk", lambda *a: parsed.append(1) or real(*a))
    run_dir = _jsonl_copy(parquet_run, tmp_path / "j", reorder)
    chunks = sum(1 for _ in data.GzipLines(run_dir / "steps.jsonl.gz", 4096))
    got = summarize_run(run_dir, sample=4)
    # In episode order only the chunks of the 4 sampled episodes are parsed; out of order, the
    # counts disagree and a full pass follows the partial one.
    assert (len(parsed) < chunks / 2) if not reorder else (len(parsed) > chunks)
    assert [(t.episode, t.x.tolist(), t.y.tolist()) for t in got.trajectories] == \
        [(t.episode, t.x.tolist(), t.y.tolist()) for t in want.trajectories]


def test_docs_sweep_example_works_as_written(tmp_path, monkeypatch):
    """docs/report.md's first two commands, run as written in a fresh directory."""
    import shlex
    from pathlib import Path

    from plume_capture.cli import capture as capture_cli

    doc = (Path(__file__).resolve().parents[2] / "docs" / "report.md").read_text()
    lines = [ln.split("  #")[0] for ln in re.search(r"```bash\n(.*?)```", doc, re.S).group(1).splitlines()]
    clis = {"plume-nav-capture": capture_cli.main, "plume-nav-report": main}
    monkeypatch.chdir(tmp_path)
    for ln in lines[:2]:
        prog, *args = shlex.split(ln)
        assert clis[prog](args) == 0, ln
    assert len(list((tmp_path / "results" / "sweep").glob("run-*/run.json"))) == 4
    assert len(list((tmp_path / "sweep-png").glob("*.png"))) == 9 and (tmp_path / "sweep.html").is_file()


def test_names_holding_math_text_are_drawn_as_typed(tmp_path, capsys):
    """An experiment name with a ``$…$`` pair (and a lone, unbalanced ``$``) is plain text."""
    from plume_capture.capture import capture_many

    from .conftest import small_cfg

    name = "x$alpha^{2$y$_1 $"
    res = capture_many([small_cfg(tmp_path, name, episodes=3)])[0]
    out = tmp_path / "r.html"
    assert main([str(res.run_dir), "-o", str(out)]) == 0, capsys.readouterr().err
    assert out.stat().st_size > 0


# ------------------------------------------------------------------------------------------------
# Issue 31: the report shows only a run whose files are what run.json says, and never hangs


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["steps.jsonl.gz", "episodes.parquet", "size", "listed_file_gone"])
def test_a_run_whose_files_fail_their_sha256_is_refused(damage, parquet_run, tmp_path, capsys):
    """Each damage leaves what the report reads readable: without the check it is shown as fact."""
    target = tmp_path / "x"
    shutil.copytree(parquet_run, target)
    if damage == "size":  # a byte appended after the last gzip member's end is not read by the report
        with open(target / "steps.jsonl.gz", "ab") as f:
            f.write(gzip.compress(b""))
    elif damage == "listed_file_gone":
        (target / "steps.jsonl.gz").unlink()  # the report reads the Parquet
    elif damage.endswith(".parquet"):
        meta = json.loads((target / "run.json").read_text())
        meta["extra"]["files"][damage]["sha256"] = "0" * 64
        (target / "run.json").write_text(json.dumps(meta))
    else:
        _flip_a_byte(target / damage)
    out = tmp_path / "r.html"
    assert main([str(target), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "plume-nav-validate gives a full report" in err, err
    assert any(code in err for code in ("SHA256_MISMATCH", "SIZE_MISMATCH", "FILE_MISSING")), err
    assert not out.exists()


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_fifo_a_device_or_a_gzip_bomb_is_refused_in_seconds(kind, parquet_run, tmp_path):
    target = tmp_path / "x"
    shutil.copytree(parquet_run, target)
    for p in target.glob("*.parquet"):
        p.unlink()
    refresh_manifest(target)
    HOSTILE[kind](target / "steps.jsonl.gz")
    out = tmp_path / "r.html"
    code, err, secs = run_cli("plume_capture.cli.report", target, "-o", out, deadline=60)
    assert code == 2 and len(err) == 1 and "steps.jsonl.gz" in err[0], (code, err)
    assert not out.exists() and secs < 15, secs


def test_a_changed_movie_is_not_drawn(tmp_path):
    from plume_capture.capture import capture
    from plume_capture.config import complete_config
    from plume_capture.sim.synth import make_movie

    movie = make_movie(tmp_path / "m.npy", frames=5, height=12, width=16, seed=3)
    run_dir = capture(complete_config({
        "output": str(tmp_path / "runs"), "experiment": "mv", "episodes": 3, "seed": 1,
        "env": {"plume": "movie", "max_steps": 20}, "movie": {"path": str(movie)},
        "engine": {"kind": "local", "quiet": True}})).run_dir
    assert summarize_run(run_dir).field is not None
    make_movie(movie, frames=5, height=12, width=16, seed=4)
    s = summarize_run(run_dir)
    assert s.field is None and s.field_note == "field not drawn: the movie file changed since the capture"


def test_an_output_that_is_a_directory_is_one_line_exit_2(parquet_run, tmp_path, capsys):
    assert main([str(parquet_run), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a directory" in err, err
