"""Per-sample values: what users hand over / get back, encoded to and decoded from the arrays on disk
(strings as zero-padded UTF-8, quantised dense maps with their affine, small values as they are). Not a
Zarr codec: the Zarr codecs of each array are in the layout."""
from __future__ import annotations

from typing import Any

import numpy as np

from . import quantize
from .layout import ArraySpec, StoreConfig, affine_key


def encode_text(value: str | list[str] | tuple[str, ...], shape: tuple[int, ...]) -> np.ndarray:
    """Strings → zero-padded UTF-8 bytes as uint8 of `shape` (..., width)."""
    width = shape[-1]
    items = [value] if isinstance(value, str) else list(np.asarray(value, dtype=object).reshape(-1))
    out = np.zeros((len(items), width), dtype=np.uint8)
    for i, s in enumerate(items):
        raw = str(s).encode("utf-8")
        if len(raw) > width:
            raise ValueError(f"string of {len(raw)} bytes exceeds the {width}-byte field: {s[:60]!r}...")
        out[i, : len(raw)] = np.frombuffer(raw, dtype=np.uint8)
    return out.reshape(shape)


def decode_text(raw: np.ndarray) -> str | list:
    """Inverse of `encode_text` for one sample: a str, or nested lists of str."""
    if raw.ndim == 1:
        return bytes(raw).rstrip(b"\0").decode("utf-8")
    return [decode_text(r) for r in raw]


def encode_sample(sample: dict[str, Any], specs: list[ArraySpec], config: StoreConfig) -> dict[str, np.ndarray]:
    """A sample as the user gives it (keys 'group/name') → the disk arrays of that sample.

    Raises ValueError naming the key for missing, unknown or mis-shaped values."""
    known = {s.key for s in specs}
    unknown = sorted(set(sample) - known)
    if unknown:
        raise ValueError(f"unknown keys {unknown} (this store has {sorted(known)})")
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        if spec.key not in sample:
            raise ValueError(f"missing {spec.key}")
        shape = spec.sample_shape(config)
        value = sample[spec.key]
        if spec.kind == "text":
            out[spec.key] = encode_text(value, shape)
            continue
        arr = np.asarray(value)
        if arr.shape != shape:
            raise ValueError(f"{spec.key} has shape {arr.shape}, the store expects {shape}")
        if spec.kind == "dense":
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{spec.key} contains NaN or inf")
            stored, affine = quantize.encode(arr, spec.quantization(config))
            out[spec.key] = stored
            if affine is not None:
                out[affine_key(spec)] = affine
        else:
            out[spec.key] = arr.astype(spec.disk_dtype(config), copy=False)
    return out


def decode_value(spec: ArraySpec, config: StoreConfig, stored: np.ndarray, affine: np.ndarray | None = None) -> Any:
    """Disk value of one sample → what the reader returns (float32 for floats, str for text)."""
    if spec.kind == "text":
        return decode_text(stored)
    if spec.kind == "dense":
        return quantize.decode(stored, spec.quantization(config), affine)
    if np.issubdtype(stored.dtype, np.floating):
        return stored.astype(np.float32)
    return stored
