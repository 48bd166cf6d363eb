"""Reading run directories back for determinism and fault tests (docs/spec.md §8).

``jsonl_text`` gives the decompressed JSON Lines of a run, every part in order, with the
wall-clock fields cut out of the text itself, so the remaining bytes are compared exactly.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from isal import igzip

from plume_capture.config import complete_config

WALL_CLOCK = ("ts", "run_id", "duration_ms", "avg_step_time_ms")
BASES = ("steps", "episodes")

_NUMBER = r"-?[0-9][0-9.eE+-]*"
_WALL_RE = re.compile(r'"(?:ts|duration_ms|avg_step_time_ms)":' + _NUMBER + r'|"run_id":"[^"\\]*"')


def config(**cfg) -> dict:
    """A complete config from a partial one (nested dicts for groups)."""
    return complete_config(cfg)


def jsonl_files(run_dir, base: str) -> list[Path]:
    """``<base>.jsonl.gz`` then its rotated parts, in order."""
    run_dir = Path(run_dir)
    return [run_dir / f"{base}.jsonl.gz"] + sorted(run_dir.glob(f"{base}.part*.jsonl.gz"))


def raw_text(run_dir, base: str) -> str:
    """The decompressed JSON Lines of every part, concatenated."""
    return "".join(igzip.decompress(f.read_bytes()).decode("utf-8") for f in jsonl_files(run_dir, base))


def strip_wall_clock(line: str) -> str:
    out = _WALL_RE.sub("", line)
    out = re.sub(r",{2,}", ",", out)
    return out.replace("{,", "{").replace(",}", "}")


def jsonl_text(run_dir, base: str) -> str:
    """Decompressed JSON Lines of all parts with the wall-clock fields removed from each line."""
    text = raw_text(run_dir, base)
    assert text == "" or text.endswith("\n"), "the text must end with a newline"
    return strip_wall_clock(text)  # works line by line: no key or value spans a newline


def records(run_dir, base: str) -> list[dict]:
    return [json.loads(ln) for ln in raw_text(run_dir, base).splitlines()]


def parquet_table(run_dir, base: str, *, drop_wall_clock: bool = True) -> pa.Table:
    t = pq.read_table(Path(run_dir) / f"{base}.parquet")
    return t.drop_columns([c for c in WALL_CLOCK if c in t.column_names]) if drop_wall_clock else t


def run_json(run_dir) -> dict:
    return json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8"))


def assert_same_records(a, b, *, parquet: bool = False) -> None:
    """Runs ``a`` and ``b`` hold the same records: JSON Lines text minus wall-clock fields, and
    (with ``parquet``) equal Parquet tables minus those columns."""
    for base in BASES:
        ta, tb = jsonl_text(a, base), jsonl_text(b, base)
        assert ta.count("\n") == tb.count("\n"), f"{base}: line counts differ"
        assert ta == tb, f"{base}: JSON Lines text differs"
        if parquet:
            pa_, pb = parquet_table(a, base), parquet_table(b, base)
            assert pa_.equals(pb), f"{base}: Parquet tables differ"


def assert_jsonl_equals_parquet(run_dir) -> None:
    """Within one run, the JSON Lines values are the Parquet values (all columns, exactly)."""
    for base in BASES:
        rows = records(run_dir, base)
        table = parquet_table(run_dir, base, drop_wall_clock=False)
        assert table.num_rows == len(rows)
        assert table.to_pylist() == rows, f"{base}: JSON Lines and Parquet differ"


def complete_runs(root) -> list[Path]:
    """Every directory under ``root`` with a run.json whose extra.status is complete."""
    out = []
    for p in Path(root).rglob("run.json"):
        try:
            if json.loads(p.read_text(encoding="utf-8")).get("extra", {}).get("status") == "complete":
                out.append(p.parent)
        except ValueError:
            pass
    return out


def capture_in_thread(cfg: dict, staging_root: Path, timeout: float = 120.0):
    """Start ``capture(cfg)`` on a thread and return once its first shard is journaled (or the run
    ended, or ``timeout`` passed): ``(thread, out, deadline)``; ``out`` gets "result" or "error"."""
    import threading
    import time

    from plume_capture.capture import capture

    out: dict = {}

    def run():
        try:
            out["result"] = capture(cfg)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            out["error"] = exc

    th = threading.Thread(target=run, daemon=True)
    th.start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and th.is_alive():  # mid-run: the first shard is journaled
        journals = list(Path(staging_root).glob(".*.partial/journal.jsonl"))
        if journals and journals[0].stat().st_size > 0:
            break
        time.sleep(0.02)
    return th, out, deadline
