"""The pipelines tests' export options, and Exporter subclasses that tests hand to the Dask workers (by
reference: this module is importable there) to count teacher builds, slow tasks down, or make one task
fail once."""
from __future__ import annotations

import os
import time
from pathlib import Path

from teacher_export.export import Exporter, ExportOptions, SplitSummary
from tests.teacher_export.exports import small_export_options


NUM_SAMPLES = 8  # one mini_train scene of 8 key frames; shards of 2 -> 4 shard tasks


def options(dataroot, out, **changes) -> ExportOptions:
    """Small export options without an image teacher, in shards of 2 (4 shard tasks)."""
    return small_export_options(dataroot, out, image_teacher=None, shard_size=2, **changes)


def _append(path: str, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")


class CountingExporter(Exporter):
    """Logs '<pid>' to `build_log` whenever an Exporter is built."""

    def __init__(self, options: ExportOptions, build_log: str, split: SplitSummary | None = None):
        super().__init__(options, split)
        _append(build_log, str(os.getpid()))


class SlowExporter(Exporter):
    """Logs '<pid> <first index>' to `task_log` when a shard's computation starts, and sleeps `delay`
    seconds per sample, so that a test can kill the worker in the middle of a task."""

    def __init__(self, options: ExportOptions, task_log: str, delay: float, split: SplitSummary | None = None):
        super().__init__(options, split)
        self.task_log, self.delay = task_log, delay

    def compute(self, indices, config, times=None, samples=None):
        indices = list(indices)
        _append(self.task_log, f"{os.getpid()} {indices[0] if indices else -1}")
        for item in super().compute(indices, config, times, samples):
            time.sleep(self.delay)
            yield item


class FlakyExporter(Exporter):
    """Raises once, at sample `fail_at` (after the sample before it in the shard was handed over),
    the first time any worker gets there; `marker` records that it did."""

    def __init__(self, options: ExportOptions, marker: str, fail_at: int, split: SplitSummary | None = None):
        super().__init__(options, split)
        self.marker, self.fail_at = Path(marker), fail_at

    def compute(self, indices, config, times=None, samples=None):
        for index, sample in super().compute(indices, config, times, samples):
            if index == self.fail_at and not self.marker.exists():
                self.marker.touch()
                raise RuntimeError(f"injected failure at sample {index}")
            yield index, sample
