"""Direct reads of one sample's chunk from a sharded array.

zarr-python spends a few milliseconds of fixed work per `array[i]` call, which for the student's
several dense maps per sample puts it well above the cost of reading the chunk bytes and decoding them.
For arrays whose codec chain is exactly ours (sharding over bytes → zstd → crc32c, index at the end
with crc32c), this reader does what the Zarr v3 sharding spec prescribes and nothing more: read the
shard index once per shard, read the chunk's byte range, check its crc32c, zstd-decode it. Arrays with
any other encoding (a store rewritten by another tool, say) are read through zarr.
"""
from __future__ import annotations

import numpy as np
import zarr
from numcodecs import CRC32C, Zstd
from zarr.abc.store import RangeByteRequest, SuffixByteRequest
from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec, ZstdCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from .errors import CorruptChunkError

_EMPTY = np.uint64(2**64 - 1)
_crc = CRC32C()
_zstd = Zstd()


class ChunkReader:
    """`read(i)` → sample i of `array` as a numpy array of the stored dtype."""

    def __init__(self, array: zarr.Array):
        self.array = array
        self._direct = _is_our_encoding(array)
        self._indexes: dict[int, np.ndarray] = {}
        if self._direct:
            self._store = array.store_path.store
            self._rows_per_shard = array.shards[0]
            self._dtype = np.dtype(array.dtype).newbyteorder("<")

    def read(self, index: int) -> np.ndarray:
        if not self._direct:
            return self.array[index]
        shard, row = divmod(index, self._rows_per_shard)
        key = shard_key(self.array, shard)
        try:
            return self._read_chunk(key, shard, row)
        except ValueError:
            # A cached shard index goes stale if the shard was rewritten (an export resumed while we
            # read): read the index again once before calling the chunk corrupt.
            self._indexes.pop(shard, None)
            return self._read_chunk(key, shard, row)

    def _read_chunk(self, key: str, shard: int, row: int) -> np.ndarray:
        offsets = self._indexes.get(shard)
        if offsets is None:
            offsets = read_shard_index(self.array, shard)
            if offsets is None:  # no shard file: nothing written there (yet), as zarr reads it
                return self._fill()
            self._indexes[shard] = offsets
        start, length = offsets[row]
        if not chunk_written(offsets, row):
            return self._fill()
        raw = self._get(key, RangeByteRequest(int(start), int(start + length)))
        return self._decode(key, row, raw)

    def _decode(self, key: str, row: int, raw: bytes | None) -> np.ndarray:
        if raw is None:
            raise CorruptChunkError(f"{key}: shard disappeared while reading")
        try:
            payload = _crc.decode(raw)
        except RuntimeError as e:  # numcodecs reports a checksum mismatch as RuntimeError
            raise CorruptChunkError(f"{key}: chunk {row}: {e}") from None
        data = _zstd.decode(payload)
        return np.frombuffer(data, dtype=self._dtype).reshape(self.array.shape[1:]).astype(self.array.dtype, copy=False)

    def _fill(self) -> np.ndarray:
        return np.full(self.array.shape[1:], self.array.fill_value, dtype=self.array.dtype)

    def _get(self, key: str, byte_range) -> bytes | None:
        return _get(self._store, key, byte_range)


def _get(store, key: str, byte_range=None) -> bytes | None:
    buf = sync(store.get(key, prototype=default_buffer_prototype(), byte_range=byte_range))
    return None if buf is None else buf.to_bytes()


def shard_key(array: zarr.Array, shard: int) -> str:
    """Store key of the shard (or, unsharded, the chunk) holding rows shard * rows_per_shard... of
    `array`, whose chunks span every axis but the first whole."""
    parts = ["c", str(shard)] + ["0"] * (array.ndim - 1)
    return "/".join([array.store_path.path, *parts] if array.store_path.path else parts)


def read_shard_index(array: zarr.Array, shard: int) -> np.ndarray | None:
    """The index of one shard of a sharded array: (chunks per shard, 2) uint64 (offset, nbytes) rows,
    2**64 - 1 for a chunk never written; None when the shard file does not exist. Zarr v3 sharding with
    the index at the end, protected by a crc32c (our layout's index codecs); a bad checksum is a
    `CorruptChunkError` naming the shard."""
    key = shard_key(array, shard)
    chunks_per_shard = array.shards[0] // array.chunks[0]
    raw = _get(array.store_path.store, key, SuffixByteRequest(chunks_per_shard * 16 + 4))
    if raw is None:
        return None
    try:
        payload = _crc.decode(raw)
    except RuntimeError as e:  # numcodecs reports a checksum mismatch as RuntimeError
        raise CorruptChunkError(f"{key}: shard index: {e}") from None
    return np.frombuffer(payload, dtype="<u8").reshape(chunks_per_shard, 2)


def chunk_written(index: np.ndarray, row: int) -> bool:
    """Whether row `row` of a shard has a chunk, from its `read_shard_index`."""
    return bool(index[row, 0] != _EMPTY)


def _is_our_encoding(array: zarr.Array) -> bool:
    codecs = array.metadata.codecs
    if len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec):
        return False
    sharding = codecs[0]
    inner = sharding.codecs
    index = sharding.index_codecs
    return (
        array.chunks[0] == 1 and tuple(array.chunks[1:]) == tuple(array.shape[1:])
        and sharding.index_location.value == "end"
        and len(inner) == 3 and isinstance(inner[0], BytesCodec) and isinstance(inner[1], ZstdCodec)
        and isinstance(inner[2], Crc32cCodec)
        and (inner[0].endian is None or inner[0].endian.value == "little")
        and len(index) == 2 and isinstance(index[0], BytesCodec) and isinstance(index[1], Crc32cCodec)
    )


def read_rows(requests: list[tuple[ChunkReader, int]]) -> list[np.ndarray]:
    """`[reader.read(i) for reader, i in requests]`, with every chunk fetched in one round trip to the
    store: a sample spread over twenty arrays otherwise pays twenty of zarr's synchronous gets (~0.3 ms
    each on local disk, far more on an object store). Anything unusual (a foreign encoding, an index
    not yet read, an empty or missing chunk, an error) takes the one-by-one path."""
    import asyncio

    planned: list[tuple[int, str, int, RangeByteRequest]] = []
    out: list[np.ndarray | None] = [None] * len(requests)
    for n, (reader, index) in enumerate(requests):
        if not reader._direct:
            continue
        shard, row = divmod(index, reader._rows_per_shard)
        offsets = reader._indexes.get(shard)
        if offsets is None or not chunk_written(offsets, row):
            continue
        start, length = offsets[row]
        key = shard_key(reader.array, shard)
        planned.append((n, key, row, RangeByteRequest(int(start), int(start + length))))
    if planned:
        async def fetch():
            return await asyncio.gather(*(requests[n][0]._store.get(key, prototype=default_buffer_prototype(),
                                                                    byte_range=rng)
                                          for n, key, _, rng in planned), return_exceptions=True)
        for (n, key, row, _), buf in zip(planned, sync(fetch())):
            if buf is None or isinstance(buf, BaseException):
                continue
            try:
                out[n] = requests[n][0]._decode(key, row, buf.to_bytes())
            except CorruptChunkError:
                continue  # the one-by-one path re-reads a possibly stale index before calling it corrupt
    return [v if v is not None else reader.read(index) for v, (reader, index) in zip(out, requests)]

