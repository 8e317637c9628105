"""`CacheReader`: random access to the samples of a store, as float32 numpy (and str for text fields)."""
from __future__ import annotations

import logging
import os
from typing import Any, Iterable

import numpy as np
import zarr

from .chunks import ChunkReader, read_rows
from .sample_values import decode_text, decode_value
from .errors import CorruptChunkError, UserInputError
from .layout import DONE, ArraySpec, affine_key, arrays_for
from .store import StoreMeta, open_root, read_meta
from .views import CacheSample, SampleMeta


log = logging.getLogger(__name__)

_TOKEN_KEY = f"{SampleMeta.GROUP}/token"


class CacheReader:
    """Read samples of an x3kd cache.

    `reader[i]` returns a `CacheSample` (cache_schema.views): one typed view per group read, dense maps
    as float32, other floats as float32, integers as stored, text fields as str (or lists of str). Only
    the groups given by `groups` (default: all of the store's) are read.

    Safe in DataLoader workers: zarr handles are opened lazily per process (a fork or a spawn opens
    its own), and the reader pickles to its URL and options only. Its resident memory stays flat in the
    number of samples beyond the tokens, the done flags and 16 bytes of shard index per sample and array
    read (bench/reader_memory.py).
    """

    def __init__(self, url: str, *, groups: Iterable[str] | None = None, storage_options: dict | None = None):
        self.url = url
        self.storage_options = storage_options
        root = open_root(url, "r", storage_options)
        self.meta: StoreMeta = read_meta(root, url)
        self.config = self.meta.config
        if groups is None:
            groups = self.config.groups
        groups = tuple(groups)
        absent = [g for g in groups if g not in self.config.groups]
        if absent:
            raise UserInputError(f"{url}: store has no group(s) {absent} (it has {list(self.config.groups)})")
        self.groups = groups
        self._specs: list[ArraySpec] = arrays_for(self.config, groups, self.meta.schema_version)
        self._root: zarr.Group | None = root
        self._pid = os.getpid()
        self._small: dict[str, np.ndarray] = {}
        self._chunk_readers: dict[str, ChunkReader] = {}
        self._token_index: dict[str, int] | None = None

    # -- process-local handles ---------------------------------------------------------------------
    def _group(self) -> zarr.Group:
        if self._root is None or self._pid != os.getpid():
            # Forked children must not reuse the parent's store objects (fsspec sessions belong to the
            # parent's event loop).
            self._root = open_root(self.url, "r", self.storage_options)
            self._pid = os.getpid()
            self._chunk_readers = {}
        return self._root

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_root"] = None
        state["_small"] = {}
        state["_chunk_readers"] = {}
        state["_token_index"] = None
        return state

    def _chunk_reader(self, key: str) -> ChunkReader:
        group = self._group()
        if key not in self._chunk_readers:
            self._chunk_readers[key] = ChunkReader(group[key])
        return self._chunk_readers[key]

    def _whole(self, key: str) -> np.ndarray:
        """A small array read whole once: per-array reads cost milliseconds of fixed overhead each."""
        if key not in self._small:
            self._small[key] = self._group()[key][:]
        return self._small[key]

    # -- public API ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Samples the store holds room for (done or not: see `done_mask`, `num_done`)."""
        return self.config.num_samples

    @property
    def done_mask(self) -> np.ndarray:
        return self._group()[DONE.key][:].astype(bool)

    @property
    def num_done(self) -> int:
        return int(self._whole(DONE.key).astype(bool).sum())

    @property
    def tokens(self) -> list[str]:
        """Sample tokens by index; '' for a sample that is not done (nothing of it counts yet)."""
        done = self._whole(DONE.key).astype(bool)
        return [decode_text(t) if d else "" for t, d in zip(self._whole(_TOKEN_KEY), done)]

    def column(self, view: type, name: str) -> np.ndarray | list:
        """A small per-sample array for every sample at once, named by its view and field (e.g.
        `column(Calib, "image_paths")`): (N, ...) as stored for plain arrays (the teacher feature
        statistics, GT labels), decoded strings for text arrays. Meant for one-off passes at start-up;
        large maps are read per sample through `reader[i]`."""
        key = f"{view.GROUP}/{name}"
        spec = next((s for s in self._specs if s.key == key), None)
        if spec is None or not spec.small or spec.kind not in ("plain", "text"):
            raise KeyError(f"{key}: not a small array of the groups this reader reads ({list(self.groups)})")
        whole = self._group()[key][:]  # not kept: a column is read once, memory stays flat in N
        if spec.kind == "text":
            return [decode_value(spec, self.config, row, None) for row in whole]
        return whole

    def select(self, groups: Iterable[str]) -> "CacheReader":
        """A reader of the same store that reads only `groups`."""
        return CacheReader(self.url, groups=groups, storage_options=self.storage_options)

    def check_dataroot(self, dataroot: str | os.PathLike, option: str = "--dataroot") -> None:
        """The store names its JPEGs relative to the dataroot; another dataroot with the same file names
        would pair other pictures with this store's calibration and teacher outputs. Compares the
        fingerprint of the image paths and sizes the export recorded; a mismatch is a one-line error."""
        from .identity import images_fingerprint
        from .views import Calib

        recorded = self.meta.provenance.get("dataset", {}).get("images_sha256")
        if recorded is None:
            log.warning("%s: made before stores recorded their images; cannot check %s %s", self.url, option, dataroot)
            return
        if not self.done_mask.all():
            return  # an unfinished store: refused where it matters (training)
        relative = [p for row in self.select([Calib.GROUP]).column(Calib, "image_paths") for p in row]
        if images_fingerprint(dataroot, relative) != recorded:
            raise UserInputError(f"{option} {dataroot}: its camera images are not the ones {self.url} was exported "
                                 "from (their paths and sizes differ); give the dataroot the export read")

    def index_of(self, token: str) -> int:
        if self._token_index is None:
            self._token_index = {t: i for i, t in enumerate(self.tokens) if t}
        try:
            return self._token_index[token]
        except KeyError:
            raise KeyError(f"sample token {token!r} is not among the {self.num_done} done samples of {self.url}") \
                from None

    def by_token(self, token: str) -> CacheSample:
        return self[self.index_of(token)]

    def __getitem__(self, index: int) -> CacheSample:
        """Sample `index`; a sample that is not done, or whose chunk fails its checksum, is a one-line
        UserInputError that names it and says how to finish or repair the export."""
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} outside 0..{len(self) - 1}")
        index %= len(self)
        if not self._whole(DONE.key)[index]:
            raise UserInputError(f"{self.url}: sample {index} is not exported yet ({self.num_done} of {len(self)} "
                                 "done); run the export again to finish it")
        out: dict[str, Any] = {}
        # One chunk per array and sample, also for the small arrays: holding those whole would grow with
        # the dataset in every DataLoader worker (trainval gt/boxes: ~0.5 GB each). All of a sample's
        # chunks are fetched in one round trip.
        keys = [s.key for s in self._specs] + [affine_key(s) for s in self._specs
                                                if s.quantization(self.config) == "int8"]
        try:
            rows = dict(zip(keys, read_rows([(self._chunk_reader(k), index) for k in keys])))
        except CorruptChunkError as e:
            token = decode_text(self._whole(_TOKEN_KEY)[index])
            raise UserInputError(f"{self.url}: sample {index} ({token}) is corrupt ({e}); re-export it with "
                                 "`x3kd-cache export --repair` and the export's options") from None
        for spec in self._specs:
            affine = rows.get(affine_key(spec)) if spec.quantization(self.config) == "int8" else None
            out[spec.key] = decode_value(spec, self.config, rows[spec.key], affine)
        return CacheSample.from_arrays(out, index)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]
