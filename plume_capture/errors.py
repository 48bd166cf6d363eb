"""Exceptions with a defined meaning for the CLI (SPEC §10.5)."""


class ConfigError(ValueError):
    """Bad user input (config, flag, override, path). The CLI prints it as one line and exits 2."""


class CaptureError(RuntimeError):
    """An internal failure during a capture. The CLI exits 1; the run is left incomplete."""
