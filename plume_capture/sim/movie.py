"""Movie plumes: recorded concentration frames ``(T, H, W)`` (docs/spec.md §2.2), described where a run is
planned and opened where it runs.

* ``describe_movie(path, step_policy) -> info``: metadata only (shape, dtype, attributes, a cheap
  content identity); what the driver does. Nothing of the frames is read but a few sampled blocks.
* ``open_frames(info) -> field``: the frames as a read-only float32 C-order ``(T, H, W)`` array, in
  the process that runs the kernels. A float32 ``.npy`` is memory-mapped (pages come from the
  node's page cache, shared by every process of the node). Any other layout (Zarr, HDF5, another
  ``.npy`` dtype or order) is decoded once per node, chunk by chunk, into a node-local ``.npy``
  cache file (:func:`cache_dir`) that is then memory-mapped the same way.
* ``load_movie(path, step_policy)``: both, in one process.
* ``convert`` / ``write_canonical``: a movie written in the reference's canonical Zarr layout
  (CLI: :mod:`plume_capture.sim.movie_zarr`).

Formats: ``.npy`` (an optional sidecar ``<stem>.json`` holds ``fps`` / ``source_location_px``),
Zarr (a directory or ``*.zarr``: array ``concentration`` with dims ``t, y, x``, root attrs) and
HDF5 (``*.h5`` / ``*.hdf5``: dataset ``concentration``, attrs on the file root) when ``zarr`` /
``h5py`` are installed. A path may be a ``file://`` URI; other schemes are refused for now (see
:data:`SCHEMES`).

Values are taken raw as float32 (an exact 0 stays 0.0, integer data is not rescaled); the
concentration sensor clips to [0, 1]. Non-finite values are refused when a node first opens a
movie (the check is remembered per node and file version).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import mmap
import os
import stat
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from plume_capture import interrupts
from plume_capture.errors import ConfigError, OperationalError
from plume_capture.spec import STEP_POLICIES

FORMATS = ("npy", "zarr", "hdf5")
VARIABLE = "concentration"
DIMS = ("t", "y", "x")
CHUNK_BYTES = 32 << 20  # validation and decoding work in frame blocks of about this size
SCHEMES = ("file",)  # URI schemes movie.path may use (a plain path is a file path)
SAMPLES = 64  # content blocks hashed into a movie's identity
SAMPLE_BYTES = 64 << 10
IDENTITY_VERSION = "1"
CACHE_ENV = "PLUME_CAPTURE_MOVIE_CACHE"  # node-local directory of decoded movies
CACHE_GB_ENV = "PLUME_CAPTURE_MOVIE_CACHE_GB"  # its bound (least recently used entries go first)
DEFAULT_CACHE_GB = 64.0


def load_movie(path, step_policy: str = "wrap") -> tuple[np.ndarray, dict]:
    """``describe_movie`` then ``open_frames`` in this process: ``(field, info)``."""
    info = describe_movie(path, step_policy)
    return open_frames(info), info


def describe_movie(path, step_policy: str = "wrap") -> dict:
    """Validate a movie's metadata; returns ``info`` = ``{path, format, shape, dtype, bytes,
    identity, file_version, step_policy, fps, source_location_px}`` (what ``run.json`` records).

    Raises :class:`ConfigError` (one line) for a missing path, unknown format, scheme or step
    policy, missing optional library, wrong rank or dims, empty dims, non-numeric dtype, or bad
    ``fps`` / ``source_location_px`` attributes. Non-finite values are found by ``open_frames``.
    """
    if step_policy not in STEP_POLICIES:
        raise ConfigError(f"movie.step_policy must be one of {', '.join(STEP_POLICIES)}, got {step_policy!r}")
    p = _local_path(path)
    if not p.exists():
        raise ConfigError(f"movie.path {str(p)!r} does not exist")
    mode = p.stat().st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # a FIFO or a device would block or never end
        raise ConfigError(f"movie.path {str(p)!r} is not a regular file or a directory")
    fmt = movie_format(p)
    meta = {"npy": _meta_npy, "zarr": _meta_zarr, "hdf5": _meta_hdf5}[fmt](p)
    t, h, w = meta["shape"]
    return {
        "path": str(p),
        "format": fmt,
        "shape": [t, h, w],
        "dtype": meta["dtype"],
        "bytes": meta["bytes"],
        "identity": meta["identity"],
        "file_version": file_version(p),
        "step_policy": step_policy,
        "fps": _fps(meta["attrs"].get("fps"), p),
        "source_location_px": _source(meta["attrs"].get("source_location_px"), w, h, p),
    }


def movie_format(path) -> str:
    """``npy``, ``zarr`` or ``hdf5`` from the path; ConfigError for anything else."""
    p = Path(path)
    suffix = p.suffix.lower()
    if p.is_dir() or suffix == ".zarr":
        return "zarr"
    if suffix == ".npy":
        return "npy"
    if suffix in (".h5", ".hdf5"):
        return "hdf5"
    raise ConfigError(f"movie.path {str(p)!r}: unknown movie format {suffix or '(no suffix)'!r} "
                      f"(expected .npy, .zarr or a Zarr directory, .h5/.hdf5)")


def _local_path(path) -> Path:
    """The file-system path of ``movie.path`` (a path or a ``file://`` URI). The one place a new
    storage scheme is added: it would fetch or map the store here."""
    if path is None or (isinstance(path, str) and not path.strip()):
        raise ConfigError("movie.path is not set (env.plume=movie needs movie.path=FILE)")
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"movie.path must be a path, got {path!r}")
    s = os.fspath(path)
    if "://" in s:
        scheme, _, rest = s.partition("://")
        if scheme.lower() not in SCHEMES:
            raise ConfigError(f"movie.path {s!r}: storage scheme {scheme!r} is not supported "
                              f"(supported: a path, {', '.join(s + '://' for s in SCHEMES)})")
        s = rest
    return Path(s).expanduser().absolute()


# ------------------------------------------------------------------------------------------------
# metadata and identity (the driver)

def _meta_npy(p: Path) -> dict:
    header = _npy_header(p)
    shape, fortran, dtype, offset = header
    _check_array(shape, dtype, p)
    side = _sidecar(p)
    size = p.stat().st_size
    if size < offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
        raise ConfigError(f"movie {str(p)!r} is not a readable .npy array: the file is shorter than its header says")
    with open(p, "rb") as f:
        head = f.read(offset)
        samples = _sample_blocks(f, offset, size)
    ident = _digest([b"npy", head, json.dumps(side, sort_keys=True).encode(), str(size).encode(), *samples])
    return {"shape": list(shape), "dtype": dtype.str + ("/F" if fortran else ""), "bytes": size,
            "identity": ident, "attrs": side}


def _npy_header(p: Path):
    """``(shape, fortran_order, dtype, data offset)`` of a ``.npy`` file."""
    try:
        with open(p, "rb") as f:
            version = np.lib.format.read_magic(f)
            reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in reader:
                raise ValueError(f"unsupported .npy version {version}")
            shape, fortran, dtype = reader[version](f, max_header_size=1 << 20)
            offset = f.tell()
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise ConfigError(f"movie {str(p)!r} is not a readable .npy array: {str(exc).splitlines()[0]}") from None
    if dtype.hasobject:
        raise ConfigError(f"movie {str(p)!r} is not a readable .npy array: it holds Python objects")
    return tuple(int(n) for n in shape), bool(fortran), dtype, offset


def _sample_blocks(f, start: int, end: int) -> list[bytes]:
    """``SAMPLES`` blocks of ``SAMPLE_BYTES`` spread evenly over ``[start, end)`` (the first and the
    last included); all of it when that is smaller."""
    n = end - start
    if n <= SAMPLES * SAMPLE_BYTES:
        f.seek(start)
        return [f.read(n)]
    out = []
    for i in range(SAMPLES):
        f.seek(start + (n - SAMPLE_BYTES) * i // (SAMPLES - 1))
        out.append(f.read(SAMPLE_BYTES))
    return out


def _digest(parts) -> str:
    h = hashlib.sha256(f"plume-capture movie identity v{IDENTITY_VERSION}".encode())
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def _store_files(p: Path) -> list[tuple[str, int]]:
    """Every file of a Zarr directory store: ``(relative path, bytes)``, sorted."""
    out = []
    for root, dirs, files in os.walk(p):
        dirs.sort()
        for name in files:
            full = os.path.join(root, name)
            out.append((os.path.relpath(full, p), os.stat(full).st_size))
    out.sort()
    return out


_ZARR_META = (".zarray", ".zattrs", ".zgroup", ".zmetadata", "zarr.json")


def _open_zarr(p: Path):
    """``(array, root attrs)`` of a Zarr store, validated."""
    try:
        import zarr
    except ImportError:
        raise ConfigError(f"movie {str(p)!r} is a Zarr store but the 'zarr' package is not installed "
                          f"(install the 'movie' extra: pip install -e '.[movie]' in the checkout)") from None
    try:
        node = zarr.open(str(p), mode="r")
    except Exception as exc:  # zarr raises several unrelated types for "not a store"
        raise ConfigError(f"movie {str(p)!r} is not a readable Zarr store: {str(exc).splitlines()[0]}") from None
    if isinstance(node, zarr.Group):
        if VARIABLE not in node:
            raise ConfigError(f"movie {str(p)!r}: Zarr store has no '{VARIABLE}' array "
                              f"(found: {', '.join(sorted(node.keys())) or 'nothing'})")
        arr = node[VARIABLE]
        if not isinstance(arr, zarr.Array):
            raise ConfigError(f"movie {str(p)!r}: '{VARIABLE}' is a group, not an array")
        attrs = dict(node.attrs)
    else:
        arr = node
        attrs = dict(arr.attrs)
    dims = getattr(arr.metadata, "dimension_names", None) or arr.attrs.get("_ARRAY_DIMENSIONS")
    _check_dims(dims, p)
    _check_array(arr.shape, arr.dtype, p)
    return arr, attrs


def _meta_zarr(p: Path) -> dict:
    arr, attrs = _open_zarr(p)
    files = _store_files(p)
    meta = [f for f, _ in files if os.path.basename(f) in _ZARR_META]
    chunks = [f for f, _ in files if os.path.basename(f) not in _ZARR_META]
    # The chunk index (every chunk file and its compressed size), the metadata in full, and a sample
    # of chunk files in full.
    picked = chunks if len(chunks) <= SAMPLES else [chunks[(len(chunks) - 1) * i // (SAMPLES - 1)]
                                                   for i in range(SAMPLES)]
    parts = ["zarr".encode(), json.dumps(files).encode()]
    parts += [(p / f).read_bytes() for f in meta + picked]
    return {"shape": [int(n) for n in arr.shape], "dtype": np.dtype(arr.dtype).str,
            "bytes": sum(n for _, n in files), "identity": _digest(parts), "attrs": attrs}


def _open_hdf5(p: Path):
    try:
        import h5py
    except ImportError:
        raise ConfigError(f"movie {str(p)!r} is an HDF5 file but the 'h5py' package is not installed "
                          f"(install the 'movie' extra: pip install -e '.[movie]' in the checkout)") from None
    try:
        return h5py.File(p, "r")
    except OSError as exc:
        raise ConfigError(f"movie {str(p)!r} is not a readable HDF5 file: {exc}") from None


def _hdf5_dataset(f, p: Path):
    import h5py

    ds = f.get(VARIABLE)
    if not isinstance(ds, h5py.Dataset):
        raise ConfigError(f"movie {str(p)!r}: HDF5 file has no '{VARIABLE}' dataset "
                          f"(found: {', '.join(sorted(f.keys())) or 'nothing'})")
    labels = [d.label for d in ds.dims] if ds.ndim == 3 else None
    _check_dims(labels if labels and any(labels) else None, p)
    _check_array(ds.shape, ds.dtype, p)
    return ds


def _meta_hdf5(p: Path) -> dict:
    with _open_hdf5(p) as f:
        ds = _hdf5_dataset(f, p)
        attrs = {**{k: v for k, v in ds.attrs.items()}, **{k: v for k, v in f.attrs.items()}}
        shape, dtype = [int(n) for n in ds.shape], np.dtype(ds.dtype).str
    size = p.stat().st_size
    with open(p, "rb") as fh:
        samples = _sample_blocks(fh, 0, size)
    ident = _digest(["hdf5".encode(), json.dumps([shape, dtype]).encode(), str(size).encode(), *samples])
    return {"shape": shape, "dtype": dtype, "bytes": size, "identity": ident, "attrs": attrs}


# ------------------------------------------------------------------------------------------------
# frames (the process that runs the kernels)

def open_frames(info: dict) -> np.ndarray:
    """The frames of the movie ``info`` describes, read-only float32 C-order ``(T, H, W)`` and
    memory-mapped. Raises OperationalError (exit 3) when this machine cannot see the movie or
    sees a different one (another identity) at its path, ConfigError for a non-finite value."""
    p = Path(info["path"])
    if not p.exists():
        raise OperationalError(f"movie {str(p)!r} is not visible on node {os.uname().nodename}")
    try:
        here = describe_movie(p, info["step_policy"])
    except ConfigError as exc:
        raise OperationalError(f"movie {str(p)!r} on node {os.uname().nodename}: {exc}") from None
    if here["identity"] != info["identity"]:
        raise OperationalError(f"movie {str(p)!r} on node {os.uname().nodename} is not the movie this run "
                               f"uses (identity {here['identity'][:12]} != {info['identity'][:12]})")
    stat_key = _stat_key(p, info)
    if info["format"] == "npy" and info["dtype"] in ("<f4", "=f4") and np.dtype("<f4") == np.dtype("=f4"):
        offset = _npy_header(p)[3]
        marker = cache_dir() / f"{stat_key}.finite"
        if not marker.exists():
            _scan_npy(p, offset, info["shape"])
            _touch(marker)
        return _map(p, offset, info["shape"])
    cached = cache_dir() / f"{stat_key}.npy"
    with _file_lock(cache_dir() / f"{stat_key}.lock"):
        if not cached.exists():
            _decode(p, info, cached)
    _touch(cached)  # its last use, for the cache's LRU bound
    return _map(cached, _npy_header(cached)[3], info["shape"])


def release_pages(field: np.ndarray) -> None:
    """Drop this process's mapping of a memory-mapped movie's pages (they stay in the node's page
    cache and come back on the next touch): its RSS then counts only the pages touched since."""
    base = field
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None) if not isinstance(base, memoryview) else base.obj
    if base is not None and hasattr(base, "madvise"):
        base.madvise(mmap.MADV_DONTNEED)


def cache_dir() -> Path:
    """This node's directory of decoded movies and validation markers (``$PLUME_CAPTURE_MOVIE_CACHE``,
    else ``$XDG_CACHE_HOME/plume-capture/movies``, else ``~/.cache/plume-capture/movies``)."""
    d = os.environ.get(CACHE_ENV)
    if not d:
        d = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "plume-capture", "movies")
    path = Path(d)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OperationalError(f"cannot create the movie cache directory {str(path)!r} on node "
                               f"{os.uname().nodename}: {exc.strerror or exc}") from None
    return path


def file_version(path) -> str:
    """The movie's version as the file system sees it: size and modification time of the file (for
    a Zarr store: its file count, total size and newest modification time). An edit the sampled
    identity misses still changes it; a copy that keeps modification times (``cp -p``) does not."""
    p = Path(path)
    if p.is_dir():
        newest, count, size = 0, 0, 0
        for root, _, files in os.walk(p):
            for name in files:
                st = os.stat(os.path.join(root, name))
                newest, count, size = max(newest, st.st_mtime_ns), count + 1, size + st.st_size
        return f"files={count} size={size} mtime_ns={newest}"
    st = p.stat()
    return f"size={st.st_size} mtime_ns={st.st_mtime_ns}"


def _stat_key(p: Path, info: dict) -> str:
    """The identity plus this node's view of the file version (and, for a file, its inode): names
    cache entries, so an edit the sampled identity misses still gets a fresh decode and check."""
    local = file_version(p)
    if not p.is_dir():
        st = p.stat()
        local += f":{st.st_ino}:{st.st_dev}"
    return hashlib.sha256(f"{info['identity']}|{local}".encode()).hexdigest()[:40]


def _map(path: Path, offset: int, shape) -> np.ndarray:
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    # The kernels read a few cells per frame: with the default read-ahead (8 MiB here) every touch
    # would read and map a large block around it (measured: ~1 MiB mapped per step).
    if hasattr(mm, "madvise"):
        mm.madvise(mmap.MADV_RANDOM)
    count = int(np.prod(shape, dtype=np.int64))
    return np.frombuffer(mm, np.float32, count, offset).reshape(tuple(shape))  # read-only: ACCESS_READ


def _frames_per_block(shape, multiple: int = 1) -> int:
    frames = max(1, CHUNK_BYTES // (int(shape[1]) * int(shape[2]) * 4))
    return max(multiple, frames // multiple * multiple)


def _scan_npy(p: Path, offset: int, shape) -> None:
    """Check every value of a float32 ``.npy`` is finite, reading it block by block (plain reads:
    bounded memory, nothing left mapped)."""
    frame = int(shape[1]) * int(shape[2])
    step = _frames_per_block(shape)
    buf = np.empty(step * frame, np.float32)
    with open(p, "rb") as f:
        f.seek(offset)
        for t0 in range(0, int(shape[0]), step):
            n = min(step, int(shape[0]) - t0)
            view = buf[:n * frame]
            f.readinto(memoryview(view).cast("B"))
            _check_finite(view.reshape(n, shape[1], shape[2]), p, t0)
            _uncache(f.fileno(), offset + t0 * frame * 4, n * frame * 4)


def _uncache(fd: int, offset: int, length: int) -> None:
    """Drop a range of a file we streamed through from the page cache (unless mapped somewhere):
    cached in large blocks, a later touch through the memory map would map a whole block."""
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


def _decode(p: Path, info: dict, dest: Path) -> None:
    """Write the movie as a float32 C-order ``.npy`` at ``dest`` (atomically), block by block; each
    block is a whole number of the source's chunks along t."""
    shape = tuple(info["shape"])
    need = int(np.prod(shape, dtype=np.int64)) * 4
    _make_room(dest.parent, need)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with contextlib.ExitStack() as stack:
            if info["format"] == "zarr":
                src, _ = _open_zarr(p)
                along_t = int(src.chunks[0])
            elif info["format"] == "hdf5":
                src = _hdf5_dataset(stack.enter_context(_open_hdf5(p)), p)
                along_t = int(src.chunks[0]) if src.chunks else 1
            else:
                src = np.load(p, mmap_mode="r", allow_pickle=False)
                along_t = 1
            out = stack.enter_context(open(tmp, "wb"))
            np.lib.format.write_array_header_2_0(out, {"descr": "<f4", "fortran_order": False, "shape": shape})
            step = _frames_per_block(shape, along_t)
            for t0 in range(0, shape[0], step):
                t1 = min(shape[0], t0 + step)
                with np.errstate(over="ignore", invalid="ignore"):
                    block = np.ascontiguousarray(src[t0:t1], dtype="<f4")
                _check_finite(block, p, t0)
                out.write(memoryview(block).cast("B"))
                if isinstance(src, np.memmap):
                    release_pages(src)
            out.flush()
            os.fsync(out.fileno())
            _uncache(out.fileno(), 0, 0)
        os.replace(tmp, dest)
    except OSError as exc:
        raise OperationalError(f"cannot decode movie {str(p)!r} into the cache {str(dest.parent)!r} on node "
                               f"{os.uname().nodename}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _make_room(d: Path, need: int) -> None:
    """Keep the cache within its bound (``$PLUME_CAPTURE_MOVIE_CACHE_GB``, least recently used
    decoded movies removed first) and refuse (exit 3) when the disk cannot hold ``need`` bytes."""
    bound = float(os.environ.get(CACHE_GB_ENV) or DEFAULT_CACHE_GB) * 2**30
    if need > bound:
        raise OperationalError(f"movie needs {need / 2**30:.1f} GiB decoded, more than the movie cache's "
                               f"bound ({bound / 2**30:.1f} GiB, ${CACHE_GB_ENV})")
    entries = sorted(d.glob("*.npy"), key=lambda e: e.stat().st_mtime)
    used = sum(e.stat().st_size for e in entries)
    while entries and used + need > bound:
        e = entries.pop(0)  # an entry still mapped somewhere stays readable there until unmapped
        used -= e.stat().st_size
        e.unlink(missing_ok=True)
    free = os.statvfs(d)
    if free.f_bavail * free.f_frsize < need + (256 << 20):
        raise OperationalError(f"no room to decode the movie on node {os.uname().nodename}: it needs "
                               f"{need / 2**30:.1f} GiB in {str(d)!r}, {free.f_bavail * free.f_frsize / 2**30:.1f} GiB free")


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive lock between the processes of one node (one decodes, the others wait)."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _touch(path: Path) -> None:
    now = time.time()
    try:
        path.touch()
        os.utime(path, (now, now))
    except OSError:
        pass


# ------------------------------------------------------------------------------------------------
# validation

def _sidecar(p: Path) -> dict:
    side = p.with_suffix(".json")
    if not side.exists():
        return {}
    try:
        attrs = json.loads(side.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"movie sidecar {str(side)!r} is not valid JSON: {exc}") from None
    if not isinstance(attrs, dict):
        raise ConfigError(f"movie sidecar {str(side)!r} must hold a JSON object")
    return attrs


def _check_dims(dims, p: Path) -> None:
    if dims is None or all(d is None for d in dims):
        return
    names = tuple(str(d) for d in dims)
    if names != DIMS and names != ("time", "y", "x"):
        raise ConfigError(f"movie {str(p)!r}: '{VARIABLE}' must have dims (t, y, x), got ({', '.join(names)})")


def _check_array(shape, dtype, p: Path) -> None:
    if len(shape) != 3:
        raise ConfigError(f"movie {str(p)!r} must be a 3-D array (T, H, W), got shape {tuple(shape)}")
    if min(shape) == 0:
        raise ConfigError(f"movie {str(p)!r} has an empty dimension: shape (T, H, W) = {tuple(shape)}")
    if np.dtype(dtype).kind not in "iuf":
        raise ConfigError(f"movie {str(p)!r} must hold numbers (int or float), got dtype {np.dtype(dtype)}")


def _check_finite(a: np.ndarray, p: Path, t0: int = 0) -> None:
    step = _frames_per_block(a.shape)
    for s in range(0, a.shape[0], step):
        chunk = a[s:s + step]
        # A float64 sum of float32 values is finite iff every value is (it cannot overflow).
        if math.isfinite(float(chunk.sum(dtype=np.float64))):
            continue
        t, y, x = (int(v) for v in np.argwhere(~np.isfinite(chunk))[0])
        raise ConfigError(f"movie {str(p)!r} has a non-finite value (NaN, inf, or beyond float32 range) "
                          f"at frame {t0 + s + t}, y={y}, x={x}")


def full_sha256(info: dict) -> str:
    """SHA-256 of the movie's float32 C-order frames (native byte order), read block by block: the
    full check the sampled ``identity`` trades away (it reads the whole movie)."""
    field = open_frames(info)
    h = hashlib.sha256()
    step = _frames_per_block(field.shape)
    for s in range(0, field.shape[0], step):
        h.update(memoryview(np.ascontiguousarray(field[s:s + step])).cast("B"))
        release_pages(field)
    return h.hexdigest()


def _fps(value, p: Path) -> float | None:
    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.shape in ((), (1,)):
        value = value.reshape(-1)[0]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"movie {str(p)!r}: attribute fps must be a positive number, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ConfigError(f"movie {str(p)!r}: attribute fps must be a positive number, got {value!r}")
    return v


def _source(value, width: int, height: int, p: Path) -> list[int] | None:
    if value is None:
        return None
    bad = ConfigError(f"movie {str(p)!r}: attribute source_location_px must be two integers [x, y] "
                      f"inside the {width}x{height} grid, got {_show(value)}")
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise bad
    xy = []
    for v in value:
        if isinstance(v, (bool, np.bool_)):
            raise bad
        if isinstance(v, (int, np.integer)):
            xy.append(int(v))
        elif isinstance(v, (float, np.floating)) and math.isfinite(float(v)) and float(v).is_integer():
            xy.append(int(v))  # e.g. HDF5 attrs written as floats
        else:
            raise bad
    if not (0 <= xy[0] < width and 0 <= xy[1] < height):
        raise bad
    return xy


def _show(value) -> str:
    if isinstance(value, np.ndarray):
        return repr(value.tolist())
    return repr(value)


# ------------------------------------------------------------------------------------------------
# the reference's canonical Zarr layout (written; read by describe_movie / open_frames as any Zarr)

CANONICAL_SCHEMA_VERSION = "1.0.0"
CANONICAL_CHUNKS = (8, 64, 64)


def _source_array(src: Path, dataset: str | None, stack):
    """``(array-like (T, H, W), attrs)`` of ``src``."""
    fmt = movie_format(src)
    if dataset is not None and fmt != "hdf5":
        raise ConfigError(f"a dataset path (--dataset {dataset}) applies to an HDF5 source; {str(src)!r} is {fmt}")
    if fmt == "npy":
        arr = np.load(src, mmap_mode="r", allow_pickle=False)
        return arr, _sidecar(src)
    if fmt == "zarr":
        arr, attrs = _open_zarr(src)
        return arr, attrs
    f = stack.enter_context(_open_hdf5(src))
    name = dataset or VARIABLE
    import h5py

    ds = f.get(name)
    if not isinstance(ds, h5py.Dataset):
        raise ConfigError(f"movie {str(src)!r}: HDF5 file has no dataset {name!r}")
    return ds, {**dict(ds.attrs), **dict(f.attrs)}


def _yx(name: str, value) -> list[float]:
    try:
        y, x = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be two numbers (y, x), got {value!r}") from None
    if not (math.isfinite(y) and math.isfinite(x)):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return [y, x]


def convert(src, out, *, dataset: str | None = None, fps: float | None = None,
            pixel_to_grid=(1.0, 1.0), origin=(0.0, 0.0), cli_args: list[str] | None = None) -> Path:
    """Write the movie ``src`` to ``out`` in the canonical layout; returns ``out``. ConfigError for
    bad input (``out`` must not exist)."""
    import contextlib

    src = Path(src).expanduser().absolute()
    if not src.exists():
        raise ConfigError(f"movie {str(src)!r} does not exist")
    with contextlib.ExitStack() as stack:
        arr, attrs = _source_array(src, dataset, stack)
        _check_array(arr.shape, arr.dtype, src)
        _, h, w = (int(n) for n in arr.shape)
        rate = _fps(fps if fps is not None else attrs.get("fps"), src)
        if rate is None:
            raise ConfigError(f"movie {str(src)!r} has no fps attribute: give --fps")
        source = _source(attrs.get("source_location_px"), w, h, src)
        return write_canonical(out, arr, fps=rate, source_location_px=source, pixel_to_grid=pixel_to_grid, origin=origin,
                     cli_args=cli_args if cli_args is not None else ["convert", str(src), str(out)], label=str(src))


def write_canonical(out, arr, *, fps: float, source_location_px=None, pixel_to_grid=(1.0, 1.0), origin=(0.0, 0.0),
          cli_args: list[str] = (), label: str = "movie") -> Path:
    """Write ``arr`` (``(T, H, W)``, NumPy, Zarr or HDF5; read block by block) to ``out`` in the
    canonical layout, atomically (a temporary sibling renamed into place); returns ``out``."""
    from plume_capture._version import __version__
    out = Path(out).expanduser().absolute()
    if os.path.lexists(out):
        raise ConfigError(f"output {str(out)!r} already exists")
    scale, org = _yx("pixel_to_grid", pixel_to_grid), _yx("origin", origin)
    if min(scale) <= 0:  # the reference's loader refuses a store whose scale or extent is not positive
        raise ConfigError(f"pixel_to_grid must be two positive numbers (y, x), got {list(pixel_to_grid)!r}")
    try:
        import numcodecs
        import zarr
    except ImportError:
        raise ConfigError("writing Zarr needs the 'zarr' package (pip install -e '.[movie]' in the checkout)") from None
    t, h, w = (int(n) for n in arr.shape)
    source_dtype = str(np.dtype(arr.dtype))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    with interrupts.raising():  # SIGTERM too removes the temporary store; a lost raise is caught below
        try:
            root = zarr.open_group(str(tmp), mode="w", zarr_format=2)
            chunks = tuple(min(c, n) for c, n in zip(CANONICAL_CHUNKS, (t, h, w)))
            blosc = numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)
            z = root.create_array("concentration", shape=(t, h, w), dtype="float32", chunks=chunks, compressors=blosc)
            z.attrs["_ARRAY_DIMENSIONS"] = ["t", "y", "x"]  # xarray's dims in Zarr format 2
            step = max(chunks[0], CHUNK_BYTES // (h * w * 4) // chunks[0] * chunks[0])
            for t0 in range(0, t, step):
                with np.errstate(over="ignore", invalid="ignore"):
                    block = np.ascontiguousarray(arr[t0:t0 + step], dtype=np.float32)
                _check_finite(block, Path(label), t0)
                z[t0:t0 + len(block)] = block
            source = {"source_location_px": list(source_location_px)} if source_location_px is not None else {}
            root.attrs.update({"schema_version": CANONICAL_SCHEMA_VERSION, "fps": float(fps),
                               "source_dtype": source_dtype, "pixel_to_grid": scale, "origin": org,
                               "extent": [h * scale[0], w * scale[1]], **source})
            manifest = {"created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "git_sha": None,
                        "package_version": __version__, "config_hash": None, "cli_args": list(cli_args),
                        "source_dtype": source_dtype,
                        "env": {"hostname": None, "platform": sys.platform, "python_version": sys.version.split()[0]}}
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
            interrupts.check()  # a signal whose raise was lost: never publish a store it cut short
            os.rename(tmp, out)
        except OSError as exc:
            raise OperationalError(f"cannot write {str(out)!r}: {exc.strerror or exc}") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def run_tool(body) -> int:
    """How the movie tools' CLIs (this module, ``movie_zarr``, ``synth``) end: ``body()``'s exit
    code, or one line on stderr and exit 2 for bad input, 3 when the machine refused (an OSError),
    130 for SIGINT / SIGTERM (what was being written is removed)."""
    try:
        with interrupts.raising():
            return body()
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except (ConfigError, OperationalError, OSError) as exc:
        text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if isinstance(exc, OSError) and exc.filename:
            text = f"{exc.filename}: {text}"
        print(f"error: {' '.join(text.split())}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 3


def main(argv=None) -> int:
    """``python -m plume_capture.sim.movie FILE [--full]``: the movie's ``info`` as JSON (what
    ``run.json`` records), with ``--full`` also the SHA-256 of all its frames."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m plume_capture.sim.movie", description=main.__doc__.splitlines()[0])
    ap.add_argument("path")
    ap.add_argument("--full", action="store_true", help="also hash every frame (reads the whole movie)")
    args = ap.parse_args(argv)

    def body() -> int:
        info = describe_movie(args.path)
        if args.full:
            info["sha256"] = full_sha256(info)
        print(json.dumps(info, indent=1))
        return 0

    return run_tool(body)


if __name__ == "__main__":
    raise SystemExit(main())
