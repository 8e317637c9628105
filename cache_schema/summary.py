"""`summarize(url)`: what `x3kd-cache inspect` prints: progress, groups, bytes on disk, identity."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from zarr.core.sync import sync

from .lease import describe_writer
from .layout import DONE, arrays_for
from .store import StoreMeta, open_root, read_meta


@dataclass
class GroupSize:
    group: str
    arrays: int
    bytes_on_disk: int
    bytes_decoded: int  # of the done samples, at the stored dtype

    @property
    def ratio(self) -> float:
        return self.bytes_decoded / self.bytes_on_disk if self.bytes_on_disk else float("nan")


@dataclass
class StoreSummary:
    url: str
    meta: StoreMeta
    num_done: int
    groups: list[GroupSize]
    writer: str = ""  # who holds the store's lease, when a writer does

    def format(self) -> str:
        c = self.meta.config
        h, w = c.grid.shape
        lines = [
            f"store          {self.url}",
            f"schema         {self.meta.schema_version} (written by x3kd {self.meta.software_version})",
            f"samples        {self.num_done}/{c.num_samples} done, shards of {c.shard_size}",
            *([f"writer         {self.writer}"] if self.writer else []),
            f"BEV grid       {h}x{w} cells, range {list(c.grid.point_cloud_range)}, cell {c.grid.cell_size} m",
            f"classes        {', '.join(c.classes.classes)}",
            f"BEV features   {c.bev_channels} channels, {c.bev_quantization}",
        ]
        for key, value in sorted(self.meta.provenance.items()):
            lines.append(f"{key:<14} {_identity(value)}")
        lines.append(f"{'group':<16}{'arrays':>7}{'on disk':>12}{'decoded':>12}{'ratio':>8}")
        for g in self.groups:
            lines.append(f"{g.group:<16}{g.arrays:>7}{_mb(g.bytes_on_disk):>12}{_mb(g.bytes_decoded):>12}{g.ratio:>8.2f}")
        total_disk = sum(g.bytes_on_disk for g in self.groups)
        total = sum(g.bytes_decoded for g in self.groups)
        lines.append(f"{'total':<16}{'':>7}{_mb(total_disk):>12}{_mb(total):>12}"
                     f"{(total / total_disk if total_disk else float('nan')):>8.2f}")
        if self.meta.runs:
            last = self.meta.runs[-1]
            lines.append(f"last run       {', '.join(f'{k}={v}' for k, v in last.items())}")
        return "\n".join(lines)


def summarize(url: str, *, storage_options: dict | None = None) -> StoreSummary:
    root = open_root(url, "r", storage_options)
    meta = read_meta(root, url)
    config = meta.config
    num_done = int(root[DONE.key][:].astype(bool).sum())
    store, prefix = root.store_path.store, root.store_path.path
    groups = []
    for group in config.groups:
        specs = arrays_for(config, (group,), meta.schema_version)
        decoded = 0
        for spec in specs:
            decoded += int(np.prod(spec.sample_shape(config))) * np.dtype(spec.disk_dtype(config)).itemsize
            if spec.quantization(config) == "int8":
                decoded += 2 * spec.sample_shape(config)[0] * 4
        on_disk = sync(store.getsize_prefix(f"{prefix}/{group}" if prefix else group))
        groups.append(GroupSize(group, len(specs), int(on_disk), decoded * num_done))
    return StoreSummary(url, meta, num_done, groups, writer=describe_writer(url, storage_options))


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def _identity(value) -> str:
    if isinstance(value, dict):
        parts = [f"{k}={v}" for k, v in value.items() if k != "config"]
        return ", ".join(parts) if parts else "(config only)"
    return str(value)
