"""The nuScenes detection-results JSON: one writer for every model that predicts boxes (students, cached
teachers). Boxes come in a sample's LiDAR frame in the `cache_schema.boxes` convention and go to the
global frame, nuScenes' (w, l, h) size order and quaternion rotation, with an attribute per box."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np


RESULTS_META = {"use_camera": True, "use_lidar": False, "use_radar": False, "use_map": False, "use_external": False}
RADAR_RESULTS_META = {**RESULTS_META, "use_camera": False, "use_radar": True}
LIDAR_RESULTS_META = {**RESULTS_META, "use_camera": False, "use_lidar": True}
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
