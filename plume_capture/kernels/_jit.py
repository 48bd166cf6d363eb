"""JIT flags in one place. Every kernel is compiled with these options."""
import numba

JIT_OPTIONS = dict(cache=True, nogil=True, error_model="numpy")


def njit(*args, **kwargs):
    """numba.njit with the project's flags (cache on disk, release the GIL)."""
    return numba.njit(*args, **{**JIT_OPTIONS, **kwargs})
