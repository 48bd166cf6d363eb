"""Movie plumes: load a recorded concentration dataset ``(T, H, W)`` once (docs/spec.md §2.2).

``load_movie(path, step_policy) -> (field, info)``. Formats: NumPy ``.npy`` (memory-mapped when
already float32 C-order; an optional sidecar ``<stem>.json`` holds ``fps`` /
``source_location_px``), Zarr (a directory or ``*.zarr``: array ``concentration`` with dims
``t, y, x``, root attrs ``fps``, ``source_location_px``) and HDF5 (``*.h5`` / ``*.hdf5``: dataset
``concentration``, attrs on the file root) when ``zarr`` / ``h5py`` are installed.

Values are taken raw as float32 (an exact 0 stays 0.0, integer data is not rescaled); the
concentration sensor clips to [0, 1]. The returned field is read-only, so one copy can be shared
by every env (and placed in Ray's object store as is).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np

from plume_capture.errors import ConfigError
from plume_capture.spec import STEP_POLICIES

FORMATS = ("npy", "zarr", "hdf5")
VARIABLE = "concentration"
DIMS = ("t", "y", "x")
CHUNK_BYTES = 32 << 20  # validation / hashing / conversion work in frame chunks of about this size


def load_movie(path, step_policy: str = "wrap") -> tuple[np.ndarray, dict]:
    """Load and validate a movie; returns a read-only float32 C-contiguous ``(T, H, W)`` field and
    ``info`` = ``{path, format, shape, sha256, step_policy, fps, source_location_px}``.

    Raises :class:`ConfigError` (one line) for a missing path, unknown format or step policy,
    missing optional library, wrong rank, empty dims, non-numeric dtype, non-finite values, or
    bad ``fps`` / ``source_location_px`` attributes.
    """
    if step_policy not in STEP_POLICIES:
        raise ConfigError(f"movie.step_policy must be one of {', '.join(STEP_POLICIES)}, got {step_policy!r}")
    if path is None or (isinstance(path, str) and not path.strip()):
        raise ConfigError("movie.path is not set (env.plume=movie needs movie.path=FILE)")
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"movie.path must be a path, got {path!r}")
    p = Path(path).expanduser().absolute()
    if not p.exists():
        raise ConfigError(f"movie.path {str(p)!r} does not exist")
    fmt = movie_format(p)
    if fmt == "npy":
        field, attrs = _load_npy(p)
    elif fmt == "zarr":
        field, attrs = _load_zarr(p)
    else:
        field, attrs = _load_hdf5(p)
    field.setflags(write=False)
    t, h, w = field.shape
    info = {
        "path": str(p),
        "format": fmt,
        "shape": [t, h, w],
        "sha256": _sha256(field),
        "step_policy": step_policy,
        "fps": _fps(attrs.get("fps"), p),
        "source_location_px": _source(attrs.get("source_location_px"), w, h, p),
    }
    return field, info


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


# ------------------------------------------------------------------------------------------------
# formats

def _load_npy(p: Path):
    try:
        raw = np.load(p, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ConfigError(f"movie {str(p)!r} is not a readable .npy array: {exc}") from None
    _check_array(raw.shape, raw.dtype, p)
    if raw.dtype == np.float32 and raw.dtype.isnative and raw.flags.c_contiguous:
        field = np.asarray(raw)  # plain ndarray view of the memory map
        _check_finite(field, p)
    else:
        field = _convert(raw, p)
    return field, _sidecar(p)


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


def _load_zarr(p: Path):
    try:
        import zarr
    except ImportError:
        raise ConfigError(f"movie {str(p)!r} is a Zarr store but the 'zarr' package is not installed "
                          f"(install the 'movie' extra: pip install -e '.[movie]' in the checkout)") from None
    try:
        node = zarr.open(str(p), mode="r")
    except Exception as exc:  # zarr raises several unrelated types for "not a store"
        raise ConfigError(f"movie {str(p)!r} is not a readable Zarr store: {exc}") from None
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
    return _convert(arr, p), attrs


def _load_hdf5(p: Path):
    try:
        import h5py
    except ImportError:
        raise ConfigError(f"movie {str(p)!r} is an HDF5 file but the 'h5py' package is not installed "
                          f"(install the 'movie' extra: pip install -e '.[movie]' in the checkout)") from None
    try:
        f = h5py.File(p, "r")
    except OSError as exc:
        raise ConfigError(f"movie {str(p)!r} is not a readable HDF5 file: {exc}") from None
    with f:
        ds = f.get(VARIABLE)
        if not isinstance(ds, h5py.Dataset):
            raise ConfigError(f"movie {str(p)!r}: HDF5 file has no '{VARIABLE}' dataset "
                              f"(found: {', '.join(sorted(f.keys())) or 'nothing'})")
        labels = [d.label for d in ds.dims] if ds.ndim == 3 else None
        _check_dims(labels if labels and any(labels) else None, p)
        _check_array(ds.shape, ds.dtype, p)
        attrs = {**{k: v for k, v in ds.attrs.items()}, **{k: v for k, v in f.attrs.items()}}
        return _convert(ds, p), attrs


# ------------------------------------------------------------------------------------------------
# validation

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
    need = int(np.prod(shape, dtype=np.int64)) * 4
    total = _memory_total()
    if total and need > total:
        raise ConfigError(f"movie {str(p)!r} needs {need / 2**30:.1f} GiB as float32, more than this "
                          f"machine's memory ({total / 2**30:.1f} GiB)")


def _memory_total() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:  # pragma: no cover - psutil is a dependency
        return None


def _frames_per_chunk(shape) -> int:
    return max(1, CHUNK_BYTES // (int(shape[1]) * int(shape[2]) * 4))


def _convert(src, p: Path) -> np.ndarray:
    """Copy ``src`` (NumPy, Zarr or HDF5 array) into a new float32 C-order array, frame chunk by
    frame chunk, checking finiteness as it goes."""
    shape = tuple(int(n) for n in src.shape)
    out = np.empty(shape, np.float32)
    step = _frames_per_chunk(shape)
    for t0 in range(0, shape[0], step):
        t1 = min(shape[0], t0 + step)
        chunk = np.asarray(src[t0:t1])
        with np.errstate(over="ignore", invalid="ignore"):
            out[t0:t1] = chunk
        _check_finite(out[t0:t1], p, t0)
    return out


def _check_finite(a: np.ndarray, p: Path, t0: int = 0) -> None:
    step = _frames_per_chunk(a.shape)
    for s in range(0, a.shape[0], step):
        chunk = a[s:s + step]
        # A float64 sum of float32 values is finite iff every value is (it cannot overflow).
        if math.isfinite(float(chunk.sum(dtype=np.float64))):
            continue
        t, y, x = (int(v) for v in np.argwhere(~np.isfinite(chunk))[0])
        raise ConfigError(f"movie {str(p)!r} has a non-finite value (NaN, inf, or beyond float32 range) "
                          f"at frame {t0 + s + t}, y={y}, x={x}")


def _sha256(field: np.ndarray) -> str:
    """SHA-256 of the float32 C-order data bytes (native byte order)."""
    h = hashlib.sha256()
    step = _frames_per_chunk(field.shape)
    for s in range(0, field.shape[0], step):
        h.update(memoryview(np.ascontiguousarray(field[s:s + step])).cast("B"))
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
