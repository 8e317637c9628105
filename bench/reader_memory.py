"""What a CacheReader holds in memory as the dataset grows, and what a sample read costs.

python -m bench.reader_memory [--sizes 256,2048] [--max-gt-boxes 512] [--reads 200]

Writes stores of N samples with nuScenes-sized small arrays (GT padded to --max-gt-boxes, six camera
paths, calibration) and a small BEV map, reads every sample once through a fresh CacheReader (as a
DataLoader worker does over an epoch), and reports the Python/numpy memory the reader still holds
afterwards (tracemalloc), per sample, and the median time of a random sample read.
"""
from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from cache_schema import BevGrid, CacheReader, CacheWriter, StoreConfig
from cache_schema.statistics import feature_sums
from cache_schema.views import CacheSample, Calib, GroundTruth, LidarTeacherMaps, SampleMeta


def write_store(url: str, n: int, max_gt_boxes: int) -> None:
    config = StoreConfig(num_samples=n, grid=BevGrid((-3.2, -3.2, -5.0, 3.2, 3.2, 3.0), (0.2, 0.2, 8.0), 4),
                         image_size=(8, 8), depth_stride=1, bev_channels=4, max_gt_boxes=max_gt_boxes,
                         max_instances=1, shard_size=16, groups=("meta", "calib", "gt", "lidar_teacher"))
    rng = np.random.default_rng(0)
    h, w = config.grid.shape
    with CacheWriter(url, config) as writer:
        for i in range(n):
            feats = rng.standard_normal((4, h, w)).astype(np.float32)
            writer.write_sample(i, CacheSample(
                SampleMeta(f"{i:032x}", "s", i, f"{max(i - 1, 0):032x}"),
                Calib([f"samples/CAM_{c}/n015-2018-07-24-11-22-45+0800__CAM__{i:016d}.jpg" for c in range(6)],
                      rng.random((6, 3, 3)), rng.random((6, 4, 4)), rng.random((6, 4, 4)), np.eye(4), np.eye(4)),
                GroundTruth(rng.random((max_gt_boxes, 9)), np.full(max_gt_boxes, 1), 40),
                lidar_teacher=LidarTeacherMaps(feats, rng.random((10, h, w)), rng.random((10, h, w)),
                                               *feature_sums(feats))))


def measure(url: str, n: int, reads: int) -> tuple[float, float]:
    gc.collect()
    tracemalloc.start()
    reader = CacheReader(url)
    base = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        reader[i]
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    order = np.random.default_rng(1).integers(0, n, reads)
    times = []
    for i in order:
        t = time.perf_counter()
        reader[int(i)]
        times.append(time.perf_counter() - t)
    return held, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256,2048")
    parser.add_argument("--max-gt-boxes", type=int, default=512)
    parser.add_argument("--reads", type=int, default=200)
    args = parser.parse_args()
    print("| samples | reader memory after one pass | per sample | random sample read (median) |")
    print("| ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory(prefix="x3kd-bench-reader-") as tmp:
        for n in (int(v) for v in args.sizes.split(",")):
            url = str(Path(tmp) / f"store_{n}.zarr")
            write_store(url, n, args.max_gt_boxes)
            held, read_s = measure(url, n, args.reads)
            print(f"| {n} | {held / 1e6:.2f} MB | {held / n:.0f} B | {read_s * 1e3:.2f} ms |")


if __name__ == "__main__":
    main()
