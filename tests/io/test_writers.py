"""Artifact writers: exact JSON Lines, gzip members, rotation, streaming Parquet."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from plume_capture.io.files import JsonlPartWriter
from plume_capture.io.jsonl_encode import EMPTY_GZIP_MEMBER, EncodedJsonl, configure_threads, encode_jsonl
from plume_capture.io.parquet import ParquetStreamWriter
from io_helpers import refuse_o_direct, supports_o_direct
from plume_capture.spec import EPISODE_SCHEMA, STEP_SCHEMA, episode_id, part_name

RUN_ID = "run-20261127-102521-ab12cd34"
EDGE_FLOATS = [0.0, -0.0, 1.0, -1.0, 0.1, -0.01, 1e15, 1e16, 1e17, 1e21, 1e22, 1e-7, 2.5e-5,
               5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 9007199254740993.0,
               65.14598989960932, 0.9987507462501526, 1795775121.9385302, 123456.0]


def random_floats(rng: np.random.Generator, n: int) -> np.ndarray:
    """Doubles of every kind: random bit patterns, subnormals, float32 values, round numbers."""
    with np.errstate(invalid="ignore"):
        f32 = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(np.float32).astype(np.float64)
    kinds = [
        rng.integers(0, 2**64, n, dtype=np.uint64).view(np.float64),
        rng.integers(0, 2**52, n, dtype=np.uint64).view(np.float64),  # subnormals
        f32,
        rng.random(n).astype(np.float32).astype(np.float64),
        np.exp(rng.uniform(-745, 709, n)) * rng.choice([-1.0, 1.0], n),
        rng.integers(-(10**6), 10**6, n).astype(np.float64),
        np.round(rng.random(n) * 100, 2),
        np.ldexp(1.0, rng.integers(-1074, 1024, n)),
    ]
    x = np.concatenate(kinds + [np.array(EDGE_FLOATS)])
    x = x[np.isfinite(x)]
    return rng.permutation(x)


def random_steps(rng: np.random.Generator, n: int, *, obs_len=(1, 1), exotic=False) -> pa.Table:
    """Step records of the real schema: random walk on 128x128, episodes of random length."""
    lengths = rng.integers(1, 40, size=n)
    ep = np.repeat(np.arange(len(lengths)), lengths)[:n]
    step = np.ones(n, np.int64)
    same = np.r_[False, ep[1:] == ep[:-1]]
    for i in range(1, n):  # small n only
        step[i] = step[i - 1] + 1 if same[i] else 1
    last = np.r_[ep[1:] != ep[:-1], True]
    pos = np.abs(np.cumsum(rng.integers(-1, 2, size=(n, 2)), axis=0)) % 128
    x, y = pos[:, 0].astype(np.int64), pos[:, 1].astype(np.int64)
    dist = np.hypot(x - 64.0, y - 64.0)
    n_obs = rng.integers(obs_len[0], obs_len[1] + 1, size=n)
    obs = np.exp(-rng.random(int(n_obs.sum())) * 5).astype(np.float32).astype(np.float64)
    reward = np.where(last & (rng.random(n) < 0.5), 1.0, -0.01)
    ts = 1795775121.938412 + np.floor(np.arange(n) / 7) * 1e-3
    seed = 123 + ep
    eids = [episode_id(int(e)) for e in ep]
    if exotic:
        floats = random_floats(rng, n)[:n]
        dist = np.abs(floats)
        ts = floats
        reward = np.resize(np.array(EDGE_FLOATS), n)
        x = rng.integers(-(2**63), 2**63 - 1, n, endpoint=True)
        x[:2] = [-(2**63), 2**63 - 1]
        eids = [f"ep-{e}-\"q\"\\ \x00\x01\x1f\x7f é漢字😀 \u2028</s>\n\t" for e in ep]
    cols = {
        "action": pa.array(rng.integers(0, 4, n)),
        "agent_position": pa.StructArray.from_arrays([pa.array(x), pa.array(y)], names=["x", "y"]),
        "distance_to_goal": pa.array(dist),
        "episode_id": pa.array(eids),
        "observation_summary": pa.ListArray.from_arrays(
            pa.array(np.r_[0, np.cumsum(n_obs)].astype(np.int32)), pa.array(obs)),
        "reward": pa.array(reward),
        "run_id": pa.array([RUN_ID] * n),
        "schema_version": pa.array(["0.1"] * n),
        "seed": pa.array(seed),
        "step": pa.array(step),
        "terminated": pa.array(last & (reward > 0)),
        "truncated": pa.array(last & (reward < 0)),
        "ts": pa.array(ts),
    }
    return pa.table(cols).cast(STEP_SCHEMA)


def random_episodes(rng: np.random.Generator, n: int) -> pa.Table:
    steps = rng.integers(1, 1000, n)
    dur = rng.random(n) * 50
    term = rng.random(n) < 0.3
    cols = {
        "avg_step_time_ms": pa.array(dur / steps),
        "duration_ms": pa.array(dur),
        "episode_id": pa.array([episode_id(i) for i in range(n)]),
        "final_distance_to_goal": pa.array(rng.random(n) * 90),
        "final_position": pa.StructArray.from_arrays(
            [pa.array(rng.integers(0, 128, n)), pa.array(rng.integers(0, 128, n))], names=["x", "y"]),
        "run_id": pa.array([RUN_ID] * n),
        "schema_version": pa.array(["0.1"] * n),
        "terminated": pa.array(term),
        "total_reward": pa.array(np.cumsum(np.full(n, -0.01)) + term),
        "total_steps": pa.array(steps),
        "truncated": pa.array(~term),
    }
    return pa.table(cols).cast(EPISODE_SCHEMA)


def text_of(enc: EncodedJsonl) -> bytes:
    return gzip.decompress(b"".join(enc.members))


def same_value(a, b) -> bool:
    """Equality with floats compared bit for bit and types (int/float/bool) kept apart."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return a == b


def assert_text_matches(text: bytes, table: pa.Table) -> None:
    assert text.endswith(b"\n") or table.num_rows == 0
    lines = text.decode("utf-8").split("\n")[:-1]
    expected = table.to_pylist()
    assert len(lines) == len(expected)
    for line, record in zip(lines, expected):
        parsed = json.loads(line)
        assert list(parsed) == table.column_names
        assert same_value(parsed, record), (line, record)


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(20261127)


# ---------------------------------------------------------------------------------------------
# encode_jsonl
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("block_bytes", [None, 65536, 700])
@pytest.mark.parametrize("chunk_rows", [None, 64, 1000])
def test_step_records_round_trip_exactly(rng, block_bytes, chunk_rows):
    table = random_steps(rng, 3000, obs_len=(0, 4))
    enc = encode_jsonl(table, block_bytes=block_bytes, _chunk_rows=chunk_rows)
    assert_text_matches(text_of(enc), table)
    assert sum(enc.rows) == table.num_rows


def test_exotic_values_round_trip_exactly(rng):
    table = random_steps(rng, 2000, obs_len=(0, 6), exotic=True)
    enc = encode_jsonl(table, block_bytes=4096, _chunk_rows=128)
    assert_text_matches(text_of(enc), table)


def test_episode_records_round_trip_exactly(rng):
    table = random_episodes(rng, 500)
    assert_text_matches(text_of(encode_jsonl(table)), table)


def test_text_is_identical_to_polars_write_ndjson(rng):
    pl = pytest.importorskip("polars")
    for table in (random_steps(rng, 2000, obs_len=(0, 3)), random_episodes(rng, 300),
                  random_steps(rng, 500, exotic=True).drop_columns(["episode_id"])):
        out = io.BytesIO()
        pl.from_arrow(table).write_ndjson(out)
        assert text_of(encode_jsonl(table, _chunk_rows=100)) == out.getvalue()


def test_floats_are_shortest_round_trip_and_look_like_floats(rng):
    x = random_floats(rng, 25_000)  # ~200k values of every magnitude
    lines = text_of(encode_jsonl(pa.table({"v": x}))).decode().split("\n")[:-1]
    tokens = [line[len('{"v":') : -1] for line in lines]

    def digits(s):
        return len(s.lower().split("e")[0].replace("-", "").replace(".", "").strip("0")) or 1

    for tok, v in zip(tokens, x.tolist()):
        parsed = json.loads(tok)
        assert isinstance(parsed, float) and struct.pack("<d", parsed) == struct.pack("<d", v), tok
        assert digits(tok) <= digits(repr(v)), (tok, repr(v))
    as_list = pa.table({"l": pa.ListArray.from_arrays(pa.array([0, len(x)], pa.int32()), x)})
    assert same_value(json.loads(text_of(encode_jsonl(as_list)))["l"], x.tolist())


def test_integral_floats_keep_a_float_form():
    x = [0.0, -0.0, 1.0, 2.0, -3.0, 1e15, 1e16, 1e300, 123456789.0]
    text = text_of(encode_jsonl(pa.table({"f": x, "g": list(reversed(x))})))
    for line, v in zip(text.decode().splitlines(), x):
        parsed = json.loads(line)
        assert isinstance(parsed["f"], float) and isinstance(parsed["g"], float)
        assert math.copysign(1, parsed["f"]) == math.copysign(1, v)
    assert text.startswith(b'{"f":0.0,"g":123456789.0}\n{"f":-0.0,')


def test_float32_columns_are_written_as_their_float64_value():
    v = np.array([0.1, 1 / 3, 65.14598989960932], np.float32)
    table = pa.table({"o": pa.array(v), "l": pa.array([[float(a)] for a in v], pa.list_(pa.float32()))})
    for line, f in zip(text_of(encode_jsonl(table)).decode().splitlines(), v.astype(np.float64)):
        rec = json.loads(line)
        assert rec["o"] == float(f) and rec["l"] == [float(f)]
    assert b'"o":0.10000000149011612' in text_of(encode_jsonl(table))


def test_strings_are_escaped_and_unicode_kept():
    values = ['plain', 'q"uote', "back\\slash", "ctl\x00\x01\x08\x0c\x1f\x7f", "new\nline\ttab\r",
              "é漢字😀\U0010ffff", "\u2028\u2029", "</script>", ""]
    table = pa.table({"s": values, 'k"e\\y\n': list(range(len(values))),
                      "ls": [values[: i % 4] for i in range(len(values))]})
    text = text_of(encode_jsonl(table))
    assert_text_matches(text, table)
    assert "é漢字😀".encode() in text  # UTF-8, not \u escapes
    # one column needing escapes, one that does not, one constant
    table2 = pa.table({"a": values, "b": [f"x{i}" for i in range(len(values))], "c": ["\n"] * len(values)})
    assert_text_matches(text_of(encode_jsonl(table2)), table2)


def test_constant_and_single_row_columns(rng):
    table = random_steps(rng, 1)
    assert_text_matches(text_of(encode_jsonl(table)), table)
    const = pa.table({"i": [7] * 5, "b": [True] * 5, "f": [-0.01] * 5, "s": ["r"] * 5, "e": [""] * 5,
                      "l": [[1.5]] * 5, "z": [-0.0] * 5})
    assert_text_matches(text_of(encode_jsonl(const)), const)
    # every value literal: no value columns left for the kernel
    for t in (const.drop_columns(["l"]), random_episodes(rng, 1), pa.table({"a": [1]}), pa.table({})):
        enc = encode_jsonl(t, block_bytes=30, _chunk_rows=2)
        assert_text_matches(text_of(enc), t)
        assert all(raw <= 30 or rows == 1 for raw, rows in zip(enc.raw_sizes, enc.rows))
    # long runs of one float: the text repeats a token formatted once
    runs = pa.table({"f": np.repeat([-2.2250738585072014e-308, 1.0, 0.1], 2000)})
    assert_text_matches(text_of(encode_jsonl(runs, _chunk_rows=1500)), runs)
    mixed_zero = pa.table({"z": [0.0, -0.0, 0.0]})  # equal as floats, different bits
    assert text_of(encode_jsonl(mixed_zero)) == b'{"z":0.0}\n{"z":-0.0}\n{"z":0.0}\n'


def test_other_value_types():
    table = pa.table({
        "i8": pa.array([-128, 127], pa.int8()), "u64": pa.array([0, 2**63 - 1], pa.uint64()),
        "li": pa.array([[1, -2], []], pa.list_(pa.int64())), "lb": [[True, False], [False]],
        "fl": pa.array([[0.5, 1.0], [2.0, 3.0]], pa.list_(pa.float64(), 2)),
        "d": pa.array(["a", "b"]).dictionary_encode(), "nested": [{"p": {"q": 1.5}}, {"p": {"q": 2.0}}],
        "ll": pa.array([[0.25], [1e-300]], pa.large_list(pa.float64())),
    })
    assert_text_matches(text_of(encode_jsonl(table)), table)
    with pytest.raises(ValueError, match="int64"):
        encode_jsonl(pa.table({"u": pa.array([2**64 - 1], pa.uint64())}))
    with pytest.raises(TypeError, match="not supported"):
        encode_jsonl(pa.table({"b": pa.array([b"x"], pa.binary())}))


def test_sliced_and_chunked_tables(rng):
    table = random_steps(rng, 1000, obs_len=(0, 3))
    sliced = table.slice(137, 500)
    assert_text_matches(text_of(encode_jsonl(sliced, _chunk_rows=64)), sliced)
    chunked = pa.concat_tables([table.slice(0, 300), table.slice(300)])
    assert text_of(encode_jsonl(chunked)) == text_of(encode_jsonl(table))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_floats_raise(rng, bad):
    table = random_steps(rng, 50)
    dist = table.column("distance_to_goal").to_numpy().copy()
    dist[17] = bad
    with pytest.raises(ValueError, match="distance_to_goal"):
        encode_jsonl(table.set_column(2, "distance_to_goal", pa.array(dist)))
    with pytest.raises(ValueError, match="observation_summary"):
        encode_jsonl(pa.table({"observation_summary": [[0.5], [1.0, bad]]}))


def test_nulls_raise():
    with pytest.raises(ValueError, match="null"):
        encode_jsonl(pa.table({"a": [1, None]}))
    with pytest.raises(ValueError, match="p.x"):
        encode_jsonl(pa.table({"p": pa.array([{"x": 1}, {"x": None}])}))
    with pytest.raises(ValueError, match="null list elements"):
        encode_jsonl(pa.table({"l": [[1.0, None]]}))


def test_empty_table_gives_no_members():
    enc = encode_jsonl(STEP_SCHEMA.empty_table())
    assert enc == EncodedJsonl([], [], [])
    assert encode_jsonl(EPISODE_SCHEMA.empty_table(), block_bytes=65536).members == []


def test_bad_arguments():
    t = pa.table({"a": [1]})
    with pytest.raises(ValueError):
        encode_jsonl(t, block_bytes=0)
    with pytest.raises(ValueError):
        encode_jsonl(t, level=4)


@pytest.mark.parametrize("block", [1, 300, 4096, 65536])
def test_block_splitting_bound(rng, block):
    table = random_steps(rng, 1500, obs_len=(0, 30))
    enc = encode_jsonl(table, block_bytes=block, _chunk_rows=97)
    text = text_of(enc)
    assert len(enc.members) == len(enc.raw_sizes) == len(enc.rows)
    assert sum(enc.raw_sizes) == len(text) and sum(enc.rows) == table.num_rows
    pos = 0
    for member, raw, rows in zip(enc.members, enc.raw_sizes, enc.rows):
        part = gzip.decompress(member)  # each member is a complete gzip stream
        assert len(part) == raw and part == text[pos : pos + raw] and part.endswith(b"\n")
        assert part.count(b"\n") == rows >= 1
        assert raw <= block or rows == 1
        pos += raw
    # greedy: a member and the next record never fit together in one block
    lines = text.split(b"\n")[:-1]
    k = 0
    for raw, rows in zip(enc.raw_sizes[:-1], enc.rows[:-1]):
        k += rows
        assert raw + len(lines[k]) + 1 > block
    # the cut depends on the text only, not on how rows were chunked while encoding
    assert enc.members == encode_jsonl(table, block_bytes=block, _chunk_rows=1500).members
    assert enc.members == encode_jsonl(table, block_bytes=block, _chunk_rows=64).members


def test_single_member_mode_with_many_chunks(rng):
    table = random_steps(rng, 3000)
    enc = encode_jsonl(table, _chunk_rows=64)
    assert len(enc.members) == 1 and enc.rows == [3000]
    assert enc.raw_sizes == [len(text_of(enc))]
    assert text_of(enc) == text_of(encode_jsonl(table))


def test_compression_levels(rng):
    table = random_steps(rng, 800)
    texts = {level: text_of(encode_jsonl(table, level=level, block_bytes=8192)) for level in range(4)}
    assert len(set(texts.values())) == 1


def test_gzip_header_is_deterministic(rng):
    table = random_steps(rng, 200)
    a, b = encode_jsonl(table), encode_jsonl(table)
    assert a.members == b.members
    assert a.members[0][4:8] == b"\0\0\0\0"  # mtime 0


# ---------------------------------------------------------------------------------------------
# JsonlPartWriter
# ---------------------------------------------------------------------------------------------


def expected_packing(sizes: list[int], rotate: int | None) -> list[list[int]]:
    parts: list[list[int]] = []
    for s in sizes:
        if not parts or (rotate is not None and parts[-1] and sum(parts[-1]) + s > rotate):
            parts.append([])
        parts[-1].append(s)
    return parts


@pytest.mark.parametrize("rotate", [None, 1, 100, 1000, 5000, 10**9])
def test_rotation_packing(tmp_path, rng, rotate):
    shards = [random_steps(rng, n, obs_len=(0, 5)) for n in (700, 1, 300, 1200)]
    encs = [encode_jsonl(t, block_bytes=2048) for t in shards]
    w = JsonlPartWriter(tmp_path, "steps", rotate)
    for enc in encs:
        w.write(enc)
    files = w.close()
    sizes = [len(m) for e in encs for m in e.members]
    parts = expected_packing(sizes, rotate)
    assert [f.name for f in files] == [part_name("steps", k) for k in range(len(parts))]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f.name for f in files)
    assert [f.bytes for f in files] == [sum(p) for p in parts]
    for f, p in zip(files, parts):
        data = (tmp_path / f.name).read_bytes()
        assert len(data) == f.bytes and hashlib.sha256(data).hexdigest() == f.sha256
        assert f.rows == gzip.decompress(data).count(b"\n")
        assert f.bytes <= rotate or len(p) == 1 if rotate else True
    text = b"".join(gzip.decompress((tmp_path / f.name).read_bytes()) for f in files)
    assert text == b"".join(text_of(e) for e in encs)
    assert sum(f.rows for f in files) == sum(t.num_rows for t in shards)
    if rotate == 1:
        assert len(files) == len(sizes)


def test_rotated_parts_sort_lexically_in_data_order(tmp_path, rng):
    enc = encode_jsonl(random_steps(rng, 400), block_bytes=200)
    w = JsonlPartWriter(tmp_path, "steps", 1)
    w.write(enc)
    files = w.close()
    assert len(files) > 10
    names = [f.name for f in files]
    assert names[0] == "steps.jsonl.gz" and names[1] == "steps.part0001.jsonl.gz"
    assert sorted(names[1:]) == names[1:]


def test_no_rows_still_writes_a_valid_base_file(tmp_path):
    w = JsonlPartWriter(tmp_path, "episodes", 1000)
    w.write(encode_jsonl(EPISODE_SCHEMA.empty_table()))
    [info] = w.close()
    data = (tmp_path / "episodes.jsonl.gz").read_bytes()
    assert data == EMPTY_GZIP_MEMBER and info.rows == 0 and info.bytes == len(data)
    assert gzip.decompress(data) == b""
    assert subprocess.run(["zcat", tmp_path / "episodes.jsonl.gz"], capture_output=True).returncode == 0
    assert w.close() == [info]  # idempotent


def test_writer_refuses_existing_files(tmp_path):
    (tmp_path / "steps.jsonl.gz").write_bytes(b"")
    w = JsonlPartWriter(tmp_path, "steps", None)
    with pytest.raises(FileExistsError):
        w.write_member(EMPTY_GZIP_MEMBER, 0)
    with pytest.raises(ValueError):
        JsonlPartWriter(tmp_path, "steps", 0)


def test_abort_closes_without_finishing(tmp_path, rng):
    w = JsonlPartWriter(tmp_path, "steps", None)
    w.write(encode_jsonl(random_steps(rng, 10)))
    w.abort()
    with pytest.raises(ValueError):
        w.write_member(EMPTY_GZIP_MEMBER, 0)


def test_standard_readers_read_rotated_parts(tmp_path, rng):
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    table = random_steps(rng, 2000, obs_len=(1, 2))
    w = JsonlPartWriter(tmp_path, "steps", 20_000)
    for part in (table.slice(0, 777), table.slice(777)):
        w.write(encode_jsonl(part, block_bytes=65536 // 16))
    files = w.close()
    assert len(files) > 1
    paths = [tmp_path / f.name for f in files]
    expected = table.to_pylist()
    zcat = subprocess.run(["zcat", *paths], capture_output=True, check=True).stdout
    assert zcat == b"".join(gzip.open(p).read() for p in paths)
    assert_text_matches(zcat, table)
    # pandas' default float parser is not exact (last digit); precise_float=True is
    frame = pd.concat([pd.read_json(p, lines=True, compression="gzip", precise_float=True)
                       for p in paths], ignore_index=True)
    assert frame["step"].tolist() == [r["step"] for r in expected]
    assert frame["distance_to_goal"].tolist() == [r["distance_to_goal"] for r in expected]
    assert frame["agent_position"].tolist() == [r["agent_position"] for r in expected]
    pframe = pl.concat([pl.read_ndjson(p) for p in paths])
    assert pframe["observation_summary"].to_list() == [r["observation_summary"] for r in expected]
    assert pframe["ts"].to_list() == [r["ts"] for r in expected]


def test_gzip_members_are_standard(rng):
    enc = encode_jsonl(random_steps(rng, 300), block_bytes=1000)
    stream = b"".join(enc.members)
    d = zlib.decompressobj(wbits=31)  # stdlib zlib, member by member
    out, rest = b"", stream
    while rest:
        out += d.decompress(rest)
        rest = d.unused_data
        d = zlib.decompressobj(wbits=31)
    assert out == text_of(enc)


# ---------------------------------------------------------------------------------------------
# ParquetStreamWriter
# ---------------------------------------------------------------------------------------------

META = {"schema_version": "0.1", "run_id": RUN_ID, "config_hash": "ab" * 32}


def write_parquet(path, tables, schema=STEP_SCHEMA, **kw):
    w = ParquetStreamWriter(path, schema, META, **kw)
    for t in tables:
        w.write(t)
    return w.close()


@pytest.mark.parametrize("copy_pending", [True, False])
def test_parquet_round_trip_and_metadata(tmp_path, rng, copy_pending):
    tables = [random_steps(rng, n, obs_len=(0, 3)) for n in (500, 0, 1, 1200)]
    info = write_parquet(tmp_path / "steps.parquet", tables, row_group_rows=400, copy_pending=copy_pending)
    data = (tmp_path / "steps.parquet").read_bytes()
    assert info.name == "steps.parquet" and info.bytes == len(data) and info.rows == 1701
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    f = pq.ParquetFile(tmp_path / "steps.parquet")
    kv = f.metadata.metadata
    assert {k.decode(): v.decode() for k, v in kv.items() if k != b"ARROW:schema"} == META
    assert [f.metadata.row_group(i).num_rows for i in range(f.num_row_groups)] == [400] * 4 + [101]
    assert f.metadata.row_group(0).column(0).compression == "ZSTD"
    back = f.read()
    assert back.schema.equals(STEP_SCHEMA, check_metadata=False)
    assert back.equals(pa.concat_tables(tables))


def test_parquet_equals_jsonl_values(tmp_path, rng):
    table = random_steps(rng, 1000, obs_len=(0, 4), exotic=True)
    write_parquet(tmp_path / "s.parquet", [table.slice(0, 10), table.slice(10)])
    assert_text_matches(text_of(encode_jsonl(table)), pq.read_table(tmp_path / "s.parquet"))


def test_parquet_standard_readers(tmp_path, rng):
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    duckdb = pytest.importorskip("duckdb")
    steps = random_steps(rng, 900, obs_len=(1, 2))
    episodes = random_episodes(rng, 60)
    write_parquet(tmp_path / "steps.parquet", [steps.slice(0, 450), steps.slice(450)], row_group_rows=256)
    write_parquet(tmp_path / "episodes.parquet", [episodes], schema=EPISODE_SCHEMA)
    expected = steps.to_pylist()
    frame = pd.read_parquet(tmp_path / "steps.parquet")
    assert frame["distance_to_goal"].tolist() == [r["distance_to_goal"] for r in expected]
    assert [list(v) for v in frame["observation_summary"]] == [r["observation_summary"] for r in expected]
    assert pl.read_parquet(tmp_path / "steps.parquet").to_dicts() == expected
    rows = duckdb.sql(f"select * from read_parquet('{tmp_path / 'steps.parquet'}')").fetchall()
    assert [r[1] for r in rows] == [r["agent_position"] for r in expected]
    assert [r[4] for r in rows] == [r["observation_summary"] for r in expected]
    n = duckdb.sql(f"select count(*), sum(total_steps) from '{tmp_path / 'episodes.parquet'}'").fetchall()[0]
    assert n == (60, sum(r["total_steps"] for r in episodes.to_pylist()))


def test_parquet_empty_and_errors(tmp_path, rng):
    info = write_parquet(tmp_path / "e.parquet", [], schema=EPISODE_SCHEMA)
    assert info.rows == 0 and pq.read_table(tmp_path / "e.parquet").num_rows == 0
    assert pq.read_schema(tmp_path / "e.parquet").equals(EPISODE_SCHEMA, check_metadata=False)
    with pytest.raises(FileExistsError):
        ParquetStreamWriter(tmp_path / "e.parquet", EPISODE_SCHEMA, META)
    w = ParquetStreamWriter(tmp_path / "x.parquet", EPISODE_SCHEMA, META)
    with pytest.raises(ValueError, match="schema"):
        w.write(random_steps(rng, 3))
    w.close()
    assert w.close().rows == 0


# ---------------------------------------------------------------------------------------------
# threads
# ---------------------------------------------------------------------------------------------


def test_configure_threads_before_and_after_polars_import():
    code = (
        "import sys\n"
        "from plume_capture.io.jsonl_encode import configure_threads\n"
        "assert 'polars' not in sys.modules, 'writers must import polars lazily'\n"
        "assert configure_threads(1)\n"
        "import polars\n"
        "assert polars.thread_pool_size() == 1\n"
        "assert configure_threads(1) and not configure_threads(2)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(ValueError):
        configure_threads(0)


@pytest.mark.skipif(shutil.which("zcat") is None, reason="zcat not installed")
def test_zcat_reads_multi_member_stream(tmp_path, rng):
    table = random_steps(rng, 500)
    path = tmp_path / "steps.jsonl.gz"
    path.write_bytes(b"".join(encode_jsonl(table, block_bytes=1024).members))
    out = subprocess.run(["zcat", path], capture_output=True, check=True).stdout
    assert_text_matches(out, table)


# ------------------------------------------------------------------------------------------------
# The artifact file: O_DIRECT through an aligned buffer, or the page cache where that is refused


@pytest.mark.parametrize("refused", [None, "open", "write"])
@pytest.mark.parametrize("seed", [0, 1])
def test_hashing_file_holds_every_byte_at_each_flush(tmp_path, monkeypatch, seed, refused):
    from plume_capture.io.files import _IO_BLOCK, _IO_BUFFER, HashingFile

    if not supports_o_direct(tmp_path):
        pytest.skip("the test directory's filesystem refuses O_DIRECT")
    if refused:
        refuse_o_direct(monkeypatch, refused)
    rng = np.random.default_rng(seed)
    sizes = [0, 1, _IO_BLOCK - 1, _IO_BLOCK, _IO_BLOCK + 1, _IO_BUFFER - 3, _IO_BUFFER, 3 * _IO_BUFFER + 17,
             *rng.integers(1, 200_000, 40).tolist()]
    rng.shuffle(sizes)
    path = tmp_path / "f.bin"
    f = HashingFile(path)
    assert f.direct is (refused != "open")
    want = bytearray()
    for i, n in enumerate(sizes):
        chunk = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert f.write(chunk if i % 2 else memoryview(chunk)) == n
        want += chunk
        if rng.random() < 0.4:
            f.flush()
            assert path.read_bytes() == want, i  # the journal may name this size
        assert f.size == f.tell() == len(want)
    f.close()
    assert f.direct is (refused is None)  # a refused write falls back to the page cache for good
    assert path.read_bytes() == want and f.hexdigest() == hashlib.sha256(want).hexdigest()
    with pytest.raises(FileExistsError):
        HashingFile(path)


def test_hashing_file_reopens_after_truncation(tmp_path):
    """Resume: truncate at any size (mid-block), reopen with the prefix's hash, append."""
    from plume_capture.io.files import _IO_BLOCK, HashingFile

    rng = np.random.default_rng(5)
    data = rng.integers(0, 256, 3 * _IO_BLOCK + 1000, dtype=np.uint8).tobytes()
    more = rng.integers(0, 256, 2 * _IO_BLOCK + 7, dtype=np.uint8).tobytes()
    for cut in (0, 1, _IO_BLOCK, 2 * _IO_BLOCK + 123, len(data)):
        path = tmp_path / f"r{cut}.bin"
        f = HashingFile(path)
        f.write(data)
        f.close(sync=False)
        import os

        os.truncate(path, cut)
        g = HashingFile.reopen(path, cut, hashlib.sha256(data[:cut]))
        g.write(more[:10])
        g.flush()
        assert path.read_bytes() == data[:cut] + more[:10]
        g.write(more[10:])
        g.close()
        assert path.read_bytes() == data[:cut] + more
        assert g.hexdigest() == hashlib.sha256(data[:cut] + more).hexdigest() and g.size == cut + len(more)
        assert g.direct is supports_o_direct(tmp_path)  # still bypassing the page cache


def test_hashing_file_without_o_direct(tmp_path, monkeypatch):
    """Platforms without O_DIRECT write through the page cache, same bytes."""
    import os

    from plume_capture.io.files import HashingFile

    monkeypatch.delattr(os, "O_DIRECT")
    f = HashingFile(tmp_path / "x.bin")
    assert f.direct is False
    f.write(b"abc" * 5000)
    f.flush()
    assert (tmp_path / "x.bin").read_bytes() == b"abc" * 5000
    f.close()


def test_python_float_text_is_polars_text():
    """Small runs format floats in Python while polars is not loaded; the text must be polars'."""
    import polars as pl

    from plume_capture.io.jsonl_encode import float_text

    rng = np.random.default_rng(7)
    x = np.concatenate([rng.standard_normal(20000) * 10.0 ** rng.integers(-320, 300, 20000), rng.random(5000),
                        -rng.random(5000) * 1e-5, 10.0 ** np.arange(-12, 25),
                        [5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -0.0, 0.0,
                         9.999999999999999e-06, 1e-05, -1.2345e-05, 9.999999999999998e15]])
    x = x[np.isfinite(x)]
    assert [float_text(v) for v in x.tolist()] == pl.Series(x).cast(pl.String).to_list()


def test_small_encode_without_polars_is_byte_identical(tmp_path):
    code = (
        "import sys, numpy as np, pyarrow as pa\n"
        "from plume_capture.io.jsonl_encode import encode_jsonl\n"
        "x = np.array([1e-05, 1e-07, 0.1, 1e16, -0.0, 2.5, 123.456, 5e-324])\n"
        "t = pa.table({'a': pa.array(x), 'b': pa.array(np.arange(len(x)))})\n"
        "first = b''.join(bytes(m) for m in encode_jsonl(t).members)\n"
        "assert 'polars' not in sys.modules\n"
        "import polars\n"
        "second = b''.join(bytes(m) for m in encode_jsonl(t).members)\n"
        "print(first == second and len(first) > 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "True", out.stderr[-2000:]


def test_tables_beyond_a_small_run_are_formatted_by_polars():
    """Python's repr is ~30x slower per value than polars: only small tables may use it."""
    from plume_capture.io.jsonl_encode import PYTHON_FLOATS_MAX_ROWS

    code = (
        "import sys, numpy as np, pyarrow as pa\n"
        "from plume_capture.io.jsonl_encode import encode_jsonl\n"
        f"t = pa.table({{'a': pa.array(np.random.default_rng(1).random({PYTHON_FLOATS_MAX_ROWS + 1}))}})\n"
        "encode_jsonl(t)\n"
        "print('polars' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "True", out.stderr[-2000:]
