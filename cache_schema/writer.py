"""`CacheWriter`: fill a store sample by sample, whole shards at a time, `done` flags last.

Writing one sample into a sharded array rewrites that shard file, so the writer buffers encoded samples
and writes a shard once every sample of it that is not already done has arrived (or at `flush()` /
`close()`). For each array the whole shard is written in one call; only then are the shard's `done`
flags written, in the one chunk that holds them. A process killed at any point therefore leaves no
sample marked done whose data is not on disk, and a re-run skips exactly the done samples.
"""
from __future__ import annotations

import json
import logging

import numpy as np
import zarr

from .sample_values import encode_sample
from .errors import UserInputError
from .identity import first_difference
from .layout import DONE, SCHEMA_VERSION, StoreConfig, affine_key, arrays_for, shard_of, shard_range
from .store import StoreMeta, create_arrays, open_root, read_meta, software_version, write_meta
from .views import CacheSample

log = logging.getLogger(__name__)


class CacheWriter:
    """Create (or reopen) a store and write samples into it.

    `CacheWriter(url, config, provenance)` creates the store if nothing is there; if an x3kd store is
    there already its config and provenance (teacher identity, dataset identity) must equal the given
    ones, otherwise `UserInputError`. Samples are `CacheSample`s (cache_schema.views) holding every
    group of the store; dense maps are float arrays, text fields are str.

    `rows` restricts the writer to whole shards (a Dask task's share): only their done flags are read,
    which matters for a task of a 28k-sample store on an object store.
    """

    def __init__(self, url: str, config: StoreConfig, provenance: dict | None = None, *,
                 storage_options: dict | None = None, create: bool = True, rows: range | None = None):
        self.url = url
        self.config = config
        # normalised through JSON so that a provenance read back from the store compares equal
        self.provenance = json.loads(json.dumps(provenance or {}))
        root = self._open_or_create(create, storage_options)
        self._root = root
        self._specs = arrays_for(config, schema=read_meta(root, url).schema_version)
        keys = [s.key for s in self._specs] + [affine_key(s) for s in self._specs if s.quantization(config) == "int8"]
        # write_empty_chunks is a runtime setting, not stored with the array: without it zarr drops inner
        # chunks equal to the fill value, and an absent chunk could not be told from a lost one.
        with zarr.config.set({"array.write_empty_chunks": True}):
            self._arrays = {key: root[key] for key in keys}
            self._done_array = root[DONE.key]
        self.rows = range(config.num_samples) if rows is None else rows
        if self.rows.step != 1 or self.rows.start % config.shard_size or not (
                self.rows.stop == config.num_samples or self.rows.stop % config.shard_size == 0):
            raise ValueError(f"rows {self.rows} must cover whole shards of {config.shard_size}")
        self._done = np.zeros(config.num_samples, dtype=bool)
        self._done[self.rows.start:self.rows.stop] = self._done_array[self.rows.start:self.rows.stop].astype(bool)
        self._pending: dict[int, dict[int, dict[str, np.ndarray]]] = {}  # shard -> index -> disk arrays

    def _open_or_create(self, create: bool, storage_options: dict | None) -> zarr.Group:
        try:
            root = open_root(self.url, "r+", storage_options)
            existing = root.attrs.asdict().get("x3kd")
        except UserInputError:
            root, existing = None, None
        if existing:
            meta = read_meta(root, self.url)
            if meta.config != self.config:
                raise UserInputError(f"{self.url}: existing store was made with a different config "
                                     f"({first_difference(meta.config.to_json(), self.config.to_json())}); "
                                     "use a new --out or delete the store")
            if meta.provenance != self.provenance:
                raise UserInputError(f"{self.url}: existing store was made by different teachers/data "
                                     f"({first_difference(meta.provenance, self.provenance)}); "
                                     "use a new --out or delete the store")
            return root
        if not create:
            raise UserInputError(f"{self.url}: no x3kd cache here")
        root = open_root(self.url, "a", storage_options)
        create_arrays(root, self.config)
        # The root attributes are written last: a store whose creation was interrupted has none and is
        # created again on the next open.
        write_meta(root, StoreMeta(SCHEMA_VERSION, self.config, self.provenance, software_version()))
        log.info("created %s (%d samples, shards of %d)", self.url, self.config.num_samples, self.config.shard_size)
        return root

    # -- state ------------------------------------------------------------------------------------
    @property
    def done_mask(self) -> np.ndarray:
        return self._done.copy()

    def is_done(self, index: int) -> bool:
        return bool(self._done[index])

    def pending_indices(self) -> list[int]:
        return sorted(i for shard in self._pending.values() for i in shard)

    # -- writing ----------------------------------------------------------------------------------
    def write_sample(self, index: int, sample: CacheSample) -> None:
        """Encode and buffer one sample; writes its shard once the shard is complete.

        A sample that is already done is ignored (resume semantics)."""
        if index not in self.rows:
            raise IndexError(f"sample index {index} outside this writer's rows {self.rows.start}..{self.rows.stop - 1}")
        if self._done[index]:
            return
        try:
            encoded = encode_sample(sample.to_arrays(), self._specs, self.config)
        except ValueError as e:
            raise ValueError(f"sample {index}: {e}") from None
        shard = shard_of(index, self.config)
        self._pending.setdefault(shard, {})[index] = encoded
        if all(self._done[i] or i in self._pending[shard] for i in shard_range(shard, self.config)):
            self._write_shard(shard)

    def flush(self) -> None:
        """Write every buffered shard, also partly filled ones (their other samples stay not-done)."""
        for shard in sorted(self._pending):
            self._write_shard(shard)

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> "CacheWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # On an exception we still write what is complete: finished samples are worth keeping and the
        # done flags guarantee nothing half-written counts.
        self.close()

    def _write_shard(self, shard: int) -> None:
        samples = self._pending.pop(shard)
        rows = shard_range(shard, self.config)
        kept_done = [i for i in rows if self._done[i]]
        for key, array in self._arrays.items():
            block = np.full((len(rows), *array.shape[1:]), array.fill_value, dtype=array.dtype)
            # A shard is rewritten whole; samples finished by an earlier run are read back first (one by
            # one: a sample being repaired may sit in the same shard with a chunk that fails its checksum).
            # Their bytes are rewritten unchanged, so they stay valid whatever happens next.
            for i in kept_done:
                block[i - rows.start] = array[i]
            for i, encoded in samples.items():
                block[i - rows.start] = encoded[key]
            array[rows.start:rows.stop] = block
        flags = self._done[rows.start:rows.stop].copy()
        for i in samples:
            flags[i - rows.start] = True
        self._done_array[rows.start:rows.stop] = flags.astype(np.uint8)
        self._done[rows.start:rows.stop] = flags
        log.debug("wrote shard %d (%d new samples)", shard, len(samples))

    def forget(self, indices: list[int]) -> None:
        """Mark samples not done, so that the next export writes them again (`export --repair` for the
        samples `validate` names as corrupt or missing); their shards are rewritten whole then."""
        indices = sorted({int(i) for i in indices if self._done[int(i)]})
        for shard in sorted({shard_of(i, self.config) for i in indices}):
            rows = shard_range(shard, self.config)
            flags = self._done[rows.start:rows.stop].copy()
            for i in indices:
                if i in rows:
                    flags[i - rows.start] = False
            self._done_array[rows.start:rows.stop] = flags.astype(np.uint8)
            self._done[rows.start:rows.stop] = flags

    # -- bookkeeping --------------------------------------------------------------------------------
    def record_run(self, run: dict) -> None:
        """Append a run record (who exported what, when) to the store attributes."""
        meta = read_meta(self._root, self.url)
        write_meta(self._root, StoreMeta(meta.schema_version, meta.config, meta.provenance,
                                         meta.software_version, (*meta.runs, run)))


def forget_samples(url: str, indices: list[int], storage_options: dict | None = None) -> None:
    """Mark samples of an existing store not done (see `CacheWriter.forget`), without knowing the
    teachers that made it: the store's own config and provenance open it."""
    meta = read_meta(open_root(url, "r", storage_options), url)
    CacheWriter(url, meta.config, meta.provenance, storage_options=storage_options, create=False).forget(indices)
