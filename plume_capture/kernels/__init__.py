"""Numba kernels (private). ``specialize`` is the one way callers obtain a kernel.

Numba's on-disk cache only notices changes to the file that holds a cached function, not to the
functions it calls in other files. So the cache lives in a directory named after a hash of every
module with jitted code: a changed kernel anywhere gets fresh compiles (``NUMBA_CACHE_DIR`` or
``PLUME_CAPTURE_CACHE`` override the location).
"""
from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import numba
from numba.core import config

_JITTED_SOURCES = ("kernels/*.py", "io/writers.py", "readback/load.py", "readback/validate.py")


def _cache_dir() -> str:
    pkg = Path(__file__).resolve().parents[1]
    h = hashlib.sha256(numba.__version__.encode())
    for pattern in _JITTED_SOURCES:
        for path in sorted(pkg.glob(pattern)):
            h.update(path.name.encode())
            h.update(path.read_bytes())
    base = os.environ.get("PLUME_CAPTURE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "plume_capture")
    return os.path.join(base, "numba-" + h.hexdigest()[:16])


if not os.environ.get("NUMBA_CACHE_DIR"):
    config.CACHE_DIR = _cache_dir()

_CACHE: dict = {}


def specialize(kernel, statics: tuple, args: tuple):
    """The compiled specialisation of ``kernel`` for the static choices ``statics`` (passed as
    Numba literals) and the types of ``args``; returns ``f(*args)``.

    Calling a ``literally`` kernel through its dispatcher re-resolves the literals on every call
    (~6 ms); the specialisation's entry point costs ~0.1 µs. Compiles, or loads from Numba's disk
    cache, on first use.
    """
    if config.DISABLE_JIT:
        return functools.partial(kernel, *statics)
    key = (kernel, statics, tuple(numba.typeof(a) for a in args))
    fn = _CACHE.get(key)
    if fn is None:
        sig = tuple(numba.types.literal(int(s)) for s in statics) + key[2]
        kernel.compile(sig)
        fn = _CACHE[key] = functools.partial(kernel.overloads[sig].entry_point, *statics)
    return fn
