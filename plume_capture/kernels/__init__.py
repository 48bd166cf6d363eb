"""Numba kernels (private). ``specialize`` is the one way callers obtain a kernel.

Kernels are declared with :func:`plume_capture.kernels._jit.njit` (lazy: Numba is imported on the
first compile; the cache location is set there).
"""
from __future__ import annotations

import functools
import os

import numpy as np

from plume_capture.kernels import _jit

_CACHE: dict = {}


def _interpreted(kernel, statics, *args):
    # Compiled kernels wrap integer overflow silently (the RNG relies on it); NumPy scalars warn.
    with np.errstate(over="ignore"):
        return kernel(*statics, *args)


def specialize(kernel, statics: tuple, args: tuple):
    """The compiled specialisation of ``kernel`` for the static choices ``statics`` (passed as
    Numba literals) and the types of ``args``; returns ``f(*args)``.

    Calling a ``literally`` kernel through its dispatcher re-resolves the literals on every call
    (~6 ms); the specialisation's entry point costs ~0.1 µs. Compiles, or loads from Numba's disk
    cache, on first use. Inside ``_jit.interpreting()`` with Numba not loaded yet, the kernel's
    Python source instead.
    """
    if _jit.will_interpret() or os.environ.get("NUMBA_DISABLE_JIT", "0") != "0":
        return functools.partial(_interpreted, kernel, statics)
    numba = _jit.load_numba()
    if numba.config.DISABLE_JIT:
        return functools.partial(kernel, *statics)
    if isinstance(kernel, _jit.Kernel):
        kernel = kernel.dispatcher
    key = (kernel, statics, tuple(numba.typeof(a) for a in args))
    fn = _CACHE.get(key)
    if fn is None:
        sig = tuple(numba.types.literal(int(s)) for s in statics) + key[2]
        kernel.compile(sig)
        fn = _CACHE[key] = functools.partial(kernel.overloads[sig].entry_point, *statics)
    return fn
