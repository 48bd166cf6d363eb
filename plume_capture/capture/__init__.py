"""The capture engine: ``plan`` (shards), ``runner`` (one shard -> encoded records), ``sink`` (the
run's files, in shard order), ``run`` (prepare, execute, commit), backends ``local`` (threads) and
``on_ray`` (actors), ``resume`` (a layer on the sink).

The engine is loaded on first use, so importing this package stays light (no NumPy, pyarrow,
Numba or Ray).
"""

__all__ = ["CaptureResult", "capture", "capture_many"]


def capture(cfg: dict, *, overrides=(), progress: bool = False, resume: str | None = None):
    """Run the capture described by the config ``cfg``; returns its ``CaptureResult``.

    Raises ConfigError for bad input (nothing is written), KeyboardInterrupt when interrupted (the
    staging directory stays, visibly incomplete), CaptureError for internal failures. With
    ``resume``, finishes the interrupted run there instead (:mod:`.resume`).
    """
    if resume is not None:
        from plume_capture.capture.resume import resume_run

        return resume_run(resume, cfg, progress=progress)
    from plume_capture.capture.run import capture_many

    return capture_many([cfg], overrides_list=[overrides], progress=progress)[0]


def __getattr__(name):
    if name in ("CaptureResult", "capture_many"):
        from plume_capture.capture import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
