"""How good is the LiDAR teacher a cache holds? Its boxes, scored like a student's.

The teacher's cached heatmaps and regression maps are decoded by the shared CenterPoint box coder
(every class as one group, rotated NMS: `detection.centerpoint_coder.decode_probability_maps`), written
as nuScenes results through the one results writer and scored by nuscenes-devkit's DetectionEval
(`dataset_access.nuscenes`), exactly as a student's boxes are. On
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
from cache_schema.views import Calib, GroundTruth, ImageTeacherDetections, LidarTeacherMaps, SampleMeta
from dataset_access.nuscenes.metrics import EvalMetrics, score_results
from dataset_access.nuscenes.results import LIDAR_RESULTS_META, detections_to_results, write_results
from dataset_access.nuscenes.samples import NuScenesSamples
from dataset_access.waymo.samples import is_waymo_version
from detection.centerpoint_coder import decode_probability_maps


def evaluate_cached_lidar_teacher(cache: str, dataroot: str | Path, version: str, split: str, out_dir: str | Path,
                                  *, score_threshold: float = 0.05, max_boxes: int = 500,
                                  storage_options: dict[str, Any] | None = None, progress: bool = True) -> EvalMetrics:
    """Score the LiDAR-teacher maps of `cache` (an export of `split`) on that split; writes
    `results_nusc.json`, the devkit's metric files and `metrics.json` into `out_dir`."""
    import json

    reader = CacheReader(cache, storage_options=storage_options)
    if LidarTeacherMaps.GROUP not in reader.config.groups:
        raise UserInputError(f"{cache}: has no LiDAR teacher maps (exported with --lidar-teacher none)")
    if not reader.done_mask.all():
        raise UserInputError(f"{cache}: the export is not finished ({int((~reader.done_mask).sum())} samples to go)")
    exported_split = reader.meta.provenance.get("dataset", {}).get("split")
    if exported_split is not None and exported_split != split:
        raise UserInputError(f"--split {split}: {cache} is an export of split {exported_split!r}")
    reader = reader.select([SampleMeta.GROUP, Calib.GROUP, LidarTeacherMaps.GROUP])
    classes = reader.config.classes.classes
    if is_waymo_version(version):
        return _evaluate_waymo_lidar_teacher(reader, cache, dataroot, split, Path(out_dir), score_threshold,
                                             max_boxes, progress)
    results = {s.token: detections_to_results(s.token, dets.boxes.numpy(), dets.scores.numpy(), dets.labels.numpy(),
                                              classes, s.calib.lidar_to_global())
               for s, dets in _teacher_boxes(reader, score_threshold, max_boxes, progress)}
    out = Path(out_dir)
    path = write_results(results, out / "results_nusc.json", LIDAR_RESULTS_META)
    limit = reader.meta.provenance.get("dataset", {}).get("limit")
    dataset = NuScenesSamples(dataroot, version, split, num_sweeps=0, gt_filter="evaluation", num_radar_sweeps=0)
    metrics = score_results(path, dataset, out, only_tokens=list(results) if limit else None)
    (out / "metrics.json").write_text(json.dumps(
        {"cache": str(cache), "teacher": reader.meta.provenance.get("lidar_teacher"), "split": split,
         "samples": len(results), "mAP": metrics.mean_ap, "NDS": metrics.nd_score,
         "per_class_AP": metrics.label_aps, "tp_errors": metrics.tp_errors}, indent=2))
    return metrics


def _teacher_boxes(reader: CacheReader, score_threshold: float, max_boxes: int, progress: bool):
    """(cache sample, the teacher's decoded boxes) of every sample of `reader`."""
    indices = range(len(reader))
    if progress:
        from cache_schema.progress import progress as progress_bar

        indices = progress_bar(indices, desc="teacher boxes", unit="sample")
    for i in indices:
        s = reader[i]
        yield s, decode_probability_maps(s.lidar_teacher.heatmaps, s.lidar_teacher.regression, reader.config.grid,
                                         score_threshold, max_boxes)


def _evaluate_waymo_lidar_teacher(reader: CacheReader, cache: str, dataroot: str | Path, split: str, out: Path,
                                  score_threshold: float, max_boxes: int, progress: bool):
    """Waymo: the teacher's decoded boxes scored with Waymo's metrics (dataset_access.waymo.evaluation)."""
    import json

    from dataset_access.waymo.evaluation import score_detections, write_detections
    from dataset_access.waymo.samples import WaymoSamples

    classes = reader.config.classes.classes
    dataset = WaymoSamples(dataroot, split, gt_filter="evaluation")
    detections = {s.token: (dets.boxes.numpy(), dets.scores.numpy(), dets.labels.numpy())
                  for s, dets in _teacher_boxes(reader, score_threshold, max_boxes, progress)}
    samples = [dataset.sample(token) for token in detections]
    write_detections(detections, classes, out / "detections_waymo.json")
    metrics = score_detections(samples, detections, classes)
    (out / "metrics.json").write_text(json.dumps(
        {"cache": str(cache), "teacher": reader.meta.provenance.get("lidar_teacher"), "split": split,
         "samples": len(detections), **metrics.to_json()}, indent=2))
    return metrics


IMAGE_METRICS = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")


def evaluate_cached_image_teacher(cache: str, out_dir: str | Path, *, storage_options: dict[str, Any] | None = None,
                                  progress: bool = True) -> dict[str, Any]:
    """COCO box and mask AP of the image-teacher detections a cache holds, against the instance masks
    of the cached GT boxes projected into each camera (`dataset_access.projection`, the targets
    `fit-teacher image` trains on), with pycocotools' COCOeval. Writes `metrics.json` into `out_dir`
    and returns {"bbox": {AP, AP50, ...}, "segm": {...}, "images", "gt_instances", "detections"}.

    The GT are the boxes the cache keeps (on the BEV grid, >= 1 LiDAR or radar point): a teacher
    detection of an object beyond the grid counts as a false positive."""
    import contextlib
    import io
    import json

    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from detection.masks import paste_masks
    from dataset_access.projection import project_boxes

    reader = CacheReader(cache, storage_options=storage_options)
    if ImageTeacherDetections.GROUP not in reader.config.groups:
        raise UserInputError(f"{cache}: has no image-teacher detections (exported with --image-teacher none)")
    if not reader.done_mask.all():
        raise UserInputError(f"{cache}: the export is not finished ({int((~reader.done_mask).sum())} samples to go)")
    reader = reader.select([SampleMeta.GROUP, Calib.GROUP, GroundTruth.GROUP, ImageTeacherDetections.GROUP])
    cfg = reader.config
    h, w = cfg.image_size
    classes = cfg.classes.classes
    images, gt_anns, dets = [], [], []

    def rle(mask: np.ndarray) -> dict:
        code = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        code["counts"] = code["counts"].decode()
        return code

    indices = range(len(reader))
    if progress:
        from cache_schema.progress import progress as progress_bar

        indices = progress_bar(indices, desc="image teacher", unit="sample")
    for i in indices:
        s = reader[i]
        boxes, labels = s.gt.present()
        inst = s.image_teacher
        lidar_to_cams = np.linalg.inv(s.calib.camera_to_lidar())
        for c in range(cfg.num_cameras):
            image_id = len(images) + 1
            images.append({"id": image_id, "width": w, "height": h})
            gt = project_boxes(boxes, labels, lidar_to_cams[c], np.asarray(s.calib.cam_intrinsics[c]), (w, h))
            for box, label, mask in zip(gt.boxes, gt.labels, gt.masks):
                x1, y1, x2, y2 = (float(v) for v in box)
                gt_anns.append({"id": len(gt_anns) + 1, "image_id": image_id, "category_id": int(label) + 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": float(mask.sum()), "iscrowd": 0,
                                "segmentation": rle(mask)})
            keep = np.asarray(inst.labels[c]) >= 0
            if not keep.any():
                continue
            t_boxes = np.asarray(inst.boxes[c])[keep]
            masks = paste_masks(np.asarray(inst.masks[c], np.float32)[keep] / 255.0, t_boxes, (h, w))
            for box, label, score, mask in zip(t_boxes, np.asarray(inst.labels[c])[keep],
                                               np.asarray(inst.scores[c])[keep], masks):
                x1, y1, x2, y2 = (float(v) for v in box)
                dets.append({"image_id": image_id, "category_id": int(label) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                             "score": float(score), "segmentation": rle(mask > 0.5)})
    result: dict[str, Any] = {"cache": str(cache), "teacher": reader.meta.provenance.get("image_teacher"),
                              "images": len(images), "gt_instances": len(gt_anns), "detections": len(dets)}
    if not gt_anns:
        raise UserInputError(f"{cache}: no GT box of its samples is visible in a camera; nothing to score against")
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and tables
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": gt_anns,
                           "categories": [{"id": k + 1, "name": name} for k, name in enumerate(classes)]}
        coco_gt.createIndex()
        for kind in ("bbox", "segm"):
            if not dets:
                result[kind] = {m: 0.0 for m in IMAGE_METRICS}
                continue
            coco_dt = coco_gt.loadRes([dict(d) for d in dets])
            ev = COCOeval(coco_gt, coco_dt, kind)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            # COCOeval reports -1 where a size range has no GT
            result[kind] = {m: max(float(v), 0.0) for m, v in zip(IMAGE_METRICS, ev.stats[:6])}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    return result
