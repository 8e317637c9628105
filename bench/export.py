"""Where export time goes, per sample: reading, LiDAR teacher, image teacher, targets, encode+write.

python -m bench.export [--samples 4] [--image-size 800x450] [--device cpu]

Generates a synthetic nuScenes-format dataroot (one scene), then exports it with the real-size teachers
(CenterPoint pillar02: 384x128x128 BEV features; Mask R-CNN R50-FPN at the images' own size), both
randomly initialised (speed does not depend on the weights), and prints seconds per sample per stage
and the write share of teacher time. Encode+write covers quantization, zstd, crc32c and the shard write.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from teacher_export.data.synthetic import generate_synthetic
from teacher_export.export import ExportOptions, Exporter, export


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--image-size", default="800x450")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=1)
    args = parser.parse_args()
    width, height = (int(v) for v in args.image_size.split("x"))
    with tempfile.TemporaryDirectory(prefix="x3kd-bench-export-") as tmp:
        t = time.perf_counter()
        root = generate_synthetic(Path(tmp) / "data", scenes=2, samples_per_scene=args.samples + 1, seed=0,
                                  image_size=(width, height), sweeps_per_sample=9)
        print(f"generated 2 x {args.samples + 1} samples at {width}x{height} in {time.perf_counter() - t:.1f} s")
        options = ExportOptions(dataroot=str(root), version="v1.0-mini", split="mini_train",
                                out=str(Path(tmp) / "cache.zarr"), random_init=True, device=args.device,
                                batch_size=args.batch_size, shard_size=args.samples,
                                image_options={"score_threshold": 0.05})
        exporter = Exporter(options)
        # warm-up sample outside the timing: first calls allocate and pick kernels
        warm = ExportOptions(**{**options.__dict__, "out": str(Path(tmp) / "warm.zarr"), "limit": 1})
        export(warm, progress=False, exporter=Exporter(warm))
        options.limit = None
        result = export(options, progress=False, exporter=exporter)
        t = result.times
        n = t.samples
        teachers = t.lidar_teacher + t.image_teacher
        rows = [("read (points, sweeps, JPEGs)", t.read), ("LiDAR teacher (CenterPoint pillar02)", t.lidar_teacher),
                ("image teacher (Mask R-CNN R50-FPN, 6 cameras)", t.image_teacher),
                ("targets (depth maps, GT, calibration)", t.targets), ("encode + write (quantize, zstd, shard)", t.write)]
        print(f"\n{n} samples, device {args.device}, images {width}x{height}, batch {args.batch_size}\n")
        print("| stage | s/sample | share of total |")
        print("| --- | ---: | ---: |")
        total = sum(v for _, v in rows)
        for name, value in rows:
            print(f"| {name} | {value / n:.3f} | {100 * value / total:.1f}% |")
        print(f"| total | {total / n:.3f} | 100% |")
        print(f"\nencode+write / teacher time = {100 * t.write / teachers:.2f}% (target < 5%)")


if __name__ == "__main__":
    main()
