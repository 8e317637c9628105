"""The devkit's DetectionEval on the generated val split: GT as predictions scores ~1, random ~0."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from nuscenes.eval.common.config import config_factory
from nuscenes.eval.detection.evaluate import DetectionEval
from nuscenes.nuscenes import NuScenes

from cache_schema.frames import make_transform, matrix_to_quaternion, rotation_z
from dataset_access.nuscenes.samples import NuScenesSamples
from dataset_access.samples import SampleInfo

# A valid attribute per class, as detectors without an attribute head emit.
DEFAULT_ATTRIBUTE = {"car": "vehicle.parked", "truck": "vehicle.parked", "construction_vehicle": "vehicle.parked",
                     "bus": "vehicle.moving", "trailer": "vehicle.parked", "barrier": "", "traffic_cone": "",
                     "motorcycle": "cycle.without_rider", "bicycle": "cycle.without_rider",
                     "pedestrian": "pedestrian.moving"}


def _to_results(sample: SampleInfo, boxes: np.ndarray, names: list[str], scores: np.ndarray) -> list[dict]:
    """nuScenes result boxes (global frame) from LiDAR-frame boxes in the cache_schema convention."""
    out = []
    for box, name, score in zip(boxes, names, scores):
        box_to_global = sample.lidar_to_global @ make_transform(rotation_z(float(box[6])), box[:3])
        velocity = sample.lidar_to_global[:3, :3] @ np.array([box[7], box[8], 0.0])
        out.append({"sample_token": sample.token, "translation": box_to_global[:3, 3].tolist(),
                    "size": [float(box[4]), float(box[3]), float(box[5])],
                    "rotation": matrix_to_quaternion(box_to_global[:3, :3]).tolist(),
                    "velocity": velocity[:2].tolist(), "detection_name": name, "detection_score": float(score),
                    "attribute_name": DEFAULT_ATTRIBUTE[name]})
    return out


def _evaluate(nusc: NuScenes, results: dict[str, list[dict]], tmp_path: Path):
    path = tmp_path / "results.json"
    meta = {"use_camera": True, "use_lidar": False, "use_radar": False, "use_map": False, "use_external": False}
    path.write_text(json.dumps({"meta": meta, "results": results}))
    ev = DetectionEval(nusc, config=config_factory("detection_cvpr_2019"), result_path=str(path),
                       eval_set="mini_val", output_dir=str(tmp_path / "eval"), verbose=False)
    metrics, _ = ev.evaluate()
    return metrics


@pytest.fixture(scope="module")
def val(synthetic_dataroot: Path) -> tuple[NuScenes, NuScenesSamples]:
    nusc = NuScenes(version="v1.0-mini", dataroot=str(synthetic_dataroot), verbose=False)
    return nusc, NuScenesSamples(synthetic_dataroot, "v1.0-mini", "mini_val", gt_filter="evaluation")


def test_ground_truth_as_predictions_scores_perfectly(val, tmp_path: Path) -> None:
    nusc, samples = val
    results = {s.token: _to_results(s, s.gt_boxes, list(s.gt_names), np.ones(len(s.gt_boxes))) for s in samples}
    metrics = _evaluate(nusc, results, tmp_path)
    present = sorted({n for s in samples for n in s.gt_names})
    assert len(present) >= 3
    # Classes with no GT in the split score AP 0 by the devkit's definition; mAP over present classes.
    aps = {c: metrics.mean_dist_aps[c] for c in present}
    assert np.mean(list(aps.values())) >= 0.99, aps
    assert metrics.mean_ap == pytest.approx(sum(aps.values()) / 10, abs=1e-6)
    for err in ("trans_err", "scale_err", "orient_err"):
        assert all(metrics.get_label_tp(c, err) < 1e-3 for c in present if c != "traffic_cone"), err
    assert all(metrics.get_label_tp(c, "vel_err") < 1e-3 for c in present
               if c not in ("traffic_cone", "barrier"))


def test_random_boxes_score_near_zero(val, tmp_path: Path) -> None:
    nusc, samples = val
    rng = np.random.default_rng(0)
    classes = list(DEFAULT_ATTRIBUTE)
    results = {}
    for s in samples:
        n = 30
        boxes = np.concatenate([rng.uniform(-45, 45, (n, 2)), rng.uniform(-1.5, 0.5, (n, 1)),
                                rng.uniform(0.5, 5, (n, 3)),
                                rng.uniform(-np.pi, np.pi, (n, 1)), rng.normal(0, 2, (n, 2))], axis=1)
        results[s.token] = _to_results(s, boxes, list(rng.choice(classes, n)), rng.random(n))
    metrics = _evaluate(nusc, results, tmp_path)
    assert metrics.mean_ap < 0.05
