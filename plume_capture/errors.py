"""Exceptions with a defined meaning for the CLI, and the exit codes of every command (docs/spec.md §10.5)."""


class BadInput(ValueError):
    """Bad user input (a config, flag, override, path or damaged file given to a command). Every
    ``plume-nav-*`` command prints it as one line and exits 2, leaving nothing behind."""


class ConfigError(BadInput):
    """Bad user input to a capture (config, flag, override, path)."""


class CaptureError(RuntimeError):
    """An internal failure during a capture. The CLI exits 1; the run is left incomplete."""


class OperationalError(RuntimeError):
    """The machine or the cluster refused: no space left, no permission, a read-only filesystem,
    a Ray address that does not answer. The CLI prints it as one line and exits 3; an interrupted
    run stays resumable."""


#: exit codes of every ``plume-nav-*`` command
EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_OPERATIONAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
