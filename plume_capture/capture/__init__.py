"""The capture engine: ``plan`` (shards), ``runner`` (one shard -> encoded records), ``sink`` (the
run's files, in shard order), ``run`` (prepare, execute, commit), backends ``local`` (threads) and
``on_ray`` (actors), ``resume`` (a layer on the sink).

The engine is loaded on first use, so importing this package stays light (no NumPy, pyarrow,
Numba or Ray).
"""

__all__ = ["CaptureResult", "capture", "capture_many"]


def capture(spec, *, overrides=(), progress: bool = False, resume: str | None = None):
    """Run the capture described by ``spec`` (a :class:`~plume_capture.config.RunSpec`, from
    :func:`~plume_capture.config.load_spec`); returns its ``CaptureResult``.

    A config dict is accepted too and resolved once (``RunSpec.from_dict(spec, overrides)``).
    Raises ConfigError for bad input (nothing is written), KeyboardInterrupt when interrupted (the
    staging directory stays, visibly incomplete), CaptureError for internal failures. With
    ``resume``, finishes the interrupted run there instead (:mod:`.resume`); ``spec`` is then its
    stored config with execution changes only, or None.
    """
    from plume_capture.config import RunSpec

    if spec is not None and not isinstance(spec, RunSpec):
        spec = RunSpec.from_dict(spec, overrides)
    if resume is not None:
        from plume_capture.capture.resume import resume_run

        return resume_run(resume, spec, progress=progress)
    from plume_capture.capture.run import capture_many

    return capture_many([spec], progress=progress)[0]


def __getattr__(name):
    if name in ("CaptureResult", "capture_many"):
        from plume_capture.capture import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
