"""Deterministic stand-in samples for cache tests (the same in every process)."""
import numpy as np

from cache_schema import ARRAYS, BevGrid, StoreConfig


def tiny_config(num_samples: int = 10, **changes) -> StoreConfig:
    base = dict(num_samples=num_samples, grid=BevGrid((-6.4, -6.4, -5.0, 6.4, 6.4, 3.0), (0.2, 0.2, 8.0), 4),
                image_size=(32, 64), depth_stride=4, bev_channels=8, shard_size=4, max_gt_boxes=6,
                max_instances=3)
    base.update(changes)
    return StoreConfig(**base)


def smooth_map(rng: np.random.Generator, shape) -> np.ndarray:
    """Blobs on a low background plus noise: closer to a BEV map than white noise."""
    c, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    out = 0.05 * rng.standard_normal(shape)
    for ch in range(c):
        for _ in range(3):
            cy, cx, s = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(1, 4)
            out[ch] += rng.uniform(0.5, 3) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    return out.astype(np.float32)


def make_sample(config: StoreConfig, index: int) -> dict:
    """A deterministic sample for `index`: the same in every process."""
    rng = np.random.default_rng(1000 + index)
    sample = {}
    for spec in ARRAYS:
        if spec.group not in config.groups:
            continue
        shape = spec.sample_shape(config)
        if spec.kind == "text":
            sample[spec.key] = (f"{spec.name}-{index:04d}" if len(shape) == 1
                                else [f"samples/CAM_{c}/img_{index:04d}.jpg" for c in range(shape[0])])
        elif spec.kind == "dense":
            sample[spec.key] = smooth_map(rng, shape)
        elif np.issubdtype(np.dtype(spec.dtype), np.floating):
            sample[spec.key] = rng.standard_normal(shape).astype(spec.dtype)
        else:
            sample[spec.key] = rng.integers(-1, 9, shape).astype(spec.dtype)
    sample["meta/timestamp"] = np.int64(1_532_402_927_000_000 + index * 500_000)
    return sample

