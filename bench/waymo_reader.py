"""Waymo v2 reading and export cost on synthetic Waymo data, one thread.

python -m bench.waymo_reader [--frames 6] [--front-width 960] [--azimuths 2650]

Writes one synthetic Waymo segment at Waymo's TOP resolution (64 beams x 2650 columns, both returns, the
per-pixel pose) with cameras `--front-width` pixels wide (960: half of Waymo's 1920x1280 and 1920x886),
then times, per frame: a whole `WaymoV2.frame` (five JPEG blobs, range images -> points, boxes), the
points alone, the five camera images decoded through `read_rgb` (what the student reads per sample),
and the single-process export of the split without teachers (index, calibration, GT and depth targets:
the dataset's share of an export; the teachers' cost is bench/export.py's). Medians over the frames.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from dataset_access.images import read_rgb  # noqa: E402
from dataset_access.synthetic.waymo import WaymoSyntheticSpec, write_waymo_dataset  # noqa: E402
from dataset_access.waymo.reader import WaymoV2  # noqa: E402
from dataset_access.waymo.samples import WaymoSamples  # noqa: E402


def _median_seconds(fn, items) -> float:
    times = []
    for item in items:
        t = time.perf_counter()
        fn(item)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--front-width", type=int, default=960)
    parser.add_argument("--azimuths", type=int, default=2650)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    from teacher_export.export import ExportOptions, export

    with tempfile.TemporaryDirectory(prefix="x3kd-bench-waymo-") as tmp:
        spec = WaymoSyntheticSpec(segments=1, frames_per_segment=args.frames, front_width=args.front_width,
                                  objects_per_segment=20, lidar_beams=64, lidar_azimuths=args.azimuths)
        t = time.perf_counter()
        root = write_waymo_dataset(Path(tmp) / "v2", spec)
        made = time.perf_counter() - t
        size = sum(p.stat().st_size for p in root.rglob("*.parquet"))
        split = WaymoV2(root, "training")
        segment = split.segments[0]
        stamps = [int(s) for s in split.timestamps(segment)]
        split.calibration(segment)  # read once per segment; not a per-frame cost
        frame_s = _median_seconds(lambda ts: split.frame(segment, ts), stamps)
        points_s = _median_seconds(lambda ts: split.points(segment, ts), stamps)
        frame = split.frame(segment, stamps[0])
        samples = WaymoSamples(root, "training")
        infos = [samples[i] for i in range(len(samples))]
        images_s = _median_seconds(lambda info: [read_rgb(root / p) for p in info.calib.image_paths], infos)
        options = ExportOptions(dataroot=str(root), version="waymo-v2", split="training", out=str(Path(tmp) / "c.zarr"),
                                lidar_teacher=None, image_teacher=None, num_sweeps=0, radar_sweeps=0)
        t = time.perf_counter()
        export(options, progress=False)
        export_s = (time.perf_counter() - t) / len(stamps)

    print(f"synthetic Waymo segment: {len(stamps)} frames, TOP 64x{args.azimuths} (2 returns), cameras "
          f"{frame.cameras[0].width}x{frame.cameras[0].height} / {frame.cameras[3].width}x{frame.cameras[3].height}; "
          f"{size / len(stamps) / 1e6:.1f} MB of Parquet per frame, written in {made / len(stamps):.2f} s per frame")
    print(f"{len(frame.points)} points per frame, {len(frame.boxes)} boxes")
    print("per frame, one thread (median):")
    print(f"  WaymoV2.frame (images as bytes, points, boxes)   {frame_s * 1e3:8.1f} ms  = {1 / frame_s:6.1f} frames/s")
    print(f"  points only (range images -> points)             {points_s * 1e3:8.1f} ms  = {1 / points_s:6.1f} frames/s")
    print(f"  five camera images decoded (read_rgb)            {images_s * 1e3:8.1f} ms")
    print(f"  export without teachers (index, GT, depth, write) {export_s * 1e3:7.1f} ms")


if __name__ == "__main__":
    main()
