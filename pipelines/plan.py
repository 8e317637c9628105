"""The shard plan: which Dask tasks an export needs.

A task owns whole cache shards (task size = shard size), so no two tasks ever write one shard file or
one chunk of `done` flags. A shard whose samples are all done needs no task: that is how a re-run of
the same command resumes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cache_schema.layout import StoreConfig, num_shards, shard_range


@dataclass(frozen=True)
class ShardTask:
    """One Dask task: export the not-done samples of `shard` (rows `indices` of the store)."""

    shard: int
    indices: range
    todo: int  # samples of the shard not done when the plan was made

    @property
    def key(self) -> str:
        return f"x3kd-export-shard-{self.shard:06d}"


def plan_shards(config: StoreConfig, done: np.ndarray) -> list[ShardTask]:
    """Tasks for every shard that still has a not-done sample, in store order."""
    done = np.asarray(done, dtype=bool)
    if done.shape != (config.num_samples,):
        raise ValueError(f"done mask has shape {done.shape}, the store has {config.num_samples} samples")
    tasks = []
    for shard in range(num_shards(config)):
        rows = shard_range(shard, config)
        todo = int((~done[rows.start:rows.stop]).sum())
        if todo:
            tasks.append(ShardTask(shard, rows, todo))
    return tasks
