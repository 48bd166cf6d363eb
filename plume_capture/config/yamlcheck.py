"""Refuse a YAML config file before anything composes it, when composing it would not end.

Invariant: a file passes only if it is at most :data:`MAX_BYTES` long, nests at most
:data:`MAX_DEPTH` deep, and expands to at most :data:`MAX_NODES` nodes with every alias expanded
(a "billion laughs" file is a few hundred bytes that expand to 10^9 nodes). The check reads the
parser's event stream, which is linear in the file's size whatever its aliases expand to.
"""
from __future__ import annotations

import os

from plume_capture.errors import ConfigError

MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_NODES = 100_000


def check_yaml_file(path: str | os.PathLike) -> None:
    """Raise :class:`ConfigError` (one line) if ``path`` is too large, too deep or an alias bomb."""
    import yaml

    shown = str(path)
    try:
        size = os.stat(path).st_size
        if size > MAX_BYTES:
            raise ConfigError(f"config {shown!r} is {size:,} bytes; a config file may be at most {MAX_BYTES:,}")
        with open(path, "rb") as fh:
            text = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config {shown!r}: {exc.strerror or exc}") from None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    anchors: dict[str, int] = {}
    stack: list[list] = [[None, 0]]  # [anchor, expanded node count] of each open collection
    try:
        for ev in yaml.parse(text, Loader=loader):
            if isinstance(ev, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                stack.append([ev.anchor, 1])
                if len(stack) > MAX_DEPTH + 1:
                    raise ConfigError(f"config {shown!r} nests deeper than {MAX_DEPTH} levels")
                continue
            if isinstance(ev, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                anchor, n = stack.pop()
            elif isinstance(ev, yaml.ScalarEvent):
                anchor, n = ev.anchor, 1
            elif isinstance(ev, yaml.AliasEvent):
                anchor, n = None, anchors.get(ev.anchor, 1)
            else:
                continue
            if anchor is not None:
                anchors[anchor] = n
            stack[-1][1] += n
            if stack[-1][1] > MAX_NODES:
                raise ConfigError(f"config {shown!r} expands to more than {MAX_NODES:,} values "
                                  "(YAML aliases); refusing to compose it")
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot read config {shown!r}: {' '.join(str(exc).split())}") from None
