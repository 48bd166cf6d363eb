"""Hugging Face datasets: ``steps/`` and ``episodes/`` Parquet shards plus a dataset card
``README.md`` whose ``configs:`` name them, so ``datasets.load_dataset(path, "steps")`` works
offline on the folder."""
from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa

from plume_capture.export.reader import Chunk, iter_chunks, open_run, validated
from plume_capture.export.rllib import SHARD_ROWS, ShardWriter
from plume_capture.export.staging import check_free, provenance, staged_dir


def _list(obs: np.ndarray) -> pa.Array:
    n, d = obs.shape
    return pa.ListArray.from_arrays(pa.array(np.arange(0, n * d + 1, d, dtype=np.int32)),
                                    pa.array(obs.reshape(-1)))


def steps_table(c: Chunk) -> pa.Table:
    return pa.table({
        "episode_index": c.episode, "step": c.step, "observation": _list(c.prev_obs()),
        "action": c.action, "reward": c.reward, "terminated": c.terminated,
        "truncated": c.truncated, "next_observation": _list(c.obs),
        "seed": np.repeat(c.seeds, np.diff(np.r_[c.starts, c.n])),
    })


def episode_returns(c: Chunk) -> np.ndarray:
    """float64 sum of each episode's rewards in step order, as the episode records hold it
    (``np.add.reduceat`` sums pairwise and can differ in the last bit)."""
    lengths = np.diff(np.r_[c.starts, c.n])
    total = np.zeros(len(c.starts))
    for k in range(int(lengths.max(initial=0))):
        live = lengths > k
        total[live] += c.reward[c.starts[live] + k]
    return total


def episodes_table(c: Chunk) -> pa.Table:
    ends = np.r_[c.starts[1:], c.n] - 1
    return pa.table({
        "episode_index": c.episode[c.starts], "seed": c.seeds,
        "total_steps": c.step[ends], "total_reward": episode_returns(c),
        "terminated": c.terminated[ends], "truncated": c.truncated[ends],
        "reset_observation": _list(c.reset_obs),
    })


_CARD = """---
configs:
- config_name: steps
  data_files: "steps/*.parquet"
  default: true
- config_name: episodes
  data_files: "episodes/*.parquet"
tags:
- reinforcement-learning
- plume-navigation
---
# {title}

Trajectories of `PlumeNav-v0` captured by plume-capture and exported from run `{run_id}`
({n_steps} steps, {n_episodes} episodes).

- `steps`: one row per transition (`observation` before the step, `next_observation` after it;
  an episode's first `observation` is its reset observation).
- `episodes`: one row per episode with its seed, length, return and reset observation.

## Provenance

```json
{provenance}
```

```python
import datasets
steps = datasets.load_dataset("PATH/TO/THIS/FOLDER", "steps", split="train")
```
"""


def export_hf(run_dir, out=None, *, shard_rows: int = SHARD_ROWS, full_validation: bool = False) -> str:
    """Export ``run_dir`` to ``out`` (default ``<run_dir>.hf``); returns ``out``."""
    out = check_free(out if out is not None else os.fspath(run_dir).rstrip(os.sep) + ".hf", run_dir)
    src = open_run(run_dir, full_validation=full_validation)
    prov = provenance(src)
    meta = {b"plume_capture.provenance": json.dumps(prov).encode()}
    prov = {**prov, "episode_seeds": "the seed column of the episodes config"}
    with staged_dir(out) as tmp, validated(src):
        with ShardWriter(os.path.join(tmp, "steps"), shard_rows, meta) as sw, \
                ShardWriter(os.path.join(tmp, "episodes"), shard_rows, meta) as ew:
            for c in iter_chunks(src):
                sw.write(steps_table(c))
                ew.write(episodes_table(c))
        counts = src.confirm()
        with open(os.path.join(tmp, "README.md"), "w") as f:
            f.write(_CARD.format(title=f"plume-capture run {prov['run_id']}", run_id=prov["run_id"],
                                 n_steps=counts["steps"], n_episodes=counts["episodes"],
                                 provenance=json.dumps(prov, indent=1, default=str)))
    return out
