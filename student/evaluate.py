"""`x3kd-student eval`: run the student on a nuScenes split and score it with nuscenes-devkit.

    metrics = evaluate_checkpoint("runs/tiny/checkpoints/step_0000200.pt", dataroot, "v1.0-mini",
                                  "mini_val", "runs/tiny/eval")

No teacher and no cache: the split is read through the dataset reader the export uses
(`dataset_access.nuscenes.NuScenesSamples`): the camera inputs from its calibration and JPEGs, a
two-key-frame student's previous key frame, a radar student's multi-sweep radar points. Detections
(LiDAR frame, cache_schema.boxes convention) become the nuScenes results JSON through the one results
writer (`dataset_access.nuscenes.results`) and are scored by the devkit's DetectionEval
(`dataset_access.nuscenes.metrics`).
"""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from cache_schema.errors import UserInputError
from cache_schema.views import Calib
from dataset_access.nuscenes.metrics import EvalMetrics, render_devkit, score_results
from dataset_access.nuscenes.results import RADAR_RESULTS_META, RESULTS_META, detections_to_results, write_results
from dataset_access.nuscenes.samples import NuScenesSamples
from dataset_access.samples import SampleInfo
from dataset_access.open import open_split
from dataset_access.waymo.samples import is_waymo_version
from detection.center_head import concat_task_heatmaps
from detection.centerpoint_coder import Detections
from detection.device import resolve_device

from .batch import StudentBatch
from .data.cameras import load_camera_inputs, previous_frame_inputs
from .models.student import BevStudent
from .deploy import load_student

log = logging.getLogger(__name__)

def set_score_threshold(model: BevStudent, score_threshold: float | None) -> None:
    """`--score-threshold`: keep the model's decoded detections above it (None: the config's)."""
    if score_threshold is None:
        return
    if not 0 <= score_threshold < 1:
        raise UserInputError(f"--score-threshold: must be in [0, 1), got {score_threshold}")
    model.box_coder = replace(model.box_coder, score_threshold=score_threshold, coder_score_threshold=score_threshold)


def _input_batch(cfg: Any, dataset: NuScenesSamples, sample: SampleInfo, device: str | torch.device
                 ) -> StudentBatch:
    """One sample's input with no BEV augmentation: its cameras with the test-time image transform (and
    a two-key-frame student's previous key frame), or for the radar student its radar scans."""
    if cfg.student.modality == "radar":
        points = dataset.load_radar(sample)
        return StudentBatch(bda=torch.eye(4)[None], radar_points=[torch.from_numpy(points)]).to(device)
    aug = replace(cfg.data.image_aug, final_size=tuple(cfg.student.image_size))
    rng = np.random.default_rng(0)  # unused by the test-time transform; required by its signature
    cams = load_camera_inputs(dataset.dataroot, sample.calib, aug, rng, train=False,
                              resize_relative=cfg.data.resize_relative)
    prev = {}
    if cfg.student.key_frames == 2:
        previous: Calib = dataset.calib(sample.prev_token)  # a scene's first frame is its own previous
        prev = {k: v[None] for k, v in previous_frame_inputs(dataset.dataroot, previous, sample.calib, cams).items()}
    return StudentBatch(images=cams.images[None], intrinsics=cams.intrinsics[None], cam2lidar=cams.cam2lidar[None],
                        ida=cams.ida[None], bda=torch.eye(4)[None], **prev).to(device)


@torch.no_grad()
def predict_split(model: BevStudent, cfg: Any, dataset: NuScenesSamples, samples: Sequence[SampleInfo],
                  device: str | torch.device = "cpu", progress: bool = True) -> dict[str, list[dict[str, Any]]]:
    """Run `model` on every sample of `samples` (test-time image transform, no BEV augmentation) and
    return the nuScenes result records per sample token (empty lists for samples without detections)."""
    class_names = model.class_names
    results: dict[str, list[dict[str, Any]]] = {}
    it = samples
    if progress:
        from cache_schema.progress import progress as progress_bar

        it = progress_bar(samples, desc="eval", unit="sample")
    for sample in it:
        det: Detections = model.predict(_input_batch(cfg, dataset, sample, device))[0]
        results[sample.token] = detections_to_results(sample.token, det.boxes.cpu().numpy(), det.scores.cpu().numpy(),
                                                      det.labels.cpu().numpy(), class_names, sample.lidar_to_global)
    return results


@torch.no_grad()
def render_predictions(model: BevStudent, cfg: Any, dataset: NuScenesSamples, samples: Sequence[SampleInfo],
                       out_dir: str | Path, device: str | torch.device = "cpu", score_threshold: float = 0.3
                       ) -> list[str]:
    """Pictures of the student's predictions on `samples` (detection.pictures.render_prediction): BEV
    over its own heatmap and the cameras, GT as the devkit's evaluation keeps it (the reader's
    "evaluation" filter). Returns one line per sample whose pictures could not be drawn."""
    from detection.pictures import render_prediction

    problems = []
    for i, sample in enumerate(samples):
        batch = _input_batch(cfg, dataset, sample, device)
        outputs = model(batch)
        heat = concat_task_heatmaps(outputs.head_outputs)[0].sigmoid().cpu().numpy()
        det = model.predict(batch)[0]
        try:
            render_prediction(out_dir, f"{i:03d}_{sample.token}", sample.calib, dataset.dataroot, cfg.student.grid,
                              model.class_names, det.boxes.cpu().numpy(), det.scores.cpu().numpy(),
                              det.labels.cpu().numpy(), sample.gt_boxes, list(sample.gt_names), heatmap=heat,
                              score_threshold=score_threshold, camera_names=[c.name for c in sample.cameras],
                              radar_points=(batch.radar_points[0].cpu().numpy()
                                            if batch.radar_points is not None else None))
        except Exception as e:  # noqa: BLE001  (a picture never fails an evaluation whose scores are written)
            problems.append(f"pictures: sample {sample.token} could not be drawn ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:160] if str(e) else ''})")
    return problems


def evaluate_checkpoint(checkpoint: str | Path, dataroot: str | Path, version: str, split: str, out_dir: str | Path,
                        *, device: str = "cpu", use_ema: bool = True, score_threshold: float | None = None,
                        progress: bool = True, render: int = 0, render_threshold: float = 0.3,
                        other_dataroot: bool = False, limit: int | None = None,
                        report: Callable[[str], None] = log.info) -> EvalMetrics:
    """Predict a split with a checkpoint, write `results_nusc.json`, score it and write `metrics.json`
    (+ DetectionEval's own files) into `out_dir`. `render` > 0 also draws the first `render` samples
    (`render/`, the top predictions, fainter below `render_threshold`) and the devkit's curves (`plots/`).

    `report` gets, in this order: what is scored (the checkpoint, what it was distilled from, and a
    warning when the split is the one it was trained on), the metrics table once they are written, and
    one line per picture that could not be drawn (pictures never fail the evaluation)."""
    if render < 0:
        raise UserInputError(f"--render: must be >= 0, got {render}")
    from .provenance import check_eval_dataroot, describe, trained_on

    device = resolve_device(device)
    model, cfg, info = load_student(checkpoint, device, use_ema)
    check_eval_dataroot(info["provenance"], dataroot, version, other_dataroot)
    about = (f"scored: {checkpoint} (step {info['step']}, {'EMA' if info['ema'] else 'raw'} weights) on {version} "
             f"{split}\n{describe(info['provenance'])}")
    if trained_on(info["provenance"]) == (version, split):
        about += (f"\nwarning: {split} is the split this student was trained on: these scores are on its training "
                  "data, not held-out data")
    set_score_threshold(model, score_threshold)
    radar = cfg.student.modality == "radar"
    dataset = open_split(dataroot, version, split, num_sweeps=0, gt_filter="evaluation",
                         num_radar_sweeps=cfg.student.radar.sweeps if radar else 0)
    n = len(dataset)
    if limit is not None:
        if limit < 1:
            raise UserInputError(f"--limit: must be >= 1, got {limit}")
        about += f"\nscored on the first {min(limit, n)} of the split's {n} samples (--limit)"
    report(about)
    samples = [dataset[i] for i in range(min(limit or n, n))]
    if is_waymo_version(version):
        return _evaluate_waymo(model, cfg, dataset, samples, Path(out_dir), info, checkpoint, version, split, limit,
                               about, device, progress, report)
    results = predict_split(model, cfg, dataset, samples, device, progress)
    out = Path(out_dir)
    path = write_results(results, out / "results_nusc.json", RADAR_RESULTS_META if radar else RESULTS_META)
    shown = samples[:render]
    metrics = score_results(path, dataset, out, only_tokens=[s.token for s in samples] if limit is not None else None)
    metrics.about = about
    (out / "metrics.json").write_text(json.dumps(
        {"checkpoint": str(checkpoint), "step": info["step"], "ema_weights": info["ema"],
         "provenance": info["provenance"], "version": version, "split": split, "limit": limit,
         "mAP": metrics.mean_ap,
         "NDS": metrics.nd_score, "per_class_AP": metrics.label_aps, "tp_errors": metrics.tp_errors,
         "per_class_tp_errors": metrics.label_tp_errors}, indent=2))
    report(metrics.table())
    if shown:
        for problem in render_devkit(metrics, [s.token for s in shown], out) + \
                render_predictions(model, cfg, dataset, shown, out / "render", device, render_threshold):
            report(problem)
    return metrics


@torch.no_grad()
def _evaluate_waymo(model: BevStudent, cfg: Any, dataset, samples: Sequence[SampleInfo], out: Path, info: dict,
                    checkpoint, version: str, split: str, limit: int | None, about: str, device, progress: bool,
                    report: Callable[[str], None]):
    """Waymo: the detections (vehicle frame) written as JSON and scored with Waymo's metrics (3D AP/APH,
    camera-only LET-3D-AP/APL; dataset_access.waymo.evaluation)."""
    from dataset_access.waymo.evaluation import score_detections, write_detections

    detections = {}
    it = samples
    if progress:
        from cache_schema.progress import progress as progress_bar

        it = progress_bar(samples, desc="eval", unit="frame")
    for sample in it:
        det: Detections = model.predict(_input_batch(cfg, dataset, sample, device))[0]
        detections[sample.token] = (det.boxes.cpu().numpy(), det.scores.cpu().numpy(), det.labels.cpu().numpy())
    write_detections(detections, model.class_names, out / "detections_waymo.json")
    metrics = score_detections(samples, detections, model.class_names)
    metrics.about = about
    (out / "metrics.json").write_text(json.dumps(
        {"checkpoint": str(checkpoint), "step": info["step"], "ema_weights": info["ema"],
         "provenance": info["provenance"], "version": version, "split": split, "limit": limit,
         **metrics.to_json()}, indent=2))
    report(metrics.table())
    return metrics


def predict_to_file(checkpoint: str | Path, dataroot: str | Path, version: str, split: str, out: str | Path, *,
                    device: str = "cpu", use_ema: bool = True, score_threshold: float | None = None,
                    progress: bool = True) -> tuple[Path, int]:
    """The student's detections on every sample of a split, written as a nuScenes results file (its meta
    block says which sensors were used); nothing is scored, so the split needs no annotations.
    Returns (the file, the number of samples)."""
    device = resolve_device(device)
    model, cfg, _ = load_student(checkpoint, device, use_ema)
    set_score_threshold(model, score_threshold)
    radar = cfg.student.modality == "radar"
    dataset = NuScenesSamples(dataroot, version, split, num_sweeps=0,
                              num_radar_sweeps=cfg.student.radar.sweeps if radar else 0)
    samples = list(dataset)
    results = predict_split(model, cfg, dataset, samples, device, progress)
    path = write_results(results, Path(out), RADAR_RESULTS_META if radar else RESULTS_META)
    return path, len(samples)
