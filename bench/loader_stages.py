"""Core-seconds per training sample in the data loader, by stage, at nuScenes sizes.

One DataLoader worker's work for one sample is `CacheDataset.__getitem__`; this times it on one core
(torch threads 1, CPU time of this thread) for a BEVDepth config, with its stages attributed by
wrapping the functions the dataset calls (the same code, timed where it is called): the cache read,
JPEG decoding and image augmentation of the key frame's and (2-key) the previous frame's cameras,
CenterPoint and depth targets, X-IS pseudo labels, and, in commits before the LiDAR-teacher maps
travelled as cached to be warped in the step, the teacher-map warps.

Without --cache it makes (in --work, kept for the next run) a synthetic dataroot of 1600x900 JPEGs,
nuScenes' size, and exports it with the full CenterPoint pillar02 and Mask R-CNN R50 teachers at random
init, keeping every image detection (`--detections` per camera, score threshold 0 for the export and
for X-IS): the worst case of X-IS's label cost, as no fitted teacher fills every slot above 0.5.

    OMP_NUM_THREADS=1 PYTHONPATH=. python -m bench.loader_stages --work /tmp/loader_stages
    OMP_NUM_THREADS=1 PYTHONPATH=. python -m bench.loader_stages --config configs/r50_256x704.yaml --work ...

The script uses only functions that the dataset has long called, so the same file run in a checkout
of an older commit measures that commit.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# (module, function) -> stage; the dataset module's names are what __getitem__ calls
STAGES = {
    ("student.data.cameras", "read_image"): "JPEG decode",
    ("student.data.cameras", "augment_image"): "image augmentation",
    ("student.data.dataset", "previous_frame_inputs"): "previous frame (decode + augmentation)",
    ("student.data.dataset", "augment_teacher_maps"): "teacher maps (warps, validity, task map)",
    ("student.data.dataset", "teacher_validity"): "teacher maps (warps, validity, task map)",
    ("student.data.dataset", "warp_task_map"): "teacher maps (warps, validity, task map)",
    ("student.data.dataset", "teacher_task_map"): "teacher maps (warps, validity, task map)",
    ("student.data.dataset", "build_det_targets"): "CenterPoint targets",
    ("student.data.dataset", "depth_image_to_feature_grid"): "depth targets",
    ("student.data.dataset", "xis_targets"): "X-IS pseudo labels",
}


def make_cache(work: Path, detections: int) -> tuple[str, str]:
    from dataset_access.synthetic import generate_synthetic
    from teacher_export.export import ExportOptions, export

    dataroot, cache = work / "nuscenes_1600x900", work / "cache_1600x900.zarr"
    if not (dataroot / "v1.0-mini").is_dir():
        generate_synthetic(dataroot, scenes=2, samples_per_scene=4, seed=0, image_size=(1600, 900))
    if not cache.exists():
        export(ExportOptions(dataroot=str(dataroot), version="v1.0-mini", split="mini_train", out=str(cache),
                             random_init=True, max_instances=detections,
                             image_options={"class_names": "nuimages", "score_threshold": 0.0,
                                            "detections_per_img": detections}))
    return str(cache), str(dataroot)


class StageClock:
    """CPU seconds of this thread per stage; a stage inside another is counted once, in the inner one."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._stack: list[str] = []

    def wrap(self, function, stage: str):
        clock = self

        def timed(*args, **kwargs):
            if clock._stack and clock._stack[-1] == stage:
                return function(*args, **kwargs)
            t = time.thread_time()
            clock._stack.append(stage)
            try:
                return function(*args, **kwargs)
            finally:
                clock._stack.pop()
                spent = time.thread_time() - t
                clock.seconds[stage] += spent
                if clock._stack:  # the outer stage keeps only its own time
                    clock.seconds[clock._stack[-1]] -= spent
        return timed


@contextmanager
def timed_stages(clock: StageClock):
    import importlib

    saved = []
    for (module_name, name), stage in STAGES.items():
        module = importlib.import_module(module_name)
        if hasattr(module, name):
            saved.append((module, name, getattr(module, name)))
            setattr(module, name, clock.wrap(getattr(module, name), stage))
    try:
        yield
    finally:
        for module, name, function in saved:
            setattr(module, name, function)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(REPO / "configs" / "bevdepth_r50_256x704_24e_2key.yaml"))
    ap.add_argument("--cache")
    ap.add_argument("--dataroot")
    ap.add_argument("--work", default="/tmp/x3kd_bench_loader_stages")
    ap.add_argument("--detections", type=int, default=32, help="image-teacher detections per camera (made cache)")
    ap.add_argument("--epochs", type=int, default=3, help="passes over the cache's samples (the first is warm-up)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from student.data.dataset import CacheDataset, open_cache
    from student.train_config import load_train_config

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cache, dataroot = (args.cache, args.dataroot) if args.cache else make_cache(work, args.detections)
    overrides = ["loss.xis.score_threshold=0.0"] if not args.cache else []
    cfg = load_train_config(args.config, [*overrides, *args.overrides])
    reader = open_cache(cache, cfg.student, dataroot=dataroot)
    dataset = CacheDataset(reader, dataroot, cfg.student, cfg.data)
    per_sample: list[float] = []
    clock = StageClock()
    labels = 0
    with timed_stages(clock):
        for epoch in range(args.epochs):
            if epoch == 1:
                clock.seconds.clear()  # the first pass warms allocators and caches
            for i in range(len(dataset)):
                t = time.thread_time()
                sample = dataset[(epoch, i)]
                if epoch:
                    per_sample.append(time.thread_time() - t)
                    labels += sum(len(x["boxes"]) for x in sample.get("xis_targets", []))
    n = len(per_sample)
    total = sum(per_sample)
    stages = {k: v for k, v in clock.seconds.items()}
    stages["the rest (cache read, BEV augmentation, ...)"] = total - sum(stages.values())
    frames = cfg.student.key_frames
    print(f"{Path(args.config).name}: {frames} key frame(s) x {cfg.student.num_cameras} cameras at "
          f"{reader.config.image_size[1]}x{reader.config.image_size[0]} -> {cfg.student.image_size[1]}x"
          f"{cfg.student.image_size[0]}, BEV grid {cfg.student.grid.shape}, {n} samples timed "
          f"({args.epochs - 1} passes), {labels / n:.0f} X-IS labels per sample; one core, torch threads 1, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| stage | core-ms per sample | share |")
    print("| --- | ---: | ---: |")
    for stage, seconds in sorted(stages.items(), key=lambda kv: -kv[1]):
        print(f"| {stage} | {seconds / n * 1e3:.1f} | {seconds / total:.0%} |")
    print(f"| **total** (median {statistics.median(per_sample) * 1e3:.0f}) | **{total / n * 1e3:.1f}** | |")


if __name__ == "__main__":
    main()
