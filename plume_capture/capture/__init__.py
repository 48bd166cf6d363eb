"""The capture engine: shard plan, shard runner, Ray orchestration, writers and finalizer.

``capture``, ``capture_many`` and ``CaptureResult`` load the engine on first use, so importing this
package stays light (no NumPy, pyarrow, Numba or Ray).
"""

__all__ = ["CaptureResult", "capture", "capture_many"]


def __getattr__(name):
    if name in __all__:
        from plume_capture.capture import engine

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
