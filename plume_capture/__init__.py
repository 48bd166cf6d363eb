"""plume-capture: a Ray-distributed, Numba-fast capture engine for odor-plume navigation.

``import plume_capture`` stays light (no gymnasium, Ray or Numba), so the CLI starts fast.
``PlumeNav-v0`` is registered with gymnasium by importing :mod:`plume_capture.envs` (or by
``gymnasium.make("plume_capture.envs:PlumeNav-v0")``, which imports it).
"""
from plume_capture._version import __version__

__all__ = ["__version__", "load_run", "validate_run_artifacts"]


def __getattr__(name):  # lazy public API
    if name == "validate_run_artifacts":
        from plume_capture.readback.validate import validate_run_artifacts
        return validate_run_artifacts
    if name == "load_run":
        from plume_capture.readback.load import load_run
        return load_run
    raise AttributeError(name)
