"""Movies at dataset scale: the driver reads only metadata, workers open the movie themselves
(memory-mapped, or decoded once per node into a bounded cache), the cheap identity and what it
detects, and resume / replay refusing a changed movie."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from capture_helpers import assert_same_records, config, run_json
from plume_capture.errors import ConfigError, OperationalError
from plume_capture.sim import movie as movie_mod
from plume_capture.sim.movie import describe_movie, full_sha256, load_movie, open_frames
from plume_capture.sim.synth import make_movie


def _cfg(tmp_path, name, path, engine, episodes=9, **kw):
    return config(output=str(tmp_path / name), episodes=episodes, seed=3, parquet=True,
                  env={"plume": "movie", "max_steps": 40, "observation_type": "antennae"},
                  movie={"path": str(path), "step_policy": "wrap"}, engine=engine, **kw)


def _run(cfg):
    """A capture through the engine's own steps; returns (result, prepared) so the test can look
    at what the driver holds."""
    from plume_capture.capture.run import execute, open_new, prepare, session
    from plume_capture.config import resolve

    p = prepare(resolve(cfg))
    with session([p]):
        return execute(p, *open_new(p), False), p


@pytest.mark.parametrize("fmt", ["npy", "zarr"])
def test_ray_opens_the_movie_in_the_actors_same_records_as_in_process(tmp_path, ray_session, fmt):
    path = make_movie(tmp_path / f"puff.{fmt}", frames=24, height=30, width=36, seed=2)
    local, lp = _run(_cfg(tmp_path, "local", path, {"kind": "local"}))
    remote, rp = _run(_cfg(tmp_path, "ray", path, {"kind": "ray", "num_actors": 2, "shard_episodes": 2}))
    assert lp.physics.frames is not None  # in-process the driver runs the kernels
    assert rp.physics.frames is None  # on Ray the driver never opened the frames
    assert run_json(remote.run_dir)["extra"]["engine"]["actors"] == 2
    assert_same_records(local.run_dir, remote.run_dir, parquet=True)
    a, b = (run_json(r.run_dir)["extra"]["env"] for r in (local, remote))
    assert a == b and a["movie"]["format"] == fmt and len(a["movie"]["identity"]) == 64
    if fmt == "zarr":  # decoded once on this node, then memory-mapped by every process
        assert len(list(movie_mod.cache_dir().glob("*.npy"))) >= 1


def test_a_bad_value_found_by_the_nodes_is_bad_input_and_nothing_is_written(tmp_path, ray_session):
    """On Ray the driver reads no frames: the nodes' first open finds the NaN, before any shard."""
    from plume_capture.capture import capture

    arr = np.zeros((6, 8, 8), np.float32)
    arr[4, 2, 3] = np.nan
    path = tmp_path / "nan.npy"
    np.save(path, arr)
    with pytest.raises(ConfigError, match="non-finite value .* at frame 4, y=2, x=3"):
        capture(_cfg(tmp_path, "out", path, {"kind": "ray", "num_actors": 2}))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.json*"))


def _rss_of_mapping(path) -> int:
    """Resident bytes of this process's mappings of ``path`` (/proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and len(head) >= 5 and head[0][0] in "0123456789abcdef":
                inside = len(head) >= 6 and head[5] == str(path)
            elif inside and line.startswith("Rss:"):
                total += int(head[1]) * 1024
    return total


def test_a_runner_drops_the_movie_pages_it_touched_after_each_kernel_call(tmp_path, monkeypatch):
    from plume_capture.config import resolve
    from plume_capture.sim import runner as runner_mod
    from plume_capture.sim.plan import Shard
    from plume_capture.sim.runner import Job, ShardRunner

    frames = np.random.default_rng(0).random((64, 256, 256), dtype=np.float32)  # 16 MiB
    path = tmp_path / "big.npy"
    np.save(path, frames)
    spec = resolve(_cfg(tmp_path, "x", path, {"kind": "local"}))
    physics = spec.env.build()
    job = Job(env=physics.params, policy=spec.policy, run_id="r", base_seed=1, movie=physics.movie)
    small = ShardRunner(job)  # a movie this small stays mapped
    np.asarray(small.args.field).sum()  # touch every page: the whole movie is resident in this mapping
    small.run(Shard(0, 0, 20))
    assert _rss_of_mapping(path) >= 15 << 20
    monkeypatch.setattr(runner_mod, "MOVIE_MAPPED_BYTES", 8 << 20)  # as if it were large
    runner = ShardRunner(job)
    del small
    np.asarray(runner.args.field).sum()
    assert _rss_of_mapping(path) >= 15 << 20
    runner.run(Shard(0, 0, 20))
    assert _rss_of_mapping(path) < 1 << 20  # only the last call's pages were touched, and they were dropped
    np.testing.assert_array_equal(runner.args.field[7], frames[7])  # and come back on the next touch


def test_a_node_that_sees_another_movie_at_the_path_is_refused(tmp_path):
    from plume_capture.config import resolve
    from plume_capture.sim.runner import Job, ShardRunner

    path = make_movie(tmp_path / "m.npy", frames=6, height=8, width=8, seed=1)
    spec = resolve(_cfg(tmp_path, "x", path, {"kind": "local"}))
    physics = spec.env.build()
    job = Job(env=physics.params, policy=spec.policy, run_id="r", base_seed=1, movie=physics.movie)
    make_movie(path, frames=6, height=8, width=8, seed=2)  # what "this node" sees now
    with pytest.raises(OperationalError, match="is not the movie this run uses"):
        ShardRunner(job)
    path.unlink()
    with pytest.raises(OperationalError, match="cannot use movie .*does not exist"):
        ShardRunner(job)


# --- the identity ---------------------------------------------------------------------------------

def test_identity_follows_content_not_place_or_time(tmp_path):
    path = make_movie(tmp_path / "a.npy", frames=40, height=64, width=64, seed=1)  # 640 KiB: sampled
    ident = describe_movie(path)["identity"]
    os.utime(path, (1, 1))
    assert describe_movie(path)["identity"] == ident  # a touch is not a change
    copy = tmp_path / "elsewhere" / "a.npy"
    copy.parent.mkdir()
    shutil.copy(path, copy)
    shutil.copy(path.with_suffix(".json"), copy.with_suffix(".json"))
    assert describe_movie(copy)["identity"] == ident  # the same movie on another path (another node's mount)

    arr = np.load(path)
    changed = arr.copy()
    changed[0, 0, 0] += 0.5  # the first block is always sampled
    np.save(path, changed)
    assert describe_movie(path)["identity"] != ident
    np.save(path, arr[:-1])  # a frame fewer
    assert describe_movie(path)["identity"] != ident
    np.save(path, arr)
    assert describe_movie(path)["identity"] == ident
    path.with_suffix(".json").write_text(json.dumps({"fps": 99.0}))  # the attributes are part of it
    assert describe_movie(path)["identity"] != ident


def test_identity_trade_an_unsampled_edit_is_missed_the_full_hash_and_the_node_check_see_it(tmp_path):
    """The stated trade: the identity samples 64 blocks of 64 KiB; an in-place edit between them
    keeps it. ``full_sha256`` sees the edit, and so does the node's file-version key (a fresh
    validation of the frames)."""
    arr = np.zeros((64, 256, 256), np.float32)  # 16 MiB: 1/4 of it sampled
    path = tmp_path / "m.npy"
    np.save(path, arr)
    info = describe_movie(path)
    full = full_sha256(info)
    offset = movie_mod._npy_header(path)[3]
    gap = (path.stat().st_size - offset - movie_mod.SAMPLE_BYTES) // (movie_mod.SAMPLES - 1)
    middle = offset + gap // 2 + movie_mod.SAMPLE_BYTES  # between the first two sampled blocks
    with open(path, "r+b") as f:
        f.seek(middle - middle % 4)
        f.write(np.float32(np.nan).tobytes())
    assert describe_movie(path)["identity"] == info["identity"]  # missed by the sample
    with pytest.raises(ConfigError, match="non-finite value"):  # but this node checks the new version
        open_frames(info)
    with open(path, "r+b") as f:
        f.seek(middle - middle % 4)
        f.write(np.float32(0.25).tobytes())
    assert full_sha256(info) != full


def test_zarr_identity_sees_a_rewritten_chunk(tmp_path):
    zarr = pytest.importorskip("zarr")
    path = make_movie(tmp_path / "m.zarr", frames=32, height=24, width=24, seed=1)
    info = describe_movie(path)
    z = zarr.open_group(str(path), mode="r+")["concentration"]
    z[20, 5, 5] = 0.75  # one chunk file of several rewritten
    after = describe_movie(path)
    assert after["identity"] != info["identity"]
    with pytest.raises(OperationalError, match="is not the movie this run uses"):
        open_frames(info)
    assert open_frames(after)[20, 5, 5] == np.float32(0.75)


# --- the node's decoded cache ---------------------------------------------------------------------

def test_decoded_cache_is_bounded_least_recently_used_first(tmp_path, monkeypatch):
    pytest.importorskip("zarr")
    monkeypatch.setenv(movie_mod.CACHE_ENV, str(tmp_path / "cache"))
    one = 16 * 64 * 64 * 4  # bytes of one decoded movie
    monkeypatch.setenv(movie_mod.CACHE_GB_ENV, str(2.5 * one / 2**30))
    infos = [describe_movie(make_movie(tmp_path / f"m{i}.zarr", frames=16, height=64, width=64, seed=i))
             for i in range(3)]
    fields = [open_frames(i) for i in infos[:2]]
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2
    os.utime(next(iter(sorted((tmp_path / "cache").glob("*.npy"), key=os.path.getmtime))), (0, 0))
    open_frames(infos[0])  # m0 used again: m1 is now the least recently used
    third = open_frames(infos[2])
    cached = list((tmp_path / "cache").glob("*.npy"))
    assert len(cached) == 2
    np.testing.assert_array_equal(fields[1], load_movie(tmp_path / "m1.zarr")[0])  # still readable where mapped
    np.testing.assert_array_equal(third, np.asarray(__import__("zarr").open_group(
        str(tmp_path / "m2.zarr"), mode="r")["concentration"]))
    monkeypatch.setenv(movie_mod.CACHE_GB_ENV, str(0.5 * one / 2**30))
    with pytest.raises(OperationalError, match="more than the movie cache's bound"):
        open_frames(describe_movie(make_movie(tmp_path / "m9.zarr", frames=16, height=64, width=64, seed=9)))


# --- resume and replay refuse a changed movie -----------------------------------------------------

def _interrupted(tmp_path, path, engine):
    """A run begun and stopped before its first shard (its staging directory, manifest, no shards)."""
    from plume_capture.capture.run import open_new, prepare
    from plume_capture.config import resolve

    p = prepare(resolve(_cfg(tmp_path, "out", path, engine)))
    sink, lock = open_new(p)
    sink.abort()
    lock.release()
    return p.staging


def test_resume_refuses_a_changed_movie_and_finishes_an_unchanged_one(tmp_path):
    from plume_capture.capture import capture

    path = make_movie(tmp_path / "m.npy", frames=12, height=16, width=16, seed=1)
    staging = _interrupted(tmp_path, path, {"kind": "local"})
    arr, was = np.load(path), os.stat(path).st_mtime_ns
    np.save(path, arr[::-1].copy())  # same shape and size, other frames
    with pytest.raises(ConfigError, match="movie file changed"):
        capture(None, resume=str(staging))
    np.save(path, arr)
    with pytest.raises(ConfigError, match="movie file changed since the run began.*movie.file_version.*touch -d"):
        capture(None, resume=str(staging))  # same bytes, another modification time
    os.utime(path, ns=(was, was))  # what the refusal suggests for the same content
    done = capture(None, resume=str(staging))
    fresh = capture(_cfg(tmp_path, "fresh", path, {"kind": "local"}))
    assert_same_records(fresh.run_dir, done.run_dir)


def test_resume_refuses_an_edit_between_the_sampled_blocks(tmp_path):
    """The sampled identity reads 64 blocks of 64 KiB: an in-place edit of the same size between two
    of them leaves it unchanged, and the file's modification time refuses the resume."""
    from plume_capture.capture import capture
    from plume_capture.sim.movie import SAMPLE_BYTES, SAMPLES, describe_movie

    path = make_movie(tmp_path / "m.npy", frames=20, height=256, width=256, seed=1)
    assert os.path.getsize(path) > SAMPLES * SAMPLE_BYTES
    staging = _interrupted(tmp_path, path, {"kind": "local"})
    before = describe_movie(path)["identity"]
    arr = np.load(path, mmap_mode="r+")
    arr.reshape(-1)[(SAMPLE_BYTES + 4096) // 4] += 1.0  # between the first two sampled blocks
    arr.flush()
    del arr
    assert describe_movie(path)["identity"] == before  # the trade the sampled identity makes
    with pytest.raises(ConfigError, match="movie file changed since the run began"):
        capture(None, resume=str(staging))


def test_export_and_replay_refuse_an_edit_between_the_sampled_blocks(tmp_path, capsys):
    """run.json records the movie's file version beside its identity: readers that recompute from
    the movie refuse an edit the sampled identity misses, as resume does."""
    from plume_capture.capture import capture
    from plume_capture.cli.export import main as export_main
    from plume_capture.readback.replay import EnvChanged, replay_run
    from plume_capture.sim.movie import SAMPLE_BYTES, describe_movie

    path = make_movie(tmp_path / "m.npy", frames=20, height=256, width=256, seed=1)
    run = capture(_cfg(tmp_path, "out", path, {"kind": "local"}, episodes=2)).run_dir
    before = describe_movie(path)["identity"]
    arr = np.load(path, mmap_mode="r+")
    arr.reshape(-1)[(SAMPLE_BYTES + 4096) // 4] += 1.0
    arr.flush()
    del arr
    assert describe_movie(path)["identity"] == before
    with pytest.raises(EnvChanged, match="movie file changed since the capture.*file_version"):
        replay_run(run)
    assert export_main([str(run), "--to", "hf", str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "the movie file changed since the capture" in err, err
    assert not (tmp_path / "hf").exists()


def test_replay_refuses_a_changed_movie(tmp_path):
    from plume_capture.capture import capture
    from plume_capture.readback.replay import replay_run

    path = make_movie(tmp_path / "m.npy", frames=12, height=16, width=16, seed=1)
    run = capture(_cfg(tmp_path, "out", path, {"kind": "local"}, episodes=3)).run_dir
    assert replay_run(run)["ok"]
    make_movie(path, frames=12, height=16, width=16, seed=2)
    with pytest.raises(ConfigError, match="changed since the"):  # also the wording of run_physics (readers branch)
        replay_run(run)


# --- the reference's canonical Zarr layout --------------------------------------------------------

def _canonical(path):
    meta = json.loads((path / ".zattrs").read_text())
    arr = json.loads((path / "concentration" / ".zarray").read_text())
    dims = json.loads((path / "concentration" / ".zattrs").read_text())["_ARRAY_DIMENSIONS"]
    return meta, arr, dims, json.loads((path / "manifest.json").read_text())


def test_canonical_zarr_round_trip_from_npy_hdf5_and_zarr(tmp_path):
    pytest.importorskip("zarr")
    h5py = pytest.importorskip("h5py")
    import subprocess
    import sys

    from plume_capture.sim.movie import convert
    from plume_capture.sim.synth import puff_field

    frames = puff_field(20, 100, 70, seed=1)
    src = tmp_path / "m.npy"
    np.save(src, frames)
    src.with_suffix(".json").write_text(json.dumps({"fps": 12.0, "source_location_px": [3, 50]}))
    out = convert(src, tmp_path / "m.zarr", pixel_to_grid=(0.5, 0.25), origin=(1.0, 2.0))
    meta, arr, dims, manifest = _canonical(out)
    assert meta == {"schema_version": "1.0.0", "fps": 12.0, "source_dtype": "float32", "pixel_to_grid": [0.5, 0.25],
                    "origin": [1.0, 2.0], "extent": [50.0, 17.5], "source_location_px": [3, 50]}
    assert arr["zarr_format"] == 2 and arr["dtype"] == "<f4" and arr["chunks"] == [8, 64, 64]
    assert arr["compressor"]["id"] == "blosc" and arr["compressor"]["cname"] == "zstd"
    assert dims == ["t", "y", "x"] and manifest["cli_args"][0] == "convert" and manifest["source_dtype"] == "float32"
    field, info = load_movie(out)
    np.testing.assert_array_equal(field, frames)
    assert info["fps"] == 12.0 and info["source_location_px"] == [3, 50]

    with h5py.File(tmp_path / "jet.h5", "w") as f:  # another dataset path, integer frames
        f.create_dataset("plumes/jet", data=(frames * 200).astype(np.uint8), chunks=(5, 50, 70))
    r = subprocess.run([sys.executable, "-m", "plume_capture.sim.movie_zarr", str(tmp_path / "jet.h5"),
                        str(tmp_path / "jet.zarr"), "--dataset", "plumes/jet", "--fps", "15"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    meta, _, _, manifest = _canonical(tmp_path / "jet.zarr")
    assert meta["source_dtype"] == "uint8" and meta["fps"] == 15.0 and "--dataset" in manifest["cli_args"]
    np.testing.assert_array_equal(load_movie(tmp_path / "jet.zarr")[0], (frames * 200).astype(np.uint8).astype(np.float32))

    again = convert(tmp_path / "jet.zarr", tmp_path / "again.zarr")  # an existing Zarr, rechunked: same frames
    np.testing.assert_array_equal(load_movie(again)[0], load_movie(tmp_path / "jet.zarr")[0])

    r = subprocess.run([sys.executable, "-m", "plume_capture.sim.movie_zarr", str(src), str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "already exists" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    np.save(tmp_path / "nofps.npy", frames)
    with pytest.raises(ConfigError, match="no fps attribute"):
        convert(tmp_path / "nofps.npy", tmp_path / "nofps.zarr")
    assert not (tmp_path / "nofps.zarr").exists() and not list(tmp_path.glob(".*.tmp"))


def test_the_reference_loader_reads_what_the_converter_writes(tmp_path):
    """Where the reference tool is installed (with its xarray extra), its own movie loader opens a
    converted store and sees our frames; elsewhere this is skipped (docs/movie.md says what was
    checked by hand)."""
    video = pytest.importorskip("plume_nav_sim.plume.video", reason="the reference tool is not installed")
    pytest.importorskip("xarray")
    from plume_capture.sim.movie import convert

    frames = np.random.default_rng(3).random((12, 40, 70), dtype=np.float32)
    np.save(tmp_path / "m.npy", frames)
    out = convert(tmp_path / "m.npy", tmp_path / "m.zarr", fps=15.0, pixel_to_grid=(0.5, 0.5))
    plume = video.VideoPlume(video.VideoConfig(path=str(out)))
    assert plume.num_frames == 12 and (plume.grid_size.width, plume.grid_size.height) == (70, 40)
    assert plume.attrs.fps == 15.0 and tuple(plume.attrs.extent) == (20.0, 35.0)
    for k in (0, 5, 11):
        plume.advance_to_step(k)
        np.testing.assert_array_equal(plume.field_array, frames[k])


def test_a_store_written_as_the_reference_writes_it_is_read_as_it_is(tmp_path):
    """The reference's ingest writes more than the canonical keys (root ``dims`` and
    ``ingest_args``, array attributes of its own, consolidated metadata): all of it is read as it is."""
    zarr = pytest.importorskip("zarr")
    import numcodecs

    frames = np.random.default_rng(5).random((20, 70, 90), dtype=np.float32)
    path = tmp_path / "ref.zarr"
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    arr = root.create_array("concentration", shape=frames.shape, dtype="float32", chunks=(8, 64, 64),
                            compressors=numcodecs.Blosc(cname="zstd", clevel=5, shuffle=1))
    arr[:] = frames
    arr.attrs.update({"_ARRAY_DIMENSIONS": ["t", "y", "x"], "plume_nav_sim:chunks": [8, 64, 64],
                      "plume_nav_sim:compressor": "blosc:zstd"})
    scale = [0.5, 0.5]
    root.attrs.update({"schema_version": "1.0.0", "fps": 60.0, "source_dtype": "uint8", "pixel_to_grid": scale,
                       "origin": [0.0, 0.0], "extent": [35.0, 45.0], "dims": ["t", "y", "x"],
                       "ingest_args": {"fps": 60.0, "normalize": True, "pixel_to_grid": scale}})
    zarr.consolidate_metadata(str(path))
    (path / "manifest.json").write_text(json.dumps({"created_at": "2026-01-01T00:00:00Z", "cli_args": ["ingest"]}))
    assert (path / ".zmetadata").exists()
    field, info = load_movie(path)
    np.testing.assert_array_equal(field, frames)
    assert info["format"] == "zarr" and info["shape"] == [20, 70, 90] and info["fps"] == 60.0


def test_converter_refuses_in_one_line_and_leaves_nothing(tmp_path):
    """Bad input (a scale the reference's loader refuses) is exit 2; an output the file system
    refuses is exit 3; one line each, no temporary left."""
    import subprocess
    import sys

    pytest.importorskip("zarr")
    src = make_movie(tmp_path / "m.npy", frames=4, height=8, width=8, seed=1)
    blocker = tmp_path / "a-file"
    blocker.write_text("")

    def convert_cli(*args):
        return subprocess.run([sys.executable, "-m", "plume_capture.sim.movie_zarr", str(src), *args],
                              capture_output=True, text=True, timeout=120)

    for args, code in [([str(tmp_path / "o.zarr"), "--pixel-to-grid", "0", "1"], 2),
                       ([str(tmp_path / "o.zarr"), "--pixel-to-grid", "1", "-2"], 2),
                       ([str(tmp_path / "o.zarr"), "--dataset", "plumes/jet"], 2),
                       ([str(blocker / "o.zarr")], 3)]:
        r = convert_cli(*args)
        assert r.returncode == code and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
        assert "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "m.json", "m.npy"]
    r = subprocess.run([sys.executable, "-m", "plume_capture.sim.synth", str(blocker / "s.zarr"), "--frames", "2"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 3 and len(r.stderr.strip().splitlines()) == 1, r.stderr


_SLOW_CONVERT = """
import sys, time
import numpy as np
from plume_capture.sim import movie
from plume_capture.sim.movie import run_tool, write_canonical

movie.CHUNK_BYTES = 8 * 16 * 16 * 4  # blocks of 8 frames

class Slow:  # a source whose second block never comes: the signal arrives mid-write
    shape, dtype = (64, 16, 16), np.dtype("float32")
    def __getitem__(self, key):
        if key.start:
            open(sys.argv[2], "w").close()
            time.sleep(600)
        return np.zeros((8, 16, 16), np.float32)

sys.exit(run_tool(lambda: write_canonical(sys.argv[1], Slow(), fps=1.0) and 0))
"""


def test_a_conversion_stopped_by_sigterm_is_one_line_130_and_leaves_nothing(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    pytest.importorskip("zarr")
    out, started = tmp_path / "o.zarr", tmp_path / "started"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_CONVERT, str(out), str(started)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), proc.communicate(timeout=60)
        assert list(tmp_path.glob(".o.zarr.*.tmp")), "the store is being written"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and err.strip() == "error: interrupted", err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["started"]


def test_a_signal_an_earlier_command_saw_does_not_stop_a_later_store(tmp_path):
    """The converter acts on a signal seen while it writes, not on one an earlier command (in the
    same process) already handled."""
    import signal
    import time

    from plume_capture import interrupts

    pytest.importorskip("zarr")
    with pytest.raises(KeyboardInterrupt), interrupts.raising():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)
    path = make_movie(tmp_path / "s.zarr", frames=4, height=8, width=8, seed=1)
    assert load_movie(path)[0].shape == (4, 8, 8)


def test_synthetic_zarr_is_canonical(tmp_path):
    pytest.importorskip("zarr")
    path = make_movie(tmp_path / "s.zarr", frames=10, height=70, width=90, seed=1, fps=20.0)
    meta, arr, dims, _ = _canonical(path)
    assert meta["schema_version"] == "1.0.0" and meta["fps"] == 20.0 and arr["chunks"] == [8, 64, 64]
    assert dims == ["t", "y", "x"]


def test_movie_cli_prints_the_info_and_the_full_hash(tmp_path):
    import hashlib
    import subprocess
    import sys

    arr = np.arange(60, dtype=np.float32).reshape(3, 4, 5) / 60
    np.save(tmp_path / "m.npy", arr)
    r = subprocess.run([sys.executable, "-m", "plume_capture.sim.movie", str(tmp_path / "m.npy"), "--full"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["sha256"] == hashlib.sha256(arr.tobytes()).hexdigest()
    assert info["identity"] == describe_movie(tmp_path / "m.npy")["identity"]


def test_movie_shards_run_in_bounded_kernel_calls_with_the_same_records(tmp_path, monkeypatch):
    """On a large movie each kernel call writes at most MOVIE_CHUNK_ROWS steps (its pages are
    released after each call); the records are those of one call per shard."""
    import dataclasses

    from capture_helpers import WALL_CLOCK
    from plume_capture.config import resolve
    from plume_capture.sim import runner as runner_mod
    from plume_capture.sim.plan import Shard
    from plume_capture.sim.runner import Job, ShardRunner

    monkeypatch.setattr(runner_mod, "MOVIE_MAPPED_BYTES", 0)  # this small movie counts as large
    path = make_movie(tmp_path / "m.npy", frames=30, height=40, width=40, seed=1)
    spec = resolve(_cfg(tmp_path, "x", path, {"kind": "local"}))
    physics = spec.env.build()
    job = Job(env=physics.params, policy=spec.policy, run_id="r", base_seed=1, movie=physics.movie)
    shard = Shard(0, 0, 1000)  # episodes of at most 40 steps: several calls' worth
    steps, episodes = ShardRunner(job)._simulate(shard)
    assert steps.num_rows > 2 * runner_mod.MOVIE_CHUNK_ROWS and steps.column("ts").num_chunks >= 3
    static = dataclasses.replace(physics, frames=np.array(physics.field), movie=None)  # the same frames, in memory
    whole = ShardRunner(job, physics=static)._simulate(shard)
    assert whole[0].column("ts").num_chunks == 1
    keep = [c for c in steps.column_names if c not in WALL_CLOCK]
    assert steps.select(keep).equals(whole[0].select(keep))
    keep = [c for c in episodes.column_names if c not in WALL_CLOCK]
    assert episodes.select(keep).equals(whole[1].select(keep))


def test_a_file_uri_names_the_same_movie_and_other_schemes_are_refused(tmp_path):
    from plume_capture.capture import capture

    path = make_movie(tmp_path / "m.npy", frames=6, height=8, width=8, seed=1)
    plain = capture(_cfg(tmp_path, "plain", path, {"kind": "local"}, episodes=3)).run_dir
    uri = capture(_cfg(tmp_path, "uri", f"file://{path}", {"kind": "local"}, episodes=3)).run_dir
    assert_same_records(plain, uri)
    assert run_json(uri)["extra"]["env"]["movie"]["identity"] == run_json(plain)["extra"]["env"]["movie"]["identity"]
    with pytest.raises(ConfigError, match="storage scheme 's3' is not supported"):
        describe_movie("s3://bucket/m.npy")
