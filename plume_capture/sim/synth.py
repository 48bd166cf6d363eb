"""A synthetic movie plume for tests and demos: Gaussian puffs from a source, advected by a
meandering wind, growing by diffusion (no downloads; deterministic from the seed).

``make_movie(path, ...)`` writes it as ``.npy`` (+ sidecar ``<stem>.json``), Zarr (the reference's
canonical layout, :mod:`plume_capture.sim.movie_zarr`) or HDF5, as :mod:`plume_capture.sim.movie`
reads them. CLI::

    python -m plume_capture.sim.synth OUT.npy [--frames 200] [--height 128] [--width 128] [--seed 0]
                                  [--format npy|zarr|hdf5] [--source X Y] [--fps 15]
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np

from plume_capture.errors import ConfigError

SUFFIXES = {"npy": ".npy", "zarr": ".zarr", "hdf5": ".h5"}
QUANTUM = 2.0 ** -16  # values are multiples of this: identical on every machine despite BLAS/libm ulps
FLOOR = 2.0 ** -10    # values below this are exactly 0 (the plume has a sharp edge)


def puff_field(frames: int = 200, height: int = 128, width: int = 128, seed: int = 0,
               source: tuple[int, int] | None = None) -> np.ndarray:
    """The float32 ``(frames, height, width)`` field, values in [0, 1] with exact zeros away from
    the plume. The wind blows towards +x at ``width/100`` cells per frame with a meandering
    crosswind; frame 0 already shows a developed plume."""
    T, H, W = (_positive(n, v) for n, v in (("frames", frames), ("height", height), ("width", width)))
    sx, sy = default_source(W, H) if source is None else _source(source, W, H)
    rng = np.random.default_rng(seed)
    u = W / 100.0                         # mean wind, cells per frame
    L = int(math.ceil(1.2 * W / u)) + 1   # puff ages tracked (older puffs have left the grid)
    n = L + T                             # frames simulated, the first L as warm-up
    s0 = max(1.0, min(W, H) / 80.0)       # puff radius at release
    diff = 0.12 * s0 * s0                 # sigma² growth per frame

    # Crosswind: Ornstein-Uhlenbeck process plus a slow sinusoidal sway.
    tau, sd = 15.0, 0.35 * u
    a = math.exp(-1.0 / tau)
    noise = rng.standard_normal(n) * sd * math.sqrt(1.0 - a * a)
    v = np.empty(n)
    v[0] = rng.standard_normal() * sd
    for i in range(1, n):  # n is small (a few hundred)
        v[i] = a * v[i - 1] + noise[i]
    phase = rng.uniform(0.0, 2.0 * math.pi)
    v += 0.25 * u * np.sin(2.0 * math.pi * np.arange(n) / 90.0 + phase)
    wind_u = u * (1.0 + 0.1 * rng.standard_normal(n))
    X = np.concatenate([[0.0], np.cumsum(wind_u)])[:n]  # displacement of the air since frame 0
    Y = np.concatenate([[0.0], np.cumsum(v)])[:n]

    # Puff r is released at frame r with an intermittent strength and wanders on its own.
    strength = np.exp(0.35 * rng.standard_normal(n)) * (rng.random(n) > 0.15)
    jitter = np.cumsum(rng.standard_normal((n, L, 2)) * (0.2 * s0), axis=1)
    jitter[:, 0] = 0.0

    ages = np.arange(L)
    t_abs = L + np.arange(T)[:, None]                  # (T, 1) simulated frame of each output frame
    r = t_abs - ages[None, :]                          # (T, L) release frame of each tracked puff
    px = sx + X[t_abs] - X[r] + jitter[r, ages, 0]     # (T, L)
    py = sy + Y[t_abs] - Y[r] + jitter[r, ages, 1]
    var = s0 * s0 + diff * ages                        # (L,)
    # Mass-conserving amplitude; a continuous line of fresh puffs peaks at about `strength`.
    amp = strength[r] * (s0 * s0 / var)[None, :] * (u / (math.sqrt(2.0 * math.pi) * s0))
    inv = (-0.5 / var)[None, :, None]
    gx = np.exp((np.arange(W)[None, None, :] - px[:, :, None]) ** 2 * inv)  # (T, L, W)
    gy = np.exp((np.arange(H)[None, None, :] - py[:, :, None]) ** 2 * inv)  # (T, L, H)
    # Separable Gaussians: frame = sum over puffs of gy ⊗ gx (einsum's own loop, not BLAS threads).
    field = np.einsum("tlh,tlw->thw", gy * amp[:, :, None], gx)            # (T, H, W)

    field = np.round(np.clip(field, 0.0, 1.0) / QUANTUM) * QUANTUM
    field[field < FLOOR] = 0.0
    return field.astype(np.float32)


def default_source(width: int, height: int) -> tuple[int, int]:
    """Upwind edge, mid-height: ``(width // 10, height // 2)``."""
    return width // 10, height // 2


def make_movie(path, *, frames: int = 200, height: int = 128, width: int = 128, seed: int = 0,
               fmt: str | None = None, source: tuple[int, int] | None = None, fps: float = 15.0) -> Path:
    """Write :func:`puff_field` to ``path`` with attrs ``fps`` and ``source_location_px``; returns
    the path written. ``fmt`` (``npy``/``zarr``/``hdf5``) defaults to the path's suffix, else npy;
    a path without a known suffix gets the format's (``.npy``, ``.zarr``, ``.h5``)."""
    path = Path(path)
    by_suffix = {".npy": "npy", ".zarr": "zarr", ".h5": "hdf5", ".hdf5": "hdf5"}.get(path.suffix.lower())
    fmt = fmt or by_suffix or "npy"
    if fmt not in SUFFIXES:
        raise ConfigError(f"format must be one of {', '.join(SUFFIXES)}, got {fmt!r}")
    if by_suffix is None:
        path = path.with_name(path.name + SUFFIXES[fmt])
    elif by_suffix != fmt:
        raise ConfigError(f"path {str(path)!r} has a {path.suffix} suffix but format {fmt!r} was asked for")
    W, H = _positive("width", width), _positive("height", height)
    src = default_source(W, H) if source is None else _source(source, W, H)
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not (math.isfinite(fps) and fps > 0):
        raise ConfigError(f"fps must be a positive number, got {fps!r}")
    field = puff_field(frames, H, W, seed, src)
    attrs = {"fps": float(fps), "source_location_px": [int(src[0]), int(src[1])]}
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "npy":
        np.save(path, field)
        path.with_suffix(".json").write_text(json.dumps(attrs) + "\n")
    elif fmt == "zarr":
        _write_zarr(path, field, attrs)
    else:
        _write_hdf5(path, field, attrs)
    return path


def _write_zarr(path: Path, field: np.ndarray, attrs: dict) -> None:
    from plume_capture.sim.movie import write_canonical

    if path.exists():
        shutil.rmtree(path)  # np.save and h5py overwrite too
    write_canonical(path, field, fps=attrs["fps"], source_location_px=attrs["source_location_px"],
          cli_args=["plume_capture.sim.synth", str(path)])


def _write_hdf5(path: Path, field: np.ndarray, attrs: dict) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        ds = f.create_dataset("concentration", data=field)
        for i, name in enumerate(("t", "y", "x")):
            ds.dims[i].label = name
        for k, v in attrs.items():
            f.attrs[k] = v


def _positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _source(source, width: int, height: int) -> tuple[int, int]:
    try:
        x, y = source
    except (TypeError, ValueError):
        raise ConfigError(f"source must be (x, y), got {source!r}") from None
    if any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) for c in (x, y)) \
            or not (0 <= x < width and 0 <= y < height):
        raise ConfigError(f"source must be integer (x, y) inside the {width}x{height} grid, got {source!r}")
    return int(x), int(y)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plume_capture.sim.synth",
                                 description="Write a synthetic meandering puff plume movie (T, H, W).")
    ap.add_argument("out", help="output path (.npy, .zarr, .h5/.hdf5; suffix added from --format if missing)")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--height", type=int, default=128)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--format", choices=tuple(SUFFIXES), default=None)
    ap.add_argument("--source", type=int, nargs=2, metavar=("X", "Y"), default=None)
    ap.add_argument("--fps", type=float, default=15.0)
    args = ap.parse_args(argv)

    def body() -> int:
        print(make_movie(args.out, frames=args.frames, height=args.height, width=args.width, seed=args.seed,
                         fmt=args.format, source=args.source, fps=args.fps))
        return 0

    from plume_capture.sim.movie import run_tool

    return run_tool(body)


if __name__ == "__main__":
    sys.exit(main())
