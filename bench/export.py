"""Where export time goes, per sample: reading, LiDAR teacher, image teacher, targets, encode+write.

python -m bench.export [--samples 4] [--image-size 800x450] [--device cpu]
python -m bench.export --lidar-teachers centerpoint-pillar02,centerpoint-voxel01,mmdet3d-centerpoint:voxel01

Generates a synthetic nuScenes-format dataroot (one scene), then exports it with the real-size teachers
(CenterPoint pillar02: 384x128x128 BEV features; Mask R-CNN R50-FPN at the images' own size), both
randomly initialised (speed does not depend on the weights), and prints seconds per sample per stage
and the write share of teacher time. Encode+write covers quantization, zstd, crc32c and the shard write.

--lidar-teachers compares LiDAR teachers instead (LiDAR-only exports, no image teacher): seconds per
sample of the teacher and of encode+write, the BEV feature map's shape and the LiDAR-teacher group's bytes
per sample on disk. `mmdet3d-centerpoint:voxel01` runs mmdet3d's own voxel01 config (the mmdet3d extra).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from dataset_access.synthetic import generate_synthetic
from teacher_export.export import ExportOptions, Exporter, export


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--image-size", default="800x450")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--lidar-teachers", help="comma-separated LiDAR teachers to compare (see above)")
    args = parser.parse_args()
    if args.lidar_teachers:
        compare_lidar_teachers(args.lidar_teachers.split(","), args.samples, args.device)
        return
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


def _teacher_options(spec: str) -> dict:
    """`name` or `mmdet3d-centerpoint:<config>` (a CenterPoint config of mmdet3d's nuScenes set)."""
    if not spec.startswith("mmdet3d-centerpoint"):
        return {"lidar_teacher": spec}
    import mmdet3d

    variant = spec.partition(":")[2] or "pillar02"
    config = (Path(mmdet3d.__file__).parent / ".mim" / "configs" / "centerpoint" /
              f"centerpoint_{variant}_second_secfpn_8xb4-cyclic-20e_nus-3d.py")
    return {"lidar_teacher": "mmdet3d-centerpoint", "lidar_config": str(config)}


def compare_lidar_teachers(teachers: list[str], samples: int, device: str) -> None:
    import torch

    from cache_schema import CacheReader
    from cache_schema.summary import summarize

    with tempfile.TemporaryDirectory(prefix="x3kd-bench-export-") as tmp:
        root = generate_synthetic(Path(tmp) / "data", scenes=2, samples_per_scene=samples + 1, seed=0,
                                  image_size=(352, 198), sweeps_per_sample=9)
        print(f"{samples} samples (synthetic LiDAR, 9 sweeps), device {device}, torch threads "
              f"{torch.get_num_threads()}\n")
        print("| LiDAR teacher | teacher s/sample | encode+write s/sample | BEV features | lidar_teacher MB/sample |")
        print("| --- | ---: | ---: | --- | ---: |")
        for spec in teachers:
            out = Path(tmp) / f"{spec.replace(':', '_')}.zarr"
            options = ExportOptions(dataroot=str(root), version="v1.0-mini", split="mini_train", out=str(out),
                                    random_init=True, device=device, shard_size=samples, image_teacher=None,
                                    **_teacher_options(spec))
            exporter = Exporter(options)
            warm = ExportOptions(**{**options.__dict__, "out": str(out.with_suffix(".warm.zarr")), "limit": 1})
            export(warm, progress=False, exporter=Exporter(warm))
            options.limit = samples
            t = export(options, progress=False, exporter=exporter).times
            reader = CacheReader(str(out))
            shape = "x".join(str(v) for v in (reader.config.bev_channels, *reader.config.grid.shape))
            group = next(g for g in summarize(str(out)).groups if g.group == "lidar_teacher")
            print(f"| {spec} | {t.lidar_teacher / t.samples:.2f} | {t.write / t.samples:.3f} | {shape} | "
                  f"{group.bytes_on_disk / t.samples / 1e6:.2f} |")


if __name__ == "__main__":
    main()
