"""JIT flags, the lazy ``njit`` every kernel is declared with, and the Numba cache location.

``njit`` returns a :class:`Kernel`: the kernel's Python source plus, on first need, its Numba
dispatcher. Numba is imported (~0.25 s, and ~0.3 s more to initialise its CPU target when the first
compiled function loads) only when a kernel is really compiled. Inside :func:`interpreting`, kernels
not yet compiled run their own Python source (``py_func``, as under ``NUMBA_DISABLE_JIT``): the same
physics, for runs too small to repay loading Numba.

Numba's on-disk cache only notices changes to the file that holds a cached function, not to the
functions it calls in other files. So the cache lives in a directory named after a hash of every
module with jitted code: a changed kernel anywhere gets fresh compiles (``NUMBA_CACHE_DIR`` or
``PLUME_CAPTURE_CACHE`` override the location).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import sys
import tempfile
import threading
from pathlib import Path

JIT_OPTIONS = dict(cache=True, nogil=True, error_model="numpy")
# spec.py: kernels compile its constants in (e.g. the rewards), so a change there must recompile too.
_JITTED_SOURCES = ("kernels/*.py", "spec.py")

COMPILE_S = 8  # a first non-tiny run on an empty cache: 6-9 s on a 2-vCPU VM (issue 17, measured)

_KERNELS: list = []
_LOCK = threading.RLock()
_numba = None  # the numba module once a kernel has been compiled
_interpreting = 0


def prange(*args):
    """``numba.prange`` in compiled kernels (rebound on first compile), ``range`` when interpreted."""
    return range(*args)


def literally(x):
    """``numba.literally`` in compiled kernels (rebound on first compile), the identity when interpreted."""
    return x


class Kernel:
    """A kernel's Python source and, once compiled, its Numba dispatcher (attributes such as
    ``compile`` or ``overloads`` are the dispatcher's)."""

    def __init__(self, py_func, options: dict):
        self.py_func = py_func
        self.options = options
        self._dispatcher = None
        functools.update_wrapper(self, py_func)

    @property
    def dispatcher(self):
        if self._dispatcher is None:
            load_numba()
        return self._dispatcher

    def __call__(self, *args):
        if will_interpret():
            return self.py_func(*args)
        return self.dispatcher(*args)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dispatcher, name)


def njit(*args, **kwargs):
    """numba.njit with the project's flags (cache on disk, release the GIL), compiled lazily."""
    options = {**JIT_OPTIONS, **kwargs}

    def decorate(func):
        if _numba is not None:
            return _numba.njit(**options)(func)
        k = Kernel(func, options)
        _KERNELS.append(k)
        return k

    return decorate(args[0]) if args and callable(args[0]) else decorate


def will_interpret() -> bool:
    """Whether a kernel called now runs its Python source (inside :func:`interpreting`, Numba not loaded)."""
    return bool(_interpreting) and _numba is None


@contextlib.contextmanager
def interpreting():
    """Kernels not yet compiled run interpreted inside this block (process-wide: worker threads too)."""
    global _interpreting
    with _LOCK:
        _interpreting += 1
    try:
        yield
    finally:
        with _LOCK:
            _interpreting -= 1


def cache_dir(numba_version: str) -> str:
    """``$PLUME_CAPTURE_CACHE`` or ``$XDG_CACHE_HOME/plume_capture`` or ``~/.cache/plume_capture``,
    else (not writable, e.g. no home) a per-user directory under the temp dir; never the package's
    own directory, which may be a read-only site-packages."""
    pkg = Path(__file__).resolve().parents[1]
    h = hashlib.sha256(numba_version.encode())
    for pattern in _JITTED_SOURCES:
        for path in sorted(pkg.glob(pattern)):
            h.update(path.name.encode())
            h.update(path.read_bytes())
    leaf = "numba-" + h.hexdigest()[:16]
    base = os.environ.get("PLUME_CAPTURE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "plume_capture")
    for root in (base, os.path.join(tempfile.gettempdir(), f"plume_capture-{os.getuid()}")):
        path = os.path.join(root, leaf)
        try:
            os.makedirs(path, exist_ok=True)
        except OSError:
            continue
        if os.access(path, os.W_OK | os.X_OK):
            return path
    return os.path.join(base, leaf)


def kernel_cache_filled() -> bool:
    """Whether the kernel cache this process would use holds compiled kernels (cheap: Numba is not
    imported). A run that finds it empty and leaves it filled compiled the kernels."""
    from importlib import metadata

    path = os.environ.get("NUMBA_CACHE_DIR") or cache_dir(metadata.version("numba"))
    return any(Path(path).rglob("*.nbi"))


def load_numba():
    """Import Numba, point its cache at :func:`cache_dir`, and turn every kernel into a dispatcher.

    Numba resolves a kernel's globals when it compiles it, so every module of the package that holds
    a :class:`Kernel` (or the ``prange``/``literally`` stand-ins) gets the Numba object rebound in its
    place first.
    """
    global _numba
    with _LOCK:
        if _numba is not None:
            return _numba
        import numba
        from numba.core import config

        if not os.environ.get("NUMBA_CACHE_DIR"):
            config.CACHE_DIR = cache_dir(numba.__version__)
            if not config.DISABLE_JIT and not any(Path(config.CACHE_DIR).rglob("*.nbi")):
                print(f"plume-capture: compiling kernels once, ~{COMPILE_S} s (cached in {config.CACHE_DIR})",
                      file=sys.stderr, flush=True)
        for k in _KERNELS:
            k._dispatcher = numba.njit(**k.options)(k.py_func)
        swap = {id(prange): numba.prange, id(literally): numba.literally}
        swap.update((id(k), k._dispatcher) for k in _KERNELS)
        for name, mod in list(sys.modules.items()):
            if mod is None or not (name == "plume_capture" or name.startswith("plume_capture.")):
                continue
            d = vars(mod)
            for attr, value in list(d.items()):
                real = swap.get(id(value))
                if real is not None:
                    d[attr] = real
        _numba = numba
        return numba

