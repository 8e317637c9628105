"""Radar: the synthetic .pcd files through nuscenes-devkit, and the multi-sweep reader's frames."""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from nuscenes.nuscenes import NuScenes
from nuscenes.utils.data_classes import RadarPointCloud

from cache_schema.errors import UserInputError
from cache_schema.layout import RADAR_NAMES, RADAR_POINT_FEATURES
from dataset_access.nuscenes.radar import radar_points, radar_sweeps, read_radar_file
from dataset_access.nuscenes.samples import NuScenesSamples
from dataset_access.samples import SampleInfo


@pytest.fixture(scope="module")
def nusc(synthetic_dataroot: Path) -> NuScenes:
    return NuScenes("v1.0-mini", str(synthetic_dataroot), verbose=False)


@pytest.fixture(scope="module")
def samples(synthetic_dataroot: Path) -> list[SampleInfo]:
    return [s for split in ("mini_train", "mini_val")
            for s in NuScenesSamples(synthetic_dataroot, "v1.0-mini", split, num_radar_sweeps=6)]


def _inside(points: np.ndarray, boxes: np.ndarray, margin: float) -> np.ndarray:
    """(N, B) bool: which LiDAR-frame points lie in which box, footprint grown by `margin` (radar has
    no elevation, so z is not tested)."""
    rel = points[:, None, :2] - boxes[None, :, :2]
    c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    lx = c * rel[..., 0] + s * rel[..., 1]
    ly = -s * rel[..., 0] + c * rel[..., 1]
    return (np.abs(lx) <= boxes[:, 3] / 2 + margin) & (np.abs(ly) <= boxes[:, 4] / 2 + margin)


def test_devkit_reads_every_radar_file_with_its_default_filters(nusc: NuScenes, synthetic_dataroot: Path) -> None:
    radar_sd = [sd for sd in nusc.sample_data if sd["filename"].split("/")[1] in RADAR_NAMES]
    key = [sd for sd in radar_sd if sd["is_key_frame"]]
    assert len(key) == len(nusc.sample) * 5 and len(radar_sd) == 6 * len(key)  # 5 scans before each key scan
    assert {s["channel"] for s in nusc.sensor if s["modality"] == "radar"} == set(RADAR_NAMES)
    kept = dropped = 0
    for sd in radar_sd:
        path = str(synthetic_dataroot / sd["filename"])
        filtered = RadarPointCloud.from_file(path)  # the devkit's default filters
        everything = RadarPointCloud.from_file(path, invalid_states=list(range(18)), dynprop_states=list(range(8)),
                                               ambig_states=list(range(5)))
        assert filtered.points.shape[0] == 18
        pts = filtered.points
        assert np.all(pts[-4] == 0) and np.all(pts[11] == 3) and np.all(pts[3] <= 6)  # invalid, ambig, dyn_prop
        assert np.all(pts[2] == 0)  # the radar measures no elevation
        kept += pts.shape[1]
        dropped += everything.points.shape[1] - pts.shape[1]
    assert kept > 10 * len(radar_sd) / 6 and dropped > 0  # tens of returns per sample; invalid ones exist and go


def test_annotations_count_the_key_frame_radar_returns(nusc: NuScenes, samples: list[SampleInfo]) -> None:
    counted = 0
    for s in samples:
        sample = nusc.get("sample", s.token)
        for ann_token in sample["anns"]:
            ann = nusc.get("sample_annotation", ann_token)
            counted += ann["num_radar_pts"]
    assert counted > 0
    # boxes with radar but no LiDAR points are training GT too (devkit: lidar + radar points > 0)
    assert all(np.all(s.gt_num_lidar_pts + s.gt_num_radar_pts > 0) for s in samples)


def test_reader_returns_multi_sweep_points_in_the_lidar_frame(samples: list[SampleInfo],
                                                              synthetic_dataroot: Path) -> None:
    reader = NuScenesSamples(synthetic_dataroot, "v1.0-mini", "mini_train", num_radar_sweeps=6)
    s = reader[1]
    assert len(s.radar_sweeps) == 5 * 6 and [w.channel for w in s.radar_sweeps[:6]] == [RADAR_NAMES[0]] * 6
    pts = reader.load_radar(s)
    assert pts.dtype == np.float32 and pts.shape[1] == len(RADAR_POINT_FEATURES) == 7
    lags = np.unique(np.round(pts[:, 6], 3))
    assert len(lags) >= 6 and lags.max() > 0.3  # 6 scans per radar at 13 Hz reach back ~0.4 s
    # radars sit at bumper height, 1.84 m below the roof LiDAR, plus up to ~0.3 m of mounting
    assert np.all(np.abs(pts[:, 2] + 1.2) < 0.2)
    one = NuScenesSamples(synthetic_dataroot, "v1.0-mini", "mini_train", num_radar_sweeps=1)
    assert len(one[1].radar_sweeps) == 5 and len(one.load_radar(one[1])) < len(pts)


def test_static_objects_returns_from_all_sweeps_land_on_them(samples: list[SampleInfo],
                                                              synthetic_dataroot: Path) -> None:
    """Each scan is moved into the key frame with its own ego pose; with the key frame's pose instead
    (no compensation of the ego motion) older scans of a small static object miss it (parked cars are
    long along the traffic direction: they would catch displaced returns as well)."""
    on_static = {"compensated": 0, "ego motion ignored": 0}
    old_scans = 0
    for s in samples:
        static = (np.hypot(s.gt_boxes[:, 7], s.gt_boxes[:, 8]) < 1e-3) & (s.gt_labels >= 5)  # barrier .. cone
        if not static.any():
            continue
        for name, sweeps in (("compensated", s.radar_sweeps),
                             ("ego motion ignored", tuple(replace(w, ego_pose=s.ego_pose) for w in s.radar_sweeps))):
            pts = radar_points(synthetic_dataroot, sweeps, s.lidar_to_global, s.timestamp)
            old = pts[pts[:, 6] > 0.15]
            hit = _inside(old, s.gt_boxes[static], margin=0.3).any(axis=1)
            on_static[name] += int(hit.sum())
            if name == "compensated":
                old_scans += len(old)
    assert old_scans > 0 and on_static["compensated"] >= 5
    assert on_static["compensated"] > 2 * on_static["ego motion ignored"], on_static


def test_moving_objects_doppler_velocity_is_recovered_in_the_lidar_frame(samples: list[SampleInfo],
                                                                         synthetic_dataroot: Path) -> None:
    """vx_comp, vy_comp (rotated into the LiDAR frame) are the radial part of the object's own velocity
    along the ray from the radar: (v . u) u with u the unit ray, whatever the ego car does."""
    checked = fast = matched = 0
    for s in samples:
        moving = np.hypot(s.gt_boxes[:, 7], s.gt_boxes[:, 8]) > 0.5
        for sweep in s.radar_sweeps:
            if abs(sweep.timestamp - s.timestamp) > 40_000:  # key scans: the GT boxes are where they were
                continue
            pts = radar_points(synthetic_dataroot, (sweep,), s.lidar_to_global, s.timestamp)
            to_lidar = np.linalg.inv(s.lidar_to_global) @ sweep.ego_pose @ sweep.radar_to_ego
            origin = to_lidar[:3, 3]
            inside = _inside(pts, s.gt_boxes, margin=0.3)
            for p, row in zip(pts, inside):
                boxes = np.flatnonzero(row & moving)
                if len(boxes) != 1:
                    continue
                u = p[:2] - origin[:2]
                u /= np.linalg.norm(u)
                v = s.gt_boxes[boxes[0], 7:9]
                expected = (v @ u) * u
                checked += 1
                matched += bool(np.all(np.abs(p[4:6] - expected) < 0.5))
                fast += abs(v @ u) > 1.0
    # a clutter return (static, anywhere) may fall inside a moving box now and then
    assert checked >= 5 and fast >= 2 and matched >= 0.9 * checked, (matched, checked)


def test_a_bad_radar_file_is_one_line_naming_it(nusc: NuScenes, synthetic_dataroot: Path, tmp_path: Path) -> None:
    sd = next(sd for sd in nusc.sample_data if sd["filename"].startswith("samples/RADAR_FRONT/"))
    broken = tmp_path / "broken.pcd"
    data = (synthetic_dataroot / sd["filename"]).read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserInputError, match=str(broken)):
        read_radar_file(broken)
    with pytest.raises(UserInputError, match="radar point file not found"):
        read_radar_file(tmp_path / "missing.pcd")
    garbage = tmp_path / "garbage.pcd"
    garbage.write_bytes(b"not a point cloud at all\n")
    with pytest.raises(UserInputError, match="garbage.pcd"):
        read_radar_file(garbage)
    # through the reader: a sweep that points at a missing file names it
    shutil.copy(synthetic_dataroot / sd["filename"], tmp_path / "ok.pcd")
    sweeps = radar_sweeps(nusc, sd["sample_token"], 1)
    with pytest.raises(UserInputError, match="not found"):
        radar_points(tmp_path, sweeps, np.eye(4), 0)
