"""The reference tool's canonical movie layout, written: a Zarr (format 2) group with

* ``concentration``: float32, dims ``t, y, x`` (``_ARRAY_DIMENSIONS``), chunks ``(8, 64, 64)``,
  Blosc/Zstd;
* root attributes ``schema_version`` ("1.0.0"), ``fps``, ``source_dtype``, ``pixel_to_grid``,
  ``origin`` and ``extent`` (``(y, x)`` pairs, grid units), plus ours when known
  (``source_location_px``);
* ``manifest.json`` at the root (provenance: ``created_at``, ``package_version``, ``cli_args``,
  ``source_dtype``, ``env``).

``convert(src, out, ...)`` reads ``.npy``, HDF5 (``dataset`` names the array, default
``concentration``) or an existing Zarr, block by block (a multiple of 8 frames, ~32 MiB). CLI::

    python -m plume_capture.sim.movie_zarr SRC OUT.zarr [--dataset PATH] [--fps F]
                                           [--pixel-to-grid Y X] [--origin Y X]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from plume_capture.errors import ConfigError

SCHEMA_VERSION = "1.0.0"
CHUNKS = (8, 64, 64)
BLOCK_BYTES = 32 << 20


def _source_array(src: Path, dataset: str | None, stack):
    """``(array-like (T, H, W), attrs)`` of ``src``."""
    from plume_capture.sim import movie

    fmt = movie.movie_format(src)
    if fmt == "npy":
        arr = np.load(src, mmap_mode="r", allow_pickle=False)
        return arr, movie._sidecar(src)
    if fmt == "zarr":
        arr, attrs = movie._open_zarr(src)
        return arr, attrs
    f = stack.enter_context(movie._open_hdf5(src))
    name = dataset or movie.VARIABLE
    import h5py

    ds = f.get(name)
    if not isinstance(ds, h5py.Dataset):
        raise ConfigError(f"movie {str(src)!r}: HDF5 file has no dataset {name!r}")
    return ds, {**dict(ds.attrs), **dict(f.attrs)}


def _pair(name: str, value) -> list[float]:
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

    from plume_capture.sim import movie

    src = Path(src).expanduser().absolute()
    if not src.exists():
        raise ConfigError(f"movie {str(src)!r} does not exist")
    with contextlib.ExitStack() as stack:
        arr, attrs = _source_array(src, dataset, stack)
        movie._check_array(arr.shape, arr.dtype, src)
        t, h, w = (int(n) for n in arr.shape)
        rate = movie._fps(fps if fps is not None else attrs.get("fps"), src)
        if rate is None:
            raise ConfigError(f"movie {str(src)!r} has no fps attribute: give --fps")
        source = movie._source(attrs.get("source_location_px"), w, h, src)
        return write(out, arr, fps=rate, source_location_px=source, pixel_to_grid=pixel_to_grid, origin=origin,
                     cli_args=cli_args if cli_args is not None else ["convert", str(src), str(out)], label=str(src))


def write(out, arr, *, fps: float, source_location_px=None, pixel_to_grid=(1.0, 1.0), origin=(0.0, 0.0),
          cli_args: list[str] = (), label: str = "movie") -> Path:
    """Write ``arr`` (``(T, H, W)``, NumPy, Zarr or HDF5; read block by block) to ``out`` in the
    canonical layout, atomically (a temporary sibling renamed into place); returns ``out``."""
    from plume_capture._version import __version__
    from plume_capture.sim import movie

    out = Path(out).expanduser().absolute()
    if os.path.lexists(out):
        raise ConfigError(f"output {str(out)!r} already exists")
    scale, org = _pair("pixel_to_grid", pixel_to_grid), _pair("origin", origin)
    try:
        import numcodecs
        import zarr
    except ImportError:
        raise ConfigError("writing Zarr needs the 'zarr' package (pip install 'plume-capture[movie]')") from None
    t, h, w = (int(n) for n in arr.shape)
    source_dtype = str(np.dtype(arr.dtype))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        root = zarr.open_group(str(tmp), mode="w", zarr_format=2)
        chunks = tuple(min(c, n) for c, n in zip(CHUNKS, (t, h, w)))
        z = root.create_array("concentration", shape=(t, h, w), dtype="float32", chunks=chunks,
                              compressors=numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE))
        z.attrs["_ARRAY_DIMENSIONS"] = ["t", "y", "x"]  # xarray's dims in Zarr format 2
        step = max(chunks[0], BLOCK_BYTES // (h * w * 4) // chunks[0] * chunks[0])
        for t0 in range(0, t, step):
            with np.errstate(over="ignore", invalid="ignore"):
                block = np.ascontiguousarray(arr[t0:t0 + step], dtype=np.float32)
            movie._check_finite(block, Path(label), t0)
            z[t0:t0 + len(block)] = block
        root.attrs.update({"schema_version": SCHEMA_VERSION, "fps": float(fps), "source_dtype": source_dtype,
                           "pixel_to_grid": scale, "origin": org, "extent": [h * scale[0], w * scale[1]],
                           **({"source_location_px": list(source_location_px)} if source_location_px is not None else {})})
        manifest = {"created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "git_sha": None,
                    "package_version": __version__, "config_hash": None, "cli_args": list(cli_args),
                    "source_dtype": source_dtype,
                    "env": {"hostname": None, "platform": sys.platform, "python_version": sys.version.split()[0]}}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plume_capture.sim.movie_zarr",
                                 description="Convert a movie (.npy, HDF5, Zarr) to the canonical Zarr layout.")
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--dataset", default=None, help="HDF5: the dataset's path (default: concentration)")
    ap.add_argument("--fps", type=float, default=None, help="frames per second (default: the source's fps attribute)")
    ap.add_argument("--pixel-to-grid", type=float, nargs=2, metavar=("Y", "X"), default=(1.0, 1.0))
    ap.add_argument("--origin", type=float, nargs=2, metavar=("Y", "X"), default=(0.0, 0.0))
    args = ap.parse_args(argv)
    try:
        out = convert(args.src, args.out, dataset=args.dataset, fps=args.fps, pixel_to_grid=args.pixel_to_grid,
                      origin=args.origin, cli_args=["movie_zarr", *(sys.argv[1:] if argv is None else argv)])
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
