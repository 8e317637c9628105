"""Export throughput on 1 and 2 local Dask workers, in one run.

python -m bench.export_scaling [--samples 24] [--lidar small|full] [--image-teacher none|maskrcnn] \
    [--image-size 352x198] [--shard-size 4]

Generates a synthetic nuScenes-format dataroot (one mini_train scene of `--samples` key frames), then
exports it with `pipelines.export.export_on_cluster` on a LocalCluster of 1 and then 2 single-threaded
worker processes. Teachers are randomly initialised (speed does not depend on the weights): `small` is
the tests' CenterPoint (64x64 BEV), `full` CenterPoint pillar02 (384x128x128 BEV features). Before
each timed run every worker builds its teachers (the per-worker state the tasks reuse), so samples/s
is the steady rate of the shard tasks, store creation and the final check included; the teacher
build time is printed beside it. Prints a markdown table and the 2-worker / 1-worker ratio; on a
machine with fewer free cores than workers the ratio says so.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from distributed import Client

from pipelines.cluster import local_cluster
from pipelines.export import export_on_cluster
from pipelines.worker import describe_store
from dataset_access.synthetic import generate_synthetic
from teacher_export.export import ExportOptions, SplitSummary, split_samples

SMALL_LIDAR_CONFIG = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "centerpoint_pillar02_small_config.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--lidar", choices=["small", "full"], default="small")
    parser.add_argument("--image-teacher", choices=["none", "maskrcnn"], default="none")
    parser.add_argument("--image-size", default="352x198")
    parser.add_argument("--shard-size", type=int, default=4)
    args = parser.parse_args()
    width, height = (int(v) for v in args.image_size.split("x"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="x3kd-bench-scaling-") as tmp:
        root = generate_synthetic(Path(tmp) / "data", scenes=2, samples_per_scene=args.samples, seed=0,
                                  image_size=(width, height))
        for workers in (1, 2):
            options = ExportOptions(
                dataroot=str(root), version="v1.0-mini", split="mini_train", out=str(Path(tmp) / f"cache-{workers}.zarr"),
                lidar_config=str(SMALL_LIDAR_CONFIG) if args.lidar == "small" else None,
                image_teacher=args.image_teacher, image_options={"score_threshold": 0.05}, random_init=True,
                shard_size=args.shard_size)
            with local_cluster(workers, dashboard_address=":0") as cluster, Client(cluster) as client:
                client.wait_for_workers(workers)
                t = time.perf_counter()
                # every worker builds its teachers now, untimed
                client.run(describe_store, options, SplitSummary.of(split_samples(options), options))
                build = time.perf_counter() - t
                result = export_on_cluster(options, client, progress=False)
            rows.append((workers, result.written, build, result.seconds))
    print(f"\n{args.samples} samples, LiDAR teacher {args.lidar}, image teacher {args.image_teacher}, "
          f"images {width}x{height}, shards of {args.shard_size}, {os.cpu_count()} CPU cores "
          f"(load average {os.getloadavg()[0]:.1f} at the end)\n")
    print("| workers | samples | teacher build (s) | export (s) | samples/s | vs 1 worker |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    base = rows[0][1] / rows[0][3]
    for workers, samples, build, seconds in rows:
        rate = samples / seconds
        print(f"| {workers} | {samples} | {build:.1f} | {seconds:.1f} | {rate:.2f} | {rate / base:.2f}x |")


if __name__ == "__main__":
    main()
