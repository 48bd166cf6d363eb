"""The shard plan: episodes ``0..N-1`` cut into fixed-size shards.

The shard size depends only on the data-defining config (``max_steps``, or an explicit
``engine.shard_episodes``), never on the number of actors or nodes.
"""
from __future__ import annotations

from dataclasses import dataclass

TARGET_SHARD_STEPS = 1 << 18  # ~256k steps: big enough to amortise a call, small enough to stream


@dataclass(frozen=True)
class Shard:
    index: int
    start: int  # first episode (0-based)
    stop: int  # one past the last episode

    @property
    def episodes(self) -> int:
        return self.stop - self.start


def shard_size(max_steps: int, explicit: int | None = None) -> int:
    if explicit:
        return int(explicit)
    return max(1, min(4096, TARGET_SHARD_STEPS // max(1, max_steps)))


def plan(episodes: int, size: int) -> list[Shard]:
    return [Shard(i, s, min(s + size, episodes)) for i, s in enumerate(range(0, episodes, size))]
