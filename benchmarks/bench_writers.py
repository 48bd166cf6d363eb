"""Writer benchmark: records/s of the JSON Lines encoders and the Parquet writer, one core.

    python -m benchmarks.bench_writers [--rows 2000000] [--ts-run 1] [--repeat 3] [--json]
                                       [--verify-floats MILLIONS]

Data: step records of the real schema, a random oriented walk on 128x128 (moves on 1/3 of the
steps), reward -0.01, one float32-derived observation, episodes of 1000 steps. `--ts-run K`
gives K consecutive rows the same timestamp (rows of one kernel call share it; 1 = worst case).
Runs with POLARS_MAX_THREADS=1 like a Ray actor with one CPU. Reports the best of `--repeat`
runs as wall and CPU (process) time; the machine is shared, CPU time is the steadier figure.

Compared: encode_jsonl (isal level 1/2, one member or 64 KiB members), the plain polars
``write_ndjson`` + isal path it replaces, per-row ``json.dumps`` + stdlib gzip (the reference
tool's way, on fewer rows), the driver-side part writer (append + sha256), and Parquet zstd.
`--verify-floats N` additionally checks N million random doubles for exact shortest round trip.
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("POLARS_MAX_THREADS", "1")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from plume_capture.io.files import JsonlPartWriter  # noqa: E402
from plume_capture.io.jsonl_encode import configure_threads, encode_jsonl  # noqa: E402
from plume_capture.io.parquet import ParquetStreamWriter  # noqa: E402
from plume_capture.spec import STEP_SCHEMA  # noqa: E402

GRID = 128
SOURCE = (64.0, 64.0)
HEADINGS = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]])


def step_table(n: int, *, seed: int = 0, ts_run: int = 1, max_steps: int = 1000) -> pa.Table:
    """`n` realistic step records (see the module docstring)."""
    rng = np.random.default_rng(seed)
    step = np.arange(n) % max_steps + 1
    ep = np.arange(n) // max_steps
    action = rng.integers(0, 3, n)  # 0 forward, 1 left, 2 right
    heading = np.cumsum(np.where(action == 1, 1, np.where(action == 2, -1, 0))) % 4
    moves = HEADINGS[heading] * (action == 0)[:, None]
    walk = rng.integers(0, GRID, 2) + np.cumsum(moves, axis=0)
    pos = np.abs((walk + GRID - 1) % (2 * GRID - 2) - (GRID - 1))  # reflect into [0, GRID)
    x, y = pos[:, 0].astype(np.int64), pos[:, 1].astype(np.int64)
    dist = np.hypot(x - SOURCE[0], y - SOURCE[1])
    obs = np.exp(-(dist**2) / (2 * 20.0**2)).astype(np.float32).astype(np.float64)
    ts = 1795775121.938412 + (np.arange(n) // ts_run) * 3.7e-4
    eid = pa.array([f"ep-{i + 1:06d}" for i in range(int(ep[-1]) + 1)]).take(pa.array(ep))
    cols = {
        "action": pa.array(action),
        "agent_position": pa.StructArray.from_arrays([pa.array(x), pa.array(y)], names=["x", "y"]),
        "distance_to_goal": pa.array(dist),
        "episode_id": eid,
        "observation_summary": pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32)),
                                                        pa.array(obs)),
        "reward": pa.array(np.full(n, -0.01)),
        "run_id": pa.array(["run-20261127-102521-ab12cd34"] * n),
        "schema_version": pa.array(["0.1"] * n),
        "seed": pa.array(123 + ep),
        "step": pa.array(step),
        "terminated": pa.array(np.zeros(n, bool)),
        "truncated": pa.array(step == max_steps),
        "ts": pa.array(ts),
    }
    return pa.table(cols).cast(STEP_SCHEMA)


def measure(fn, rows: int, repeat: int) -> dict:
    best_wall = best_cpu = float("inf")
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        extra = fn()
        best_wall = min(best_wall, time.perf_counter() - w0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    out = {"rows": rows, "rows_per_s_wall": rows / best_wall, "rows_per_s_cpu": rows / best_cpu}
    if isinstance(extra, dict):
        out.update(extra)
    return out


def shards(table: pa.Table, rows: int = 100_000) -> list[pa.Table]:
    return [table.slice(i, rows) for i in range(0, table.num_rows, rows)]


def bench(n: int, ts_run: int, repeat: int) -> dict[str, dict]:
    import polars as pl
    from isal import isal_zlib

    table = step_table(n, ts_run=ts_run)
    parts = shards(table)  # the engine encodes shard by shard
    encode_jsonl(parts[0].slice(0, 100))  # compile / load the Numba cache
    res: dict[str, dict] = {}

    def enc(level, block):
        def run():
            encs = [encode_jsonl(p, level=level, block_bytes=block) for p in parts]
            size = sum(len(m) for e in encs for m in e.members)
            return {"gzip_bytes_per_row": size / n, "text_bytes_per_row": sum(sum(e.raw_sizes) for e in encs) / n}
        return run

    for level in (1, 2):
        for block in (None, 65536):
            res[f"encode_jsonl level={level} block={block}"] = measure(enc(level, block), n, repeat)

    def polars_ndjson():
        size = 0
        for p in parts:
            buf = io.BytesIO()
            pl.from_arrow(p).write_ndjson(buf)
            size += len(isal_zlib.compress(buf.getbuffer(), 1, wbits=31))
        return {"gzip_bytes_per_row": size / n}

    res["polars write_ndjson + isal level=1"] = measure(polars_ndjson, n, repeat)

    small = table.slice(0, min(n, 100_000))
    rows = small.to_pylist()

    def stdlib():
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb") as f:
            for r in rows:
                f.write((json.dumps(r) + "\n").encode())
        return {"gzip_bytes_per_row": len(buf.getvalue()) / len(rows)}

    res["stdlib json.dumps + gzip (rows as dicts)"] = measure(stdlib, len(rows), 1)

    encs = [encode_jsonl(p, block_bytes=65536) for p in parts]
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(10**6))

        def part_writer():
            d = Path(tmp) / f"j{next(counter)}"
            d.mkdir()
            w = JsonlPartWriter(d, "steps", 64 << 20)
            for e in encs:
                w.write(e)
            return {"files": len(w.close())}

        res["JsonlPartWriter append+sha256 (driver)"] = measure(part_writer, n, repeat)

        def parquet():
            path = Path(tmp) / f"p{next(counter)}.parquet"
            w = ParquetStreamWriter(path, STEP_SCHEMA, {"schema_version": "0.1", "run_id": "r", "config_hash": "h"})
            for p in parts:
                w.write(p)
            info = w.close()
            return {"bytes_per_row": info.bytes / n}

        res["ParquetStreamWriter zstd"] = measure(parquet, n, repeat)
    return res


def verify_floats(millions: float) -> dict:
    """Exact and shortest round trip of the float text on random doubles of every kind."""
    rng = np.random.default_rng(7)
    total = bad = longer = 0
    per = 1_000_000
    for k in range(int(np.ceil(millions))):
        with np.errstate(invalid="ignore"):
            x = np.concatenate([
                rng.integers(0, 2**64, per // 4, dtype=np.uint64).view(np.float64),
                rng.integers(0, 2**52, per // 8, dtype=np.uint64).view(np.float64),
                rng.integers(0, 2**32, per // 8, dtype=np.uint64).astype(np.uint32).view(np.float32).astype(np.float64),
                rng.random(per // 8).astype(np.float32).astype(np.float64),
                np.exp(rng.uniform(-745, 709, per // 8)),
                np.ldexp(1.0, rng.integers(-1074, 1024, per // 8)),
                np.round(rng.random(per // 8) * 1000, rng.integers(0, 6)),
            ])
        x = x[np.isfinite(x)]
        lines = gzip.decompress(b"".join(encode_jsonl(pa.table({"v": x})).members)).split(b"\n")[:-1]
        toks = [ln[5:-1].decode() for ln in lines]
        back = np.array([float(t) for t in toks])
        bad += int(np.count_nonzero(back.view(np.uint64) != x.view(np.uint64)))
        bad += sum(1 for t in toks if not any(c in t for c in ".e"))  # would parse as int

        def digits(s):
            return len(s.lower().split("e")[0].replace("-", "").replace(".", "").strip("0")) or 1

        longer += sum(1 for t, v in zip(toks, x.tolist()) if digits(t) > digits(repr(v)))
        total += len(x)
    return {"values": total, "not_exact_or_int_like": bad, "longer_than_shortest": longer}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--ts-run", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--verify-floats", type=float, default=0.0, metavar="MILLIONS")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    configure_threads(1)
    res = bench(args.rows, args.ts_run, args.repeat)
    if args.verify_floats:
        res["float check"] = verify_floats(args.verify_floats)
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(f"{args.rows} step rows, ts shared by {args.ts_run} consecutive rows, best of {args.repeat}, 1 thread")
    for name, r in res.items():
        if "rows_per_s_wall" in r:
            extra = ", ".join(f"{k}={v:.1f}" for k, v in r.items() if k not in ("rows", "rows_per_s_wall", "rows_per_s_cpu"))
            print(f"  {name:44s} {r['rows_per_s_wall'] / 1e6:6.2f} M rows/s wall  "
                  f"{r['rows_per_s_cpu'] / 1e6:6.2f} M rows/s cpu   {extra}")
        else:
            print(f"  {name}: {r}")


if __name__ == "__main__":
    main()
