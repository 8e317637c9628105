"""An export worker's resident memory and start-up against the size of the dataset's tables.

A synthetic dataroot's tables are copied `--copies` times (new tokens and scene names, the same sensor
files), so the tables hold N x more samples, sweeps and annotations while the exported split (the
original scenes, a custom split) stays the same few samples. For each size: one `--cluster`-style
export on a LocalCluster of one worker process, with the small random-init LiDAR teacher; reported are
the worker's RSS after the export, its growth over the freshly started worker, the client's RSS growth
and the export's wall time (worker start-up, teachers, tables wherever they are read, the samples).

    OMP_NUM_THREADS=1 PYTHONPATH=. python -m bench.export_worker_memory --copies 1 64 512

The script uses only the public export API, so the same file run in a checkout of an older commit
measures that commit.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import psutil
from distributed import Client

from dataset_access.synthetic import generate_synthetic
from pipelines.cluster import local_cluster
from pipelines.export import export_on_cluster
from teacher_export.export import ExportOptions

SMALL_LIDAR_CONFIG = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "centerpoint_pillar02_small_config.json"
SPLIT = "x3kd_bench"
# tables whose records every copy gets anew; the others (sensor, category, log, map, ...) are shared
COPIED = ("scene", "sample", "sample_data", "sample_annotation", "instance", "ego_pose", "calibrated_sensor")
# fields that point at a record of a copied table (and the records' own token)
COPIED_REFS = ("token", "scene_token", "sample_token", "ego_pose_token", "calibrated_sensor_token", "instance_token",
               "first_annotation_token", "last_annotation_token", "first_sample_token", "last_sample_token",
               "prev", "next")


def inflate_tables(source: Path, version: str, out: Path, copies: int) -> Path:
    """A dataroot at `out` whose tables hold `copies` copies of `source`'s scenes (sensor files shared by
    symbolic links), with the split SPLIT naming the original scenes."""
    out.mkdir(parents=True)
    for entry in source.iterdir():
        if entry.name != version:
            (out / entry.name).symlink_to(entry.resolve())
    (out / version).mkdir()
    tables = {p.stem: json.loads(p.read_text()) for p in (source / version).glob("*.json") if p.stem != "splits"}
    for name, records in tables.items():
        if name in COPIED:
            records = [_copied(r, k) for k in range(copies) for r in records]
        (out / version / f"{name}.json").write_text(json.dumps(records))
    originals = [s["name"] for s in tables["scene"]]
    (out / version / "splits.json").write_text(json.dumps({SPLIT: originals}))
    return out


def _copied(record: dict, k: int) -> dict:
    if k == 0:
        return record
    out = dict(record)
    for field in COPIED_REFS:
        if out.get(field):
            out[field] = f"{out[field]}c{k}"
    if "name" in out and "first_sample_token" in out:  # a scene
        out["name"] = f"{out['name']}-copy{k}"
    return out


def _worker_rss() -> int:
    return psutil.Process().memory_info().rss


def measure(dataroot: Path, version: str, out: Path, limit: int) -> dict:
    options = ExportOptions(dataroot=str(dataroot), version=version, split=SPLIT, out=str(out),
                            lidar_config=str(SMALL_LIDAR_CONFIG), image_teacher=None, random_init=True,
                            num_sweeps=2, shard_size=2, limit=limit)
    client_before = _worker_rss()
    with local_cluster(1, dashboard_address=":0") as cluster, Client(cluster) as client:
        client.wait_for_workers(1)
        (started,) = client.run(_worker_rss).values()
        t = time.perf_counter()
        result = export_on_cluster(options, client, progress=False)
        seconds = time.perf_counter() - t
        (after,) = client.run(_worker_rss).values()
    return {"worker_rss_mb": after / 2**20, "worker_growth_mb": (after - started) / 2**20,
            "export_s": seconds, "written": result.written, "client_growth_mb": (_worker_rss() - client_before) / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 64, 512])
    parser.add_argument("--limit", type=int, default=4, help="samples exported per size")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="x3kd-bench-worker-memory-") as tmp:
        source = generate_synthetic(Path(tmp) / "source", scenes=2, samples_per_scene=4, seed=0)
        rows = []
        for copies in args.copies:
            root = inflate_tables(source, "v1.0-mini", Path(tmp) / f"copies{copies}", copies)
            tables = {name: len(json.loads((root / "v1.0-mini" / f"{name}.json").read_text()))
                      for name in ("sample", "sample_data", "sample_annotation")}
            row = measure(root, "v1.0-mini", Path(tmp) / f"cache{copies}.zarr", args.limit)
            rows.append((copies, tables, row))
            print(f"copies {copies}: {row}", flush=True)
    print(f"\nexport of {args.limit} samples on a LocalCluster of 1 worker, {os.cpu_count()} CPU cores "
          f"(load average {os.getloadavg()[0]:.1f} at the end)\n")
    print("| samples in the tables | sample_data | annotations | worker RSS after (MB) | worker growth (MB) | "
          "client growth (MB) | export (s) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for copies, tables, row in rows:
        print(f"| {tables['sample']} | {tables['sample_data']} | {tables['sample_annotation']} | "
              f"{row['worker_rss_mb']:.0f} | {row['worker_growth_mb']:.0f} | {row['client_growth_mb']:.0f} | "
              f"{row['export_s']:.1f} |")


if __name__ == "__main__":
    main()
