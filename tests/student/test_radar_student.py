"""The radar student: its inputs, its training modes (KD-only reads no GT) and its evaluation."""
from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from cache_schema import CacheReader
from cache_schema.errors import UserInputError
from detection.bev_aug import augment_boxes, augment_radar_points
from student.config import StudentConfig
from student.data.dataset import CacheDataset, collate, needed_groups, open_cache
from student.evaluate import evaluate_checkpoint
from student.losses import X3KDLoss
from student.models.student import build_student
from student.train_config import TrainConfig
from student.train import train

RADAR_TINY = {
    "model": {"modality": "radar", "point_cloud_range": [-25.6, -25.6, -5.0, 25.6, 25.6, 3.0],
              "voxel_size": [0.2, 0.2, 8.0], "out_size_factor": 4, "teacher_bev_channels": 48,
              "radar": {"pillar_channels": [16]},
              "bev_encoder": {"stage_channels": [16, 32], "stage_blocks": [1, 1], "stage_strides": [1, 2],
                              "out_channels": 16, "neck": "fpn"},
              "head": {"share_conv_channel": 16, "head_conv": 16}},
    "loss": {"ds": {"enabled": False}, "xis": {"enabled": False}, "xat": {"hidden_channels": 8}},
    "data": {"batch_size": 2},
    "train": {"steps": 2, "seed": 0},
}


def _config(**loss) -> TrainConfig:
    d = json.loads(json.dumps(RADAR_TINY))
    for term, values in loss.items():
        d["loss"].setdefault(term, {}).update(values)
    return TrainConfig.from_dict(d)


def test_kd_only_radar_run_reads_no_ground_truth(train_cache: str, tmp_path: Path) -> None:
    """The paper's radar setting: distillation alone. The run trains on a copy of the cache whose GT
    arrays are deleted, so any read of them would fail; its losses have no detection term."""
    cfg = _config(det={"weight": 0.0})
    cfg = replace(cfg, train=replace(cfg.train, validate_cache=False))  # validation would read every array
    assert "gt" not in needed_groups(cfg.student)
    store = tmp_path / "no_gt.zarr"
    shutil.copytree(train_cache, store)
    shutil.rmtree(store / "gt")
    reader = open_cache(str(store), cfg.student)
    batch = collate([CacheDataset(reader, None, cfg.student, cfg.data)[i] for i in range(2)])
    assert batch.gt_boxes == [] and batch.images is None and len(batch.radar_points) == 2
    assert all(len(p) > 0 and p.shape[1] == 7 for p in batch.radar_points)
    model, criterion = build_student(cfg.student), X3KDLoss(cfg.student)
    losses = criterion(model(batch), batch)
    assert {k for k in losses if k.startswith("loss_")} == {"loss_xfd", "loss_xat", "loss_xod"}
    final = train(str(store), None, cfg, tmp_path / "run", progress=False)
    assert final.is_file()


def test_radar_student_trains_with_gt_and_kd_and_is_scored_by_the_devkit(train_cache: str, synthetic_dataroot: Path,
                                                                          tmp_path: Path) -> None:
    cfg = _config()
    reader = open_cache(train_cache, cfg.student)
    batch = collate([CacheDataset(reader, None, cfg.student, cfg.data)[i] for i in range(2)])
    losses = X3KDLoss(cfg.student)(build_student(cfg.student)(batch), batch)
    assert {"loss_det", "loss_xfd", "loss_xat", "loss_xod"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    final = train(train_cache, None, cfg, tmp_path / "run", progress=False)
    metrics = evaluate_checkpoint(final, synthetic_dataroot, "v1.0-mini", "mini_val", tmp_path / "eval",
                                  progress=False, render=1)
    assert math.isfinite(metrics.mean_ap) and math.isfinite(metrics.nd_score)
    results = json.loads((tmp_path / "eval" / "results_nusc.json").read_text())
    assert results["meta"]["use_radar"] and not results["meta"]["use_camera"]
    assert (tmp_path / "eval" / "render").is_dir()


def test_radar_points_move_with_the_bev_augmentation() -> None:
    """A radar return on a moving box stays on the box, with its Doppler along the box's velocity."""
    box = torch.tensor([[10.0, 5.0, -1.0, 4.0, 2.0, 1.5, 0.3, 3.0, 1.0]])
    heading = torch.tensor([math.cos(0.3), math.sin(0.3)])
    point = torch.tensor([[10.0 + 1.5 * heading[0], 5.0 + 1.5 * heading[1], -1.2, 5.0, 3.0, 1.0, 0.1]])
    angle = 0.4
    rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    bda = torch.eye(4)
    bda[:2, :2] = torch.diag(torch.tensor([1.0, -1.0])) @ rot * 1.05  # rotate, scale, flip y
    moved_box, moved_point = augment_boxes(box, bda)[0], augment_radar_points(point, bda)[0]
    new_heading = torch.tensor([torch.cos(moved_box[6]), torch.sin(moved_box[6])])
    torch.testing.assert_close(moved_point[:2], moved_box[:2] + 1.5 * 1.05 * new_heading, atol=1e-4, rtol=0)
    torch.testing.assert_close(moved_point[4:6], moved_box[7:9], atol=1e-5, rtol=0)
    torch.testing.assert_close(moved_point[[2, 3, 6]], point[0, [2, 3, 6]])  # z, RCS, time lag unchanged


def test_radar_config_and_store_refusals(train_cache: str) -> None:
    with pytest.raises(UserInputError, match="loss.ds: needs camera images"):
        StudentConfig.from_dict({"modality": "radar"})
    with pytest.raises(UserInputError, match="model.modality"):
        StudentConfig.from_dict({"modality": "sonar"})
    cfg = _config().student
    store = CacheReader(train_cache).config
    cfg.check_store(store, "cache")
    with pytest.raises(UserInputError, match="lacks"):
        cfg.check_store(replace(store, groups=tuple(g for g in store.groups if g != "radar")), "cache")
    with pytest.raises(UserInputError, match="model.radar.sweeps=3"):
        cfg.check_store(replace(store, radar_sweeps=3), "cache")
    with pytest.raises(UserInputError, match="--dataroot: required for the camera student"):
        train(train_cache, None, TrainConfig.from_dict({"model": {}}), "unused")
