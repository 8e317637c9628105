"""What runs on a Dask worker: per-worker teachers and the shard task.

Building an `Exporter`'s teachers costs seconds to minutes (checkpoints, GPU upload), so each worker
process builds it once, on its first task, and keeps it for every later task of the same export: a
module-level cache keyed by the export options, the split and the factory. A worker never opens the
dataset's tables (all of nuScenes trainval's, in every worker process, would grow with the dataset):
the client sends the split's summary and, with each shard task, that shard's samples built. The shard
task itself is the single-process export applied to one shard: open the existing store, compute the
shard's not-done samples, write them, close.
"""
from __future__ import annotations

import hashlib
import logging
import os
import platform
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import cloudpickle

from cache_schema.layout import StoreConfig, shard_range
from dataset_access.nuscenes.samples import SampleSubset
from teacher_export.export import ExportOptions, Exporter, SplitSummary, StageTimes, export_indices

log = logging.getLogger(__name__)

# (options, split=...) -> Exporter; tests pass subclasses that count builds or inject failures
ExporterFactory = Callable[..., Exporter]

# One Exporter per worker process (the latest export's); the lock makes tasks of a multi-threaded
# worker take turns, since teachers are neither built nor run thread-safely.
_lock = threading.Lock()
_cached: tuple[str, Exporter] | None = None


@dataclass(frozen=True)
class StoreDescription:
    """What the client needs to create the store, computed where the teachers can be built."""

    config: StoreConfig
    provenance: dict[str, Any]


@dataclass
class ShardResult:
    """What a shard task reports back to the client."""

    shard: int
    written: int
    skipped: int
    seconds: float
    times: StageTimes = field(default_factory=StageTimes)
    worker: str = ""


def worker_exporter(options: ExportOptions, split: SplitSummary, factory: ExporterFactory = Exporter) -> Exporter:
    """This process's Exporter for `options` and `split`, built on first use and reused afterwards.

    Call with `_lock` held."""
    global _cached
    key = hashlib.sha256(cloudpickle.dumps((factory, options, split.provenance))).hexdigest()
    if _cached is None or _cached[0] != key:
        _cached = None  # let the previous export's teachers go before building new ones
        log.info("building the exporter (teachers) in process %d", os.getpid())
        _cached = (key, factory(options, split=split))
    return _cached[1]


def describe_store(options: ExportOptions, split: SplitSummary, factory: ExporterFactory = Exporter
                   ) -> StoreDescription:
    """The store config and provenance, computed on a worker (which builds its teachers on the way)."""
    with _lock:
        exporter = worker_exporter(options, split, factory)
        return StoreDescription(exporter.store_config(), exporter.provenance())


def export_shard(options: ExportOptions, shard: int, split: SplitSummary, samples: SampleSubset,
                 factory: ExporterFactory = Exporter) -> ShardResult:
    """Export the not-done samples of `shard` (`samples` holds them, built by the client) into the
    existing store at `options.out`.

    Safe to run again after any failure: samples done by an earlier attempt are skipped, the rest of
    the shard is written whole by the writer, done flags last."""
    started = time.perf_counter()
    with _lock:
        exporter = worker_exporter(options, split, factory)
        rows = shard_range(shard, exporter.store_config())
        writer = exporter.open_writer(create=False, rows=rows)
        todo = [i for i in rows if not writer.is_done(i)]
        missing = [i for i in todo if i not in samples.infos]
        if missing:
            raise RuntimeError(f"shard {shard}: the task was sent no samples for rows {missing[:5]}")
        times = StageTimes()
        export_indices(exporter, writer, todo, times, samples=samples)
    return ShardResult(shard, len(todo), len(rows) - len(todo), time.perf_counter() - started, times,
                       f"{platform.node()}:{os.getpid()}")
