"""The readers README.md and docs/format.md show read every part of a run: each documented line,
run as written on a multi-shard run and on a rotated one-shard run, gives run.json's row count."""
from __future__ import annotations

import glob
import json
import re
from pathlib import Path

import duckdb
import pandas
import polars
import pyarrow
import pyarrow.parquet  # noqa: F401 - the snippets say pyarrow.parquet.read_table
import pytest

from capture_helpers import config
from plume_capture.capture import capture
from plume_capture.readback.load import load_run

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    small = dict(seed=5, parquet=True, env={"grid_size": [32, 32], "max_steps": 60})
    multi = capture(config(output=str(out / "m"), episodes=30, **small,
                           engine={"kind": "local", "threads": 2, "shard_episodes": 4})).run_dir
    rotated = capture(config(output=str(out / "r"), episodes=12, rotate_size=3000, **small,
                             engine={"kind": "local"})).run_dir
    for run in (multi, rotated):
        assert len(glob.glob(f"{run}/steps*.jsonl.gz")) > 2
    assert Path(multi, "steps.parquet").is_dir() and Path(rotated, "steps.parquet").is_file()
    return [str(multi), str(rotated)]


def _rows(x) -> int:
    if isinstance(x, duckdb.DuckDBPyRelation):
        x = x.df()
    if isinstance(x, polars.DataFrame):
        return x.height
    if isinstance(x, pyarrow.Table):
        return x.num_rows
    return len(x)


def _block(doc: Path, marker: str) -> list[str]:
    blocks = [b for b in re.findall(r"```python\n(.*?)```", doc.read_text(), re.S) if marker in b]
    assert len(blocks) == 1, (doc, marker)
    return [ln for ln in blocks[0].splitlines() if ln.strip() and not ln.startswith(("from ", "import "))]


def _check(lines: list[str], run: str) -> int:
    want = json.loads(Path(run, "run.json").read_text())["extra"]["counts"]["steps"]
    ns = {"RUN": run, "load_run": load_run, "pandas": pandas, "polars": polars, "pyarrow": pyarrow,
          "duckdb": duckdb, "glob": glob}
    for ln in lines:
        code = ln.split("#")[0].strip()
        value = eval(code.split("=", 1)[1] if re.match(r"\w+ = ", code) else code, ns)  # noqa: S307 - the docs' code
        assert _rows(value) == want, (ln, run)
    return len(lines)


def test_readme_first_screen_readers(runs):
    lines = _block(REPO / "README.md", "load_run(RUN)")
    assert len(lines) >= 7
    for run in runs:
        _check(lines, run)
    head = (REPO / "README.md").read_text()[:4000]  # the first screen says it
    assert "several parts" in head and "load_run" in head and "steps.parquet" in head


def test_format_md_readers(runs):
    lines = _block(REPO / "docs" / "format.md", "read_parquet")
    assert len(lines) >= 6
    for run in runs:
        _check(lines, run)


def test_no_doc_reads_the_first_part_alone():
    call = re.compile(r"(read_json|read_ndjson|scan_ndjson|read_csv|open)\([^)\n]*\b(steps|episodes)\.jsonl\.gz")
    assert call.search('polars.read_ndjson(RUN / "steps.jsonl.gz")')
    assert [(d.name, m.group(0)) for d in DOCS for m in call.finditer(d.read_text())] == []
