"""How good is the LiDAR teacher a cache holds? Its boxes, scored like a student's.

The teacher's cached heatmaps and regression maps are decoded by the shared CenterPoint box coder
(every class as one group, rotated NMS: `student.render.decode_map_centres`), written as nuScenes
results through the student's one results writer and scored by nuscenes-devkit's DetectionEval. On
real nuScenes this is how a user checks that a teacher checkpoint loaded right before distilling from
it; in the synthetic lab it says how much the teacher knows (what a student distilled from it can at
best learn from it).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cache_schema import CacheReader
from cache_schema.errors import UserInputError
from student.evaluate import EvalMetrics, score_results, write_results
from student.evaluate import detections_to_results
from student.render import decode_map_centres

RESULTS_META = {"use_camera": False, "use_lidar": True, "use_radar": False, "use_map": False, "use_external": False}


def evaluate_cached_lidar_teacher(cache: str, dataroot: str | Path, version: str, split: str, out_dir: str | Path,
                                  *, score_threshold: float = 0.05, max_boxes: int = 500,
                                  storage_options: dict[str, Any] | None = None, progress: bool = True) -> EvalMetrics:
    """Score the LiDAR-teacher maps of `cache` (an export of `split`) on that split; writes
    `results_nusc.json`, the devkit's metric files and `metrics.json` into `out_dir`."""
    import json

    reader = CacheReader(cache, storage_options=storage_options)
    if "lidar_teacher" not in reader.config.groups:
        raise UserInputError(f"{cache}: has no LiDAR teacher maps (exported with --lidar-teacher none)")
    if not reader.done_mask.all():
        raise UserInputError(f"{cache}: the export is not finished ({int((~reader.done_mask).sum())} samples to go)")
    exported_split = reader.meta.provenance.get("dataset", {}).get("split")
    if exported_split is not None and exported_split != split:
        raise UserInputError(f"--split {split}: {cache} is an export of split {exported_split!r}")
    reader = reader.select(["meta", "calib", "lidar_teacher"])
    grid, classes = reader.config.grid, reader.config.classes.classes
    results: dict[str, list[dict[str, Any]]] = {}
    indices = range(len(reader))
    if progress:
        from cache_schema.progress import progress as progress_bar

        indices = progress_bar(indices, desc="teacher boxes", unit="sample")
    for i in indices:
        s = reader[i]
        dets = decode_map_centres(s["lidar_teacher/heatmaps"], s["lidar_teacher/regression"], grid, score_threshold,
                                  max_boxes)
        lidar_to_global = np.asarray(s["calib/ego_pose"]) @ np.asarray(s["calib/lidar_to_ego"])
        token = s["meta/token"]
        results[token] = detections_to_results(token, dets.boxes.numpy(), dets.scores.numpy(), dets.labels.numpy(),
                                               classes, lidar_to_global)
    out = Path(out_dir)
    path = write_results(results, out / "results_nusc.json", RESULTS_META)
    limit = reader.meta.provenance.get("dataset", {}).get("limit")
    metrics = score_results(path, dataroot, version, split, out, only_tokens=list(results) if limit else None)
    (out / "metrics.json").write_text(json.dumps(
        {"cache": str(cache), "teacher": reader.meta.provenance.get("lidar_teacher"), "split": split,
         "samples": len(results), "mAP": metrics.mean_ap, "NDS": metrics.nd_score,
         "per_class_AP": metrics.label_aps, "tp_errors": metrics.tp_errors}, indent=2))
    return metrics
