"""plume-capture: a Ray-distributed, Numba-fast capture engine for odor-plume navigation.

``import plume_capture`` stays light (no gymnasium, Ray or Numba), so the CLI starts fast;
``PlumeNav-v0`` is registered with gymnasium as soon as both are imported, in either order.
"""
import sys

__version__ = "0.1.0"


def _register_when_gymnasium_loads() -> None:
    if "gymnasium" in sys.modules:
        from plume_capture import envs  # noqa: F401  (registers)
        return
    import importlib.machinery

    class _Hook:  # a meta path finder (importlib.abc would cost ~20 ms of start-up)
        def find_spec(self, name, path=None, target=None):
            if name != "gymnasium":
                return None
            sys.meta_path.remove(self)
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None or spec.loader is None:
                return spec
            exec_module = spec.loader.exec_module

            def exec_and_register(module):
                exec_module(module)
                from plume_capture import envs  # noqa: F401  (registers)

            spec.loader.exec_module = exec_and_register
            return spec

    sys.meta_path.insert(0, _Hook())


_register_when_gymnasium_loads()


def __getattr__(name):  # lazy public API
    if name == "validate_run_artifacts":
        from plume_capture.readback.validate import validate_run_artifacts
        return validate_run_artifacts
    if name == "load_run":
        from plume_capture.readback.load import load_run
        return load_run
    raise AttributeError(name)
