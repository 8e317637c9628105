"""Scoring detections on a Waymo split the way Waymo's challenges do, with `metrics` (no TensorFlow).

3D detection: AP and APH at LEVEL_1 and LEVEL_2 against the LiDAR boxes. Camera-only: LET-3D-AP and
LET-3D-APL against the camera-synced boxes (a box without one falls back to its LiDAR box). The
challenges average vehicle, pedestrian and cyclist (signs are scored but not averaged).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from dataset_access.samples import SampleInfo
from dataset_access.waymo.metrics import CAMERA_ONLY_LET, DETECTION_3D, detection_metrics
from dataset_access.waymo.schema import BOX_TYPES

TYPE_OF_CLASS = {name: type_id for type_id, name in BOX_TYPES.items() if type_id}
CHALLENGE_CLASSES = ("vehicle", "pedestrian", "cyclist")


@dataclass
class WaymoEvalMetrics:
    """{CLASS_LEVEL: {ap, aph}} (3D) and {CLASS_LEVEL: {ap, apl}} (LET), and the challenge means."""

    detection_3d: dict[str, dict[str, float]]
    camera_only_let: dict[str, dict[str, float]]
    num_frames: int
    about: str = ""
    means: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        def mean(table, level, key):
            values = [table[f"{c.upper()}_{level}"][key] for c in CHALLENGE_CLASSES if f"{c.upper()}_{level}" in table]
            return float(np.mean(values)) if values else 0.0

        self.means = {"mAP_L1": mean(self.detection_3d, "LEVEL_1", "ap"),
                      "mAPH_L1": mean(self.detection_3d, "LEVEL_1", "aph"),
                      "mAP_L2": mean(self.detection_3d, "LEVEL_2", "ap"),
                      "mAPH_L2": mean(self.detection_3d, "LEVEL_2", "aph"),
                      "LET-3D-AP": mean(self.camera_only_let, "LEVEL_2", "ap"),
                      "LET-3D-APL": mean(self.camera_only_let, "LEVEL_2", "apl"),
                      "LET-3D-APH": mean(self.camera_only_let, "LEVEL_2", "aph")}

    def table(self) -> str:
        lines = [f"Waymo metrics over {self.num_frames} frames (LET: camera-synced boxes, LEVEL_2)",
                 f"{'class':<12}{'AP L1':>8}{'APH L1':>8}{'AP L2':>8}{'APH L2':>8}{'LET-AP':>8}{'LET-APL':>9}"]
        for name in (*CHALLENGE_CLASSES, "sign"):
            key = name.upper()
            if f"{key}_LEVEL_1" not in self.detection_3d:
                continue
            d1, d2 = self.detection_3d[f"{key}_LEVEL_1"], self.detection_3d[f"{key}_LEVEL_2"]
            let = self.camera_only_let.get(f"{key}_LEVEL_2", {"ap": 0.0, "apl": 0.0})
            lines.append(f"{name:<12}{d1['ap']:8.4f}{d1['aph']:8.4f}{d2['ap']:8.4f}{d2['aph']:8.4f}"
                         f"{let['ap']:8.4f}{let['apl']:9.4f}")
        m = self.means
        lines.append(f"mean of {', '.join(CHALLENGE_CLASSES)}: mAPH L2 {m['mAPH_L2']:.4f}  mAP L2 {m['mAP_L2']:.4f}  "
                     f"LET-3D-APL {m['LET-3D-APL']:.4f}  LET-3D-AP {m['LET-3D-AP']:.4f}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"means": self.means, "detection_3d": self.detection_3d, "camera_only_let": self.camera_only_let,
                "num_frames": self.num_frames}


def score_detections(samples: Sequence[SampleInfo], detections: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                     class_names: Sequence[str]) -> WaymoEvalMetrics:
    """Score `detections` {sample token: (boxes (N, >=7) in the frame's vehicle frame, scores, labels into
    `class_names`)} against the samples' ground truth (read with the "evaluation" filter)."""
    pred, gt = {k: [] for k in ("boxes", "types", "scores", "frames")}, {k: [] for k in ("boxes", "synced", "types",
                                                                                              "frames", "difficulty")}
    for frame_index, sample in enumerate(samples):
        boxes, scores, labels = detections.get(sample.token, (np.zeros((0, 7)), np.zeros(0), np.zeros(0, int)))
        types = np.array([TYPE_OF_CLASS.get(class_names[int(label)], 0) for label in labels], int)
        pred["boxes"].append(np.asarray(boxes, np.float64)[:, :7].reshape(-1, 7))
        pred["types"].append(types)
        pred["scores"].append(np.asarray(scores, np.float32))
        pred["frames"].append(np.full(len(types), frame_index))
        n = len(sample.gt_boxes)
        gt_boxes = sample.gt_boxes[:, :7].astype(np.float64)
        synced = gt_boxes.copy()
        if sample.gt_synced_boxes is not None:
            have = ~np.isnan(sample.gt_synced_boxes).any(axis=1)
            synced[have] = sample.gt_synced_boxes[have]
        gt["boxes"].append(gt_boxes)
        gt["synced"].append(synced)
        gt["types"].append(np.array([TYPE_OF_CLASS.get(name, 0) for name in sample.gt_names], int))
        gt["frames"].append(np.full(n, frame_index))
        gt["difficulty"].append(sample.gt_difficulty if sample.gt_difficulty is not None else np.ones(n, int))
    p = {k: np.concatenate(v) if v else np.zeros(0) for k, v in pred.items()}
    g = {k: np.concatenate(v) if v else np.zeros(0) for k, v in gt.items()}
    p["boxes"], g["boxes"], g["synced"] = (x.reshape(-1, 7) for x in (p["boxes"], g["boxes"], g["synced"]))
    d3 = detection_metrics(p["boxes"], p["types"], p["scores"], p["frames"], g["boxes"], g["types"], g["frames"],
                           g["difficulty"], DETECTION_3D)
    let = detection_metrics(p["boxes"], p["types"], p["scores"], p["frames"], g["synced"], g["types"], g["frames"],
                            g["difficulty"], CAMERA_ONLY_LET)
    return WaymoEvalMetrics(d3, let, len(samples))


def write_detections(detections: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], class_names: Sequence[str],
                     path: str | Path) -> Path:
    """The detections as JSON: {token: [{box: [x, y, z, l, w, h, heading], score, type}]} (vehicle frame)."""
    out = {token: [{"box": [float(v) for v in b[:7]], "score": float(s), "type": class_names[int(label)]}
                   for b, s, label in zip(*dets)] for token, dets in detections.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))
    return path
