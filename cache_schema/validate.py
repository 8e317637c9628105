"""`validate(url)`: check a store end to end and name every bad sample by token.

Checks, in order: root attributes and schema version; that every array of the layout exists with the
declared shape and dtype; then, per array and sample, that a sample marked done has its chunk in the
shard (missing otherwise) and that the chunk decodes with a matching crc32c checksum (corrupt
otherwise). Samples not marked done are reported as incomplete. Every chunk is read.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import zarr
from zarr.core.sync import sync

from .chunks import chunk_written, read_shard_index, shard_key
from .sample_values import decode_text
from .errors import CorruptChunkError
from .lease import describe_writer
from .layout import DONE, StoreConfig, affine_key, arrays_for, num_shards, shard_range
from .store import StoreMeta, open_root, read_meta

log = logging.getLogger(__name__)


@dataclass
class SampleProblem:
    index: int
    token: str
    array: str
    detail: str

    def __str__(self) -> str:
        return f"sample {self.index} ({self.token}) {self.array}: {self.detail}"


@dataclass
class ValidationReport:
    url: str
    schema_version: str
    num_samples: int
    num_done: int
    store_problems: list[str] = field(default_factory=list)
    missing: list[SampleProblem] = field(default_factory=list)
    corrupt: list[SampleProblem] = field(default_factory=list)
    incomplete: list[tuple[int, str]] = field(default_factory=list)
    writer: str = ""  # who holds the store's lease, when a writer does (cache_schema.lease)

    @property
    def ok(self) -> bool:
        return not (self.store_problems or self.missing or self.corrupt or self.incomplete)

    def bad_tokens(self) -> set[str]:
        return {p.token for p in self.missing + self.corrupt} | {t for _, t in self.incomplete}

    def summary(self) -> str:
        lines = [f"{self.url}: schema {self.schema_version}, {self.num_done}/{self.num_samples} samples done"]
        if self.writer:
            lines.append(f"writer: {self.writer} holds the store: samples it has not finished show as incomplete")
        lines += [f"store: {p}" for p in self.store_problems]
        lines += [f"missing: {p}" for p in self.missing]
        lines += [f"corrupt: {p}" for p in self.corrupt]
        if self.incomplete:
            shown = ", ".join(f"{i} ({t})" for i, t in self.incomplete[:20])
            more = f" and {len(self.incomplete) - 20} more" if len(self.incomplete) > 20 else ""
            lines.append(f"incomplete: {len(self.incomplete)} samples not done: {shown}{more}")
        if self.missing or self.corrupt:
            lines.append("repair: `x3kd-cache export --repair` with the export's options writes these samples again")
        lines.append("clean" if self.ok else "NOT clean")
        return "\n".join(lines)


def validate(url: str, *, storage_options: dict | None = None, progress: bool = False) -> ValidationReport:
    """Read every chunk of the store at `url`; raise `UserInputError` only if it is not an x3kd store."""
    root = open_root(url, "r", storage_options)
    meta = read_meta(root, url)
    config = meta.config
    report = ValidationReport(url, meta.schema_version, config.num_samples, 0, writer=describe_writer(url, storage_options))

    arrays = _check_arrays(root, meta, report)
    if DONE.key not in arrays:
        return report
    done = arrays[DONE.key][:].astype(bool)
    report.num_done = int(done.sum())
    tokens = _tokens(arrays.get("meta/token"), config)

    keys = [k for k in arrays if k != DONE.key]
    shards = range(num_shards(config))
    if progress:
        from .progress import progress as progress_bar

        shards = progress_bar(shards, desc="validate", unit="shard")
    for shard in shards:
        rows = shard_range(shard, config)
        for key in keys:
            _check_shard(arrays[key], key, rows, done, tokens, report)
    report.incomplete = [(i, tokens[i]) for i in np.flatnonzero(~done)]
    return report


def _check_arrays(root: zarr.Group, meta: StoreMeta, report: ValidationReport) -> dict[str, zarr.Array]:
    config = meta.config
    expected: dict[str, tuple[tuple[int, ...], str]] = {DONE.key: ((config.num_samples,), DONE.dtype)}
    for spec in arrays_for(config, schema=meta.schema_version):
        expected[spec.key] = ((config.num_samples, *spec.sample_shape(config)), spec.disk_dtype(config))
        if spec.quantization(config) == "int8":
            expected[affine_key(spec)] = ((config.num_samples, 2, spec.sample_shape(config)[0]), "float32")
    found: dict[str, zarr.Array] = {}
    for key, (shape, dtype) in expected.items():
        try:
            array = root[key]
        except KeyError:
            report.store_problems.append(f"array {key} is missing")
            continue
        if tuple(array.shape) != shape or np.dtype(array.dtype) != np.dtype(dtype):
            report.store_problems.append(f"array {key} is {array.dtype}{tuple(array.shape)}, layout says {dtype}{shape}")
            continue
        found[key] = array
    return found


def _tokens(token_array: zarr.Array | None, config: StoreConfig) -> list[str]:
    """Sample tokens for the report; '#i' where the token itself cannot be read."""
    tokens = [f"#{i}" for i in range(config.num_samples)]
    if token_array is None:
        return tokens
    for shard in range(num_shards(config)):
        rows = shard_range(shard, config)
        for i in rows:
            try:
                tokens[i] = decode_text(token_array[i]) or tokens[i]
            except Exception:  # a corrupt token chunk is reported by the array check itself
                pass
    return tokens


def _check_shard(array: zarr.Array, key: str, rows: range, done: np.ndarray, tokens: list[str],
                 report: ValidationReport) -> None:
    present = _chunks_present(array, rows)
    try:
        array[rows.start:rows.stop]
        readable = [True] * len(rows)
    except Exception:
        # Some chunk of the shard is bad: find out which, sample by sample.
        readable = []
        for i in rows:
            try:
                array[i]
                readable.append(True)
            except Exception as e:
                readable.append(False)
                report.corrupt.append(SampleProblem(i, tokens[i], key, _short(e)))
    for offset, i in enumerate(rows):
        if done[i] and readable[offset] and not present[offset]:
            report.missing.append(SampleProblem(i, tokens[i], key, "chunk absent although the sample is marked done"))


def _chunks_present(array: zarr.Array, rows: range) -> list[bool]:
    """Whether each sample's chunk exists: from the shard index (sharded arrays; a corrupt index counts
    as absent, the read check reports the samples) or from the chunk keys."""
    chunk_rows = array.chunks[0]
    if not array.shards:
        store = array.store_path.store
        return [bool(sync(store.exists(shard_key(array, i // chunk_rows)))) for i in rows]
    shard = rows.start // array.shards[0]
    try:
        index = read_shard_index(array, shard)
    except CorruptChunkError:
        return [False] * len(rows)
    if index is None:
        return [False] * len(rows)
    return [chunk_written(index, (i - shard * array.shards[0]) // chunk_rows) for i in rows]


def _short(e: Exception) -> str:
    text = f"{type(e).__name__}: {e}"
    return text if len(text) < 160 else text[:157] + "..."

