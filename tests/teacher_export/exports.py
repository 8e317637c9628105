"""Export options for tests: the small CenterPoint of the parity fixture (64x64 BEV) and Mask R-CNN at
the synthetic images' own size, both randomly initialised (seeded, so reproducible)."""
from pathlib import Path

from teacher_export.export import ExportOptions

SMALL_LIDAR_CONFIG = Path(__file__).resolve().parents[1] / "fixtures" / "centerpoint_pillar02_small_config.json"


def small_export_options(dataroot, out, *, image_teacher: str | None = "maskrcnn", **changes) -> ExportOptions:
    values = dict(dataroot=str(dataroot), version="v1.0-mini", split="mini_train", out=str(out),
                  lidar_config=str(SMALL_LIDAR_CONFIG), image_teacher=image_teacher,
                  image_options={"class_names": "nuimages", "score_threshold": 0.05, "detections_per_img": 4}, random_init=True,
                  num_sweeps=2, shard_size=2, max_gt_boxes=64, max_instances=4)
    values.update(changes)
    return ExportOptions(**values)
