"""Waymo's metrics in numpy: the official metric ops' numbers on a fixture, and hand-made cases."""
import json
from pathlib import Path

import numpy as np
import pytest

from dataset_access.waymo.metrics import (CAMERA_ONLY_LET, DETECTION_3D, LetConfig, detection_metrics, iou_3d,
                                          let_iou, longitudinal_affinity, mean_average_precision)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "waymo"
TYPE_NAMES = {1: "VEHICLE", 2: "PEDESTRIAN", 3: "SIGN", 4: "CYCLIST"}


@pytest.mark.parametrize("name,config", [("detection_3d", DETECTION_3D), ("camera_only_let", CAMERA_ONLY_LET)])
def test_matches_the_official_metric_ops(name, config):
    d = np.load(FIXTURES / "detections.npz")
    official = json.loads((FIXTURES / "official_metrics.json").read_text())[name]
    ours = detection_metrics(d["pred_boxes"], d["pred_types"], d["pred_scores"], d["pred_frames"], d["gt_boxes"],
                             d["gt_types"], d["gt_frames"], d["gt_difficulty"], config, d["pred_nlz"])
    assert len(official) == 8
    for key, expected in official.items():
        _, shard, level = key.split("/")  # OBJECT_TYPE shard k is box type k + 1
        got = ours[f"{TYPE_NAMES[int(shard) + 1]}_{level}"]
        for metric in ("ap", "aph", "apl"):
            assert got[metric] == pytest.approx(expected[metric], abs=2e-5), (key, metric)


def _one(pred, gt, config, score=0.9, pred_type=1, gt_type=1, difficulty=1):
    return detection_metrics(np.array([pred]), [pred_type], [score], [0], np.array([gt]), [gt_type], [0],
                             [difficulty], config)


CAR = np.array([20.0, 5.0, 0.9, 4.5, 2.0, 1.8, 0.3])


def test_a_perfect_detection_scores_one():
    for config in (DETECTION_3D, CAMERA_ONLY_LET):
        r = _one(CAR, CAR, config)["VEHICLE_LEVEL_1"]
        assert r["ap"] == pytest.approx(1.0) and r["aph"] == pytest.approx(1.0) and r["apl"] == pytest.approx(1.0)


def test_a_box_moved_along_its_line_of_sight_matches_under_let_only():
    sensor = np.array(LetConfig().sensor)
    ray = (CAR[:3] - sensor) / np.linalg.norm(CAR[:3] - sensor)
    shifted = CAR.copy()
    shifted[:3] += ray * 1.5  # 1.5 m further away: inside 10% of ~21 m, far outside 3D IoU 0.7 (and 0.5)
    assert iou_3d(shifted, CAR) < 0.5
    assert let_iou(shifted, CAR, LetConfig()) == pytest.approx(1.0)
    assert 0 < longitudinal_affinity(shifted, CAR, LetConfig()) < 1
    assert _one(shifted, CAR, DETECTION_3D)["VEHICLE_LEVEL_1"]["ap"] == 0.0
    let = _one(shifted, CAR, CAMERA_ONLY_LET)["VEHICLE_LEVEL_1"]
    assert let["ap"] == pytest.approx(1.0)
    assert let["apl"] == pytest.approx(longitudinal_affinity(shifted, CAR, LetConfig()), abs=1e-3)


def test_a_sideways_shift_is_not_tolerated_by_let():
    sideways = CAR.copy()
    sideways[:2] += np.array([-CAR[1], CAR[0]]) / np.hypot(CAR[0], CAR[1]) * 2.5  # 2.5 m across the ray
    assert _one(sideways, CAR, CAMERA_ONLY_LET)["VEHICLE_LEVEL_1"]["ap"] == 0.0


def test_heading_turned_round_costs_aph_not_ap():
    flipped = CAR.copy()
    flipped[6] += np.pi
    r = _one(flipped, CAR, DETECTION_3D)["VEHICLE_LEVEL_1"]
    assert r["ap"] == pytest.approx(1.0) and r["aph"] == pytest.approx(0.0, abs=1e-6)


def test_a_missed_level_2_box_is_no_miss_at_level_1():
    gt = np.stack([CAR, CAR + [0, 10, 0, 0, 0, 0, 0]])
    r = detection_metrics(CAR[None], [1], [0.9], [0], gt, [1, 1], [0, 0], [1, 2], DETECTION_3D)
    assert r["VEHICLE_LEVEL_1"]["ap"] == pytest.approx(1.0)
    assert r["VEHICLE_LEVEL_2"]["ap"] == pytest.approx(0.5, abs=0.03)


def test_ap_of_a_known_curve():
    # precision 1 up to recall 0.5, then 0.5 up to recall 1: 0.5 + 0.25, plus the trapezoid of the step
    # between recall 0.5 and the filled point at 0.55.
    ap = mean_average_precision(np.array([1.0, 0.5]), np.array([0.5, 1.0]), 0.05)
    assert ap == pytest.approx(0.75 + 0.5 * 0.05 * 0.5, abs=1e-6)
