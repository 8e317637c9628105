"""`x3kd-student eval`: run the student on a nuScenes split and score it with nuscenes-devkit.

    metrics = evaluate_checkpoint("runs/tiny/checkpoints/step_0000200.pt", dataroot, "v1.0-mini",
                                  "mini_val", "runs/tiny/eval")

No teacher and no cache: the camera inputs come from the nuScenes tables (dataset_access.nuscenes.tables), a
radar student's multi-sweep radar points from the dataroot's radar scans (dataset_access.nuscenes.radar, the
reader the export uses).
Detections (LiDAR frame, cache_schema.boxes convention) go to the global frame through one writer,
`detections_to_results`, which produces the nuScenes detection-results JSON; DetectionEval
(detection_cvpr_2019) scores it. Writing GT boxes through the same writer scores mAP 1 on the classes
present, which is what proves the frame, size-order, yaw and velocity conversions (tests do so).
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from cache_schema.errors import UserInputError

from .batch import StudentBatch
from detection.device import torch_device
from cache_schema.views import CameraSetup

from .data.cameras import load_camera_inputs, previous_frame_inputs
from detection.center_head import concat_task_heatmaps
from detection.centerpoint_coder import Detections
from .models.student import BevStudent, build_student

log = logging.getLogger(__name__)

EVAL_CONFIG = "detection_cvpr_2019"
RESULTS_META = {"use_camera": True, "use_lidar": False, "use_radar": False, "use_map": False, "use_external": False}
RADAR_RESULTS_META = {**RESULTS_META, "use_camera": False, "use_radar": True}
# The attribute a detection gets when the model predicts none (the rule mmdet3d's nuScenes output
# follows: moving vs parked/stopped from the predicted speed, else a per-class default).
DEFAULT_ATTRIBUTE = {
    "car": "vehicle.parked", "truck": "vehicle.parked", "construction_vehicle": "vehicle.parked",
    "bus": "vehicle.moving", "trailer": "vehicle.parked", "barrier": "", "motorcycle": "cycle.without_rider",
    "bicycle": "cycle.without_rider", "pedestrian": "pedestrian.moving", "traffic_cone": ""}
_VEHICLES = ("car", "construction_vehicle", "bus", "truck", "trailer")


def default_attribute(name: str, speed: float) -> str:
    if speed > 0.2:
        if name in _VEHICLES:
            return "vehicle.moving"
        if name in ("bicycle", "motorcycle"):
            return "cycle.with_rider"
        return DEFAULT_ATTRIBUTE[name]
    if name == "pedestrian":
        return "pedestrian.standing"
    if name == "bus":
        return "vehicle.stopped"
    return DEFAULT_ATTRIBUTE[name]


def _quaternion(r: np.ndarray) -> list[float]:
    from pyquaternion import Quaternion

    # pyquaternion checks orthogonality strictly; re-orthonormalise float32 round-off first.
    u, _, vt = np.linalg.svd(r)
    return [float(v) for v in Quaternion(matrix=u @ vt).elements]


def detections_to_results(token: str, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                          class_names: Sequence[str], lidar_to_global: np.ndarray) -> list[dict[str, Any]]:
    """nuScenes result records of one sample from LiDAR-frame boxes [M, 9] (x, y, z gravity centre,
    l, w, h, yaw, vx, vy), scores [M], labels [M] (indices into `class_names`)."""
    t = np.asarray(lidar_to_global, dtype=np.float64)
    out = []
    for box, score, label in zip(np.asarray(boxes, np.float64), np.asarray(scores), np.asarray(labels)):
        x, y, z, l, w, h, yaw, vx, vy = box
        centre = t[:3, :3] @ np.array([x, y, z]) + t[:3, 3]
        rz = np.array([[math.cos(yaw), -math.sin(yaw), 0.0], [math.sin(yaw), math.cos(yaw), 0.0], [0.0, 0.0, 1.0]])
        velocity = t[:3, :3] @ np.array([vx, vy, 0.0])  # velocities rotate, they do not translate
        name = class_names[int(label)]
        out.append({
            "sample_token": token, "translation": [float(v) for v in centre],
            "size": [float(w), float(l), float(h)],  # nuScenes orders sizes (w, l, h)
            "rotation": _quaternion(t[:3, :3] @ rz), "velocity": [float(velocity[0]), float(velocity[1])],
            "detection_name": name, "detection_score": float(score),
            "attribute_name": default_attribute(name, float(np.hypot(velocity[0], velocity[1])))})
    return out


def write_results(results: dict[str, list[dict[str, Any]]], path: str | Path,
                  meta: dict[str, bool] = RESULTS_META) -> Path:
    """The nuScenes detection results JSON (meta block: camera only, or RADAR_RESULTS_META)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"meta": meta, "results": results}))
    return p


@dataclass
class EvalMetrics:
    """DetectionEval's summary: mAP, NDS, per-class AP (mean over distance thresholds) and TP errors."""

    mean_ap: float
    nd_score: float
    label_aps: dict[str, float]
    tp_errors: dict[str, float]
    label_tp_errors: dict[str, dict[str, float]]
    raw: dict[str, Any]
    # The devkit's GT boxes of the split after its filters (global frame), kept for pictures.
    gt_boxes: Any = None
    # What was scored: checkpoint, step, EMA or raw weights, what the student was distilled from.
    about: str = ""

    def table(self) -> str:
        """A markdown table: one row per class (AP and TP errors), then mAP / NDS and the mean errors."""
        errs = list(self.tp_errors)
        lines = ["| class | AP | " + " | ".join(errs) + " |", "| --- | ---: | " + " | ".join("---:" for _ in errs) + " |"]
        for name, ap in self.label_aps.items():
            e = self.label_tp_errors.get(name, {})
            lines.append(f"| {name} | {ap:.4f} | " + " | ".join(_fmt(e.get(k)) for k in errs) + " |")
        lines.append("| **mean** | " + f"{self.mean_ap:.4f} | " + " | ".join(_fmt(self.tp_errors[k]) for k in errs) + " |")
        lines.append(f"\nmAP {self.mean_ap:.4f}  NDS {self.nd_score:.4f}")
        return "\n".join(lines)


def _fmt(v: float | None) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def score_results(results_path: str | Path, dataroot: str | Path, version: str, split: str, out_dir: str | Path,
                  nusc=None, render_tokens: Sequence[str] = (), only_tokens: Sequence[str] | None = None
                  ) -> EvalMetrics:
    """Score a results JSON with DetectionEval; writes DetectionEval's metrics_summary.json and
    metrics_details.json into `out_dir`. With `render_tokens`, also the devkit's pictures: its PR and
    TP-error curves (`plots/*.png`) and its BEV view of GT and predictions over the LiDAR points for
    each of those samples (`render/<i>_<token>_devkit.png`). `only_tokens` scores those samples of the
    split alone (`eval --limit`)."""
    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.detection.evaluate import DetectionEval

    from dataset_access.nuscenes.tables import open_nuscenes

    nusc = nusc or open_nuscenes(dataroot, version)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # The devkit prints and draws progress bars even with verbose=False.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        if only_tokens is None:
            de = DetectionEval(nusc, config=config_factory(EVAL_CONFIG), result_path=str(results_path),
                               eval_set=split, output_dir=str(out), verbose=False)
        else:
            de = _samples_eval_class()(nusc, config_factory(EVAL_CONFIG), str(results_path), split, str(out),
                                       only_tokens)
        metrics, details = de.evaluate()
        if render_tokens:
            _render_devkit(de, nusc, metrics, details, render_tokens, out)
    summary = metrics.serialize()
    (out / "metrics_summary.json").write_text(json.dumps(summary, indent=2))
    (out / "metrics_details.json").write_text(json.dumps(details.serialize(), indent=2))
    return EvalMetrics(float(summary["mean_ap"]), float(summary["nd_score"]),
                       {k: float(v) for k, v in summary["mean_dist_aps"].items()},
                       {k: float(v) for k, v in summary["tp_errors"].items()},
                       {k: {e: float(x) for e, x in v.items()} for k, v in summary["label_tp_errors"].items()}, summary,
                       gt_boxes=de.gt_boxes)


def _samples_eval_class():
    from nuscenes.eval.common.loaders import (add_center_dist, filter_eval_boxes, load_gt_of_sample_tokens,
                                              load_prediction_of_sample_tokens)
    from nuscenes.eval.detection.data_classes import DetectionBox
    from nuscenes.eval.detection.evaluate import DetectionEval

    class SamplesEval(DetectionEval):
        """DetectionEval over some samples of a split, loaded and filtered by the devkit's own
        functions for sample-token subsets (what its custom splits use)."""

        def __init__(self, nusc, config, result_path: str, eval_set: str, output_dir: str,
                     tokens: Sequence[str]) -> None:
            self.nusc, self.result_path, self.eval_set, self.output_dir = nusc, result_path, eval_set, output_dir
            self.verbose, self.cfg = False, config
            self.plot_dir = str(Path(output_dir) / "plots")
            Path(self.plot_dir).mkdir(parents=True, exist_ok=True)
            tokens = list(tokens)
            self.pred_boxes, self.meta = load_prediction_of_sample_tokens(
                result_path, config.max_boxes_per_sample, DetectionBox, sample_tokens=tokens, verbose=False)
            self.gt_boxes = load_gt_of_sample_tokens(nusc, tokens, DetectionBox, verbose=False)
            self.pred_boxes = filter_eval_boxes(nusc, add_center_dist(nusc, self.pred_boxes), config.class_range)
            self.gt_boxes = filter_eval_boxes(nusc, add_center_dist(nusc, self.gt_boxes), config.class_range)
            self.sample_tokens = self.gt_boxes.sample_tokens

    return SamplesEval


def _render_devkit(de, nusc, metrics, details, tokens: Sequence[str], out: Path) -> None:
    """The devkit's own renderers (what `DetectionEval.render` draws, as PNG instead of PDF)."""
    import matplotlib

    matplotlib.use("Agg")  # the devkit draws through pyplot; no display is needed or wanted
    from nuscenes.eval.detection.render import (class_pr_curve, class_tp_curve, dist_pr_curve, summary_plot,
                                                visualize_sample)

    cfg = de.cfg
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    summary_plot(details, metrics, min_precision=cfg.min_precision, min_recall=cfg.min_recall,
                 dist_th_tp=cfg.dist_th_tp, savepath=str(plots / "summary.png"))
    for name in cfg.class_names:
        class_pr_curve(details, metrics, name, cfg.min_precision, cfg.min_recall, savepath=str(plots / f"{name}_pr.png"))
        class_tp_curve(details, metrics, name, cfg.min_recall, cfg.dist_th_tp, savepath=str(plots / f"{name}_tp.png"))
    for dist_th in cfg.dist_ths:
        dist_pr_curve(details, metrics, dist_th, cfg.min_precision, cfg.min_recall,
                      savepath=str(plots / f"dist_pr_{dist_th}.png"))
    (out / "render").mkdir(parents=True, exist_ok=True)
    for i, token in enumerate(tokens):
        visualize_sample(nusc, token, de.gt_boxes, de.pred_boxes, eval_range=max(cfg.class_range.values()),
                         verbose=False, savepath=str(out / "render" / f"{i:03d}_{token}_devkit.png"))


def load_student(checkpoint: str | Path, device: str | torch.device = "cpu", use_ema: bool = True
                 ) -> tuple[BevStudent, Any, dict[str, Any]]:
    """The inference model of a training checkpoint (EMA weights when the run kept them), its
    TrainConfig, and what it is: {"step", "ema" (whether EMA weights were loaded), "provenance"}."""
    from .train import TrainConfig, load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    cfg = TrainConfig.from_dict(ckpt["config"], f"{checkpoint}: config")
    model = build_student(cfg.student)
    ema = use_ema and ckpt.get("ema") is not None
    model.load_state_dict(ckpt["ema"] if ema else ckpt["model"])
    info = {"step": int(ckpt.get("step", 0)), "ema": ema, "provenance": ckpt.get("provenance")}
    return model.to(device).eval(), cfg, info


def _input_batch(cfg: Any, dataroot: str | Path, setup: CameraSetup, device: str | torch.device,
                 nusc: Any = None) -> StudentBatch:
    """One sample's input with no BEV augmentation: its cameras with the test-time image transform (and
    a two-key-frame student's previous key frame), or for the radar student its radar scans (both need
    the devkit tables `nusc`)."""
    if cfg.student.modality == "radar":
        from dataset_access.nuscenes.radar import radar_points, radar_sweeps

        sweeps = radar_sweeps(nusc, setup.token, cfg.student.radar.sweeps)
        points = radar_points(dataroot, sweeps, setup.lidar_to_global(), nusc.get("sample", setup.token)["timestamp"])
        return StudentBatch(bda=torch.eye(4)[None], radar_points=[torch.from_numpy(points)]).to(device)
    aug = replace(cfg.data.image_aug, final_size=tuple(cfg.student.image_size))
    rng = np.random.default_rng(0)  # unused by the test-time transform; required by its signature
    cams = load_camera_inputs(dataroot, setup, aug, rng, train=False, resize_relative=cfg.data.resize_relative)
    prev = {}
    if cfg.student.key_frames == 2:
        from dataset_access.nuscenes.tables import camera_setup

        prev_token = nusc.get("sample", setup.token)["prev"] or setup.token  # a scene's first frame is its own
        prev = {k: v[None] for k, v in previous_frame_inputs(dataroot, camera_setup(nusc, prev_token), setup,
                                                              cams).items()}
    return StudentBatch(images=cams.images[None], intrinsics=cams.intrinsics[None], cam2lidar=cams.cam2lidar[None],
                        ida=cams.ida[None], bda=torch.eye(4)[None], **prev).to(device)


@torch.no_grad()
def predict_split(model: BevStudent, cfg: Any, dataroot: str | Path, setups: Sequence[CameraSetup],
                  device: str | torch.device = "cpu", progress: bool = True, nusc: Any = None
                  ) -> dict[str, list[dict[str, Any]]]:
    """Run `model` on every sample of `setups` (test-time image transform, no BEV augmentation) and
    return the nuScenes result records per sample token (empty lists for samples without detections).
    A radar student also needs the devkit tables `nusc` (to find each sample's radar scans)."""
    class_names = model.head.class_names
    results: dict[str, list[dict[str, Any]]] = {}
    it = setups
    if progress:
        from cache_schema.progress import progress as progress_bar

        it = progress_bar(setups, desc="eval", unit="sample")
    for setup in it:
        det: Detections = model.predict(_input_batch(cfg, dataroot, setup, device, nusc))[0]
        results[setup.token] = detections_to_results(setup.token, det.boxes.cpu().numpy(), det.scores.cpu().numpy(),
                                                     det.labels.cpu().numpy(), class_names, setup.lidar_to_global())
    return results


def gt_in_lidar_frame(boxes: Sequence[Any], lidar_to_global: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The devkit's GT `DetectionBox`es of one sample (global frame) as (M, 9) LiDAR-frame boxes in the
    cache_schema convention, and their class names: the inverse of `detections_to_results`."""
    from pyquaternion import Quaternion

    inv = np.linalg.inv(np.asarray(lidar_to_global, np.float64))
    rows, names = [], []
    for b in boxes:
        centre = inv[:3, :3] @ np.asarray(b.translation, np.float64) + inv[:3, 3]
        r = inv[:3, :3] @ Quaternion(b.rotation).rotation_matrix
        velocity = inv[:3, :3] @ np.array([*b.velocity, 0.0])
        w, l, h = b.size
        rows.append([*centre, l, w, h, math.atan2(r[1, 0], r[0, 0]), *np.nan_to_num(velocity[:2])])
        names.append(b.detection_name)
    return np.asarray(rows, np.float64).reshape(-1, 9), names


@torch.no_grad()
def render_predictions(model: BevStudent, cfg: Any, dataroot: str | Path, setups: Sequence[CameraSetup],
                       gt_boxes: Any, out_dir: str | Path, device: str | torch.device = "cpu",
                       score_threshold: float = 0.3, nusc: Any = None) -> list[Path]:
    """Pictures of the student's predictions on `setups` (detection.pictures.render_prediction): BEV over
    its own heatmap and the cameras, GT from the devkit's filtered GT boxes."""
    from cache_schema.layout import CAMERA_NAMES

    from detection.pictures import render_prediction

    written = []
    for i, setup in enumerate(setups):
        batch = _input_batch(cfg, dataroot, setup, device, nusc)
        outputs = model(batch)
        heat = concat_task_heatmaps(outputs.head_outputs)[0].sigmoid().cpu().numpy()
        det = model.predict(batch)[0]
        gt, names = gt_in_lidar_frame(gt_boxes[setup.token] if gt_boxes is not None else [], setup.lidar_to_global())
        written += render_prediction(out_dir, f"{i:03d}_{setup.token}", setup, dataroot, cfg.student.grid,
                                     model.head.class_names, det.boxes.cpu().numpy(), det.scores.cpu().numpy(),
                                     det.labels.cpu().numpy(), gt, names, heatmap=heat,
                                     score_threshold=score_threshold, camera_names=CAMERA_NAMES,
                                     radar_points=(batch.radar_points[0].cpu().numpy()
                                                   if batch.radar_points is not None else None))
    return written


def evaluate_checkpoint(checkpoint: str | Path, dataroot: str | Path, version: str, split: str, out_dir: str | Path,
                        *, device: str = "cpu", use_ema: bool = True, score_threshold: float | None = None,
                        progress: bool = True, render: int = 0, render_threshold: float = 0.3,
                        other_dataroot: bool = False, limit: int | None = None) -> EvalMetrics:
    """Predict a split with a checkpoint, write `results_nusc.json`, score it and write `metrics.json`
    (+ DetectionEval's own files) into `out_dir`. `render` > 0 also draws the first `render` samples
    (`render/`, predictions above `render_threshold`) and the devkit's curves (`plots/`)."""
    from dataset_access.nuscenes.tables import camera_setup, open_nuscenes, split_sample_tokens

    if render < 0:
        raise UserInputError(f"--render: must be >= 0, got {render}")
    from .provenance import check_eval_dataroot, describe

    torch_device(device)
    model, cfg, info = load_student(checkpoint, device, use_ema)
    check_eval_dataroot(info["provenance"], dataroot, version, other_dataroot)
    about = (f"scored: {checkpoint} (step {info['step']}, {'EMA' if info['ema'] else 'raw'} weights)\n"
             f"{describe(info['provenance'])}")
    if score_threshold is not None:
        if not 0 <= score_threshold < 1:
            raise UserInputError(f"--score-threshold: must be in [0, 1), got {score_threshold}")
        model.box_coder = replace(model.box_coder, score_threshold=score_threshold,
                                  coder_score_threshold=score_threshold)
    nusc = open_nuscenes(dataroot, version)
    tokens = split_sample_tokens(nusc, split)
    if limit is not None:
        if limit < 1:
            raise UserInputError(f"--limit: must be >= 1, got {limit}")
        about += f"\nscored on the first {min(limit, len(tokens))} of the split's {len(tokens)} samples (--limit)"
    setups = [camera_setup(nusc, t) for t in tokens[:limit]]
    results = predict_split(model, cfg, dataroot, setups, device, progress, nusc=nusc)
    out = Path(out_dir)
    path = write_results(results, out / "results_nusc.json",
                         RADAR_RESULTS_META if cfg.student.modality == "radar" else RESULTS_META)
    shown = setups[:render]
    metrics = score_results(path, dataroot, version, split, out, nusc=nusc, render_tokens=[s.token for s in shown],
                            only_tokens=[s.token for s in setups] if limit is not None else None)
    if shown:
        render_predictions(model, cfg, dataroot, shown, metrics.gt_boxes, out / "render", device, render_threshold,
                           nusc=nusc)
    metrics.about = about
    (out / "metrics.json").write_text(json.dumps(
        {"checkpoint": str(checkpoint), "step": info["step"], "ema_weights": info["ema"],
         "provenance": info["provenance"], "version": version, "split": split, "limit": limit,
         "mAP": metrics.mean_ap,
         "NDS": metrics.nd_score, "per_class_AP": metrics.label_aps, "tp_errors": metrics.tp_errors,
         "per_class_tp_errors": metrics.label_tp_errors}, indent=2))
    return metrics
