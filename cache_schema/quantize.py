"""Reduced storage of dense teacher maps.

- float16: plain cast. Heatmaps and regression maps stay float16 because int8 loses a heatmap's low
  background (measured in BENCHMARKS.md).
- int8: per-channel affine, x ≈ q * scale + offset with q in [-127, 127]. scale/offset are computed per
  sample and channel from that channel's min/max, so one bright channel does not flatten the others.

Decoding always returns float32.
"""
from __future__ import annotations

import numpy as np

INT8_LEVELS = 127


def encode(values: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(C, ...) float map -> (stored array, affine (2, C) float32 or None)."""
    values = np.asarray(values, dtype=np.float32)
    if mode == "float16":
        return values.astype(np.float16), None
    if mode == "int8":
        flat = values.reshape(values.shape[0], -1)
        lo, hi = flat.min(axis=1), flat.max(axis=1)
        offset = (hi + lo) / 2
        scale = (hi - lo) / (2 * INT8_LEVELS)
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        q = np.rint((flat - offset[:, None]) / scale[:, None])
        q = np.clip(q, -INT8_LEVELS, INT8_LEVELS).astype(np.int8).reshape(values.shape)
        return q, np.stack([scale, offset]).astype(np.float32)
    raise ValueError(f"unknown quantization {mode!r}")


def decode(stored: np.ndarray, mode: str, affine: np.ndarray | None = None) -> np.ndarray:
    """Inverse of `encode`; works on one sample (C, ...) or a batch (N, C, ...) with affine (N, 2, C)."""
    if mode == "float16":
        return stored.astype(np.float32)
    if mode == "int8":
        if affine is None:
            raise ValueError("int8 maps need their affine (scale, offset)")
        scale, offset = np.moveaxis(np.asarray(affine, dtype=np.float32), -2, 0)
        extra = stored.ndim - scale.ndim
        scale = scale.reshape(scale.shape + (1,) * extra)
        offset = offset.reshape(offset.shape + (1,) * extra)
        out = stored.astype(np.float32)
        out *= scale  # in place: these maps are tens of MB, temporaries cost more than the arithmetic
        out += offset
        return out
    raise ValueError(f"unknown quantization {mode!r}")


def relative_l2(reference: np.ndarray, approx: np.ndarray) -> float:
    """‖approx − reference‖ / ‖reference‖, the error measure used in BENCHMARKS.md."""
    reference = np.asarray(reference, dtype=np.float64)
    denom = np.linalg.norm(reference)
    return float(np.linalg.norm(np.asarray(approx, dtype=np.float64) - reference) / (denom if denom > 0 else 1.0))
