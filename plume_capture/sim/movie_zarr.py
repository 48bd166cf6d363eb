"""The reference tool's canonical movie layout, written: a Zarr (format 2) group with

* ``concentration``: float32, dims ``t, y, x`` (``_ARRAY_DIMENSIONS``), chunks ``(8, 64, 64)``,
  Blosc/Zstd;
* root attributes ``schema_version`` ("1.0.0"), ``fps``, ``source_dtype``, ``pixel_to_grid``,
  ``origin`` and ``extent`` (``(y, x)`` pairs, grid units), plus ours when known
  (``source_location_px``);
* ``manifest.json`` at the root (provenance: ``created_at``, ``package_version``, ``cli_args``,
  ``source_dtype``, ``env``).

:func:`plume_capture.sim.movie.convert` reads ``.npy``, HDF5 (``dataset`` names the array, default
``concentration``) or an existing Zarr, block by block (a multiple of 8 frames, ~32 MiB). CLI::

    python -m plume_capture.sim.movie_zarr SRC OUT.zarr [--dataset PATH] [--fps F]
                                           [--pixel-to-grid Y X] [--origin Y X]
"""
from __future__ import annotations

import argparse
import sys

from plume_capture.sim.movie import convert, run_tool


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

    def body() -> int:
        print(convert(args.src, args.out, dataset=args.dataset, fps=args.fps, pixel_to_grid=args.pixel_to_grid,
                      origin=args.origin, cli_args=["movie_zarr", *(sys.argv[1:] if argv is None else argv)]))
        return 0

    return run_tool(body)


if __name__ == "__main__":
    sys.exit(main())
