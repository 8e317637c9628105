"""x3kd-cache eval-teacher lidar: a teacher whose cached maps encode the GT boxes scores ~1."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
import zarr
from click.testing import CliRunner

from cache_schema import CacheReader
from pipelines.cli import main
from detection.det_targets import build_det_targets


def _gt_perfect_copy(cache: str, out: Path) -> None:
    """The cache with its teacher heatmaps and regression maps replaced by the GT boxes' CenterPoint
    encoding (peak 1 at each centre cell, the regression written there)."""
    shutil.copytree(cache, out)
    reader = CacheReader(str(out))
    cfg = reader.config
    root = zarr.open_group(str(out), mode="r+")
    heat_arr, reg_arr = root["lidar_teacher/heatmaps"], root["lidar_teacher/regression"]
    h, w = cfg.grid.shape
    for i in range(len(reader)):
        s = reader[i]
        n = int(s.gt.count)
        boxes = torch.from_numpy(np.asarray(s.gt.boxes[:n], np.float32))
        labels = torch.from_numpy(np.asarray(s.gt.labels[:n], np.int64))
        targets = build_det_targets([boxes], [labels], cfg.grid, cfg.classes)
        heat = np.zeros((cfg.num_classes, h, w), np.float32)
        reg = np.zeros((10, h, w), np.float32)
        for task, t in zip(cfg.classes.tasks, targets):
            for k, name in enumerate(task):
                heat[cfg.classes.classes.index(name)] = t.heatmap[0, k].numpy()
            rows, cols = (t.cell_index // w).numpy(), (t.cell_index % w).numpy()
            reg[:, rows, cols] = t.box_target.T.numpy()
        heat_arr[i] = heat.astype(np.float16)
        reg_arr[i] = reg.astype(np.float16)


def test_gt_perfect_teacher_scores_about_one_and_a_random_one_does_not(val_cache, synthetic_dataroot, tmp_path):
    perfect = tmp_path / "perfect.zarr"
    _gt_perfect_copy(val_cache, perfect)
    runner = CliRunner()
    scores = {}
    for name, cache in (("perfect", str(perfect)), ("random", val_cache)):
        out = tmp_path / name
        result = runner.invoke(main, ["eval-teacher", "lidar", "--cache", cache, "--dataroot", str(synthetic_dataroot),
                                      "--version", "v1.0-mini", "--split", "mini_val", "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert "mAP" in result.output
        scores[name] = json.loads((out / "metrics.json").read_text())
    # The test teacher's grid covers +-25.6 m: classes whose GT all lie on it score ~1 (the rest keep
    # their far boxes unmatched), a randomly initialised teacher scores nothing.
    perfect = scores["perfect"]["per_class_AP"]
    assert sum(ap > 0.95 for ap in perfect.values()) >= 4, perfect
    assert scores["random"]["mAP"] < 0.05 < scores["perfect"]["mAP"]


def test_eval_teacher_refusals(train_cache, synthetic_dataroot, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["eval-teacher", "lidar", "--cache", train_cache, "--dataroot", str(synthetic_dataroot),
                                  "--version", "v1.0-mini", "--split", "mini_val", "--out", str(tmp_path / "e")])
    assert result.exit_code == 2 and "is an export of split 'mini_train'" in result.output
    result = runner.invoke(main, ["eval-teacher", "lidar", "--cache", str(tmp_path / "missing.zarr"),
                                  "--dataroot", str(synthetic_dataroot), "--version", "v1.0-mini", "--split",
                                  "mini_val", "--out", str(tmp_path / "e")])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1


def _gt_perfect_image_copy(cache: str, out: Path) -> int:
    """The cache with its image-teacher detections replaced by the projected GT instances (score 1,
    masks resampled into their boxes); returns how many GT instances did not fit max_instances."""
    from PIL import Image

    from dataset_access.projection import project_boxes

    shutil.copytree(cache, out)
    reader = CacheReader(str(out))
    cfg = reader.config
    h, w = cfg.image_size
    root = zarr.open_group(str(out), mode="r+")
    dropped = 0
    # Read every sample before writing any: a write rewrites its shard, and the reader keeps the shard
    # indices it has read.
    originals = [reader[i] for i in range(len(reader))]
    for i, s in enumerate(originals):
        n = int(s.gt.count)
        to_cams = np.linalg.inv(s.calib.camera_to_lidar())
        boxes = np.zeros((cfg.num_cameras, cfg.max_instances, 4), np.float32)
        labels = np.full((cfg.num_cameras, cfg.max_instances), -1, np.int16)
        scores = np.zeros((cfg.num_cameras, cfg.max_instances), np.float32)
        masks = np.zeros((cfg.num_cameras, cfg.max_instances, cfg.mask_size, cfg.mask_size), np.uint8)
        for c in range(cfg.num_cameras):
            gt = project_boxes(np.asarray(s.gt.boxes)[:n], np.asarray(s.gt.labels)[:n], to_cams[c],
                               np.asarray(s.calib.cam_intrinsics[c]), (w, h))
            dropped += max(0, len(gt.boxes) - cfg.max_instances)
            for k, (box, label, mask) in enumerate(zip(gt.boxes[:cfg.max_instances], gt.labels, gt.masks)):
                boxes[c, k], labels[c, k], scores[c, k] = box, label, 1.0 - 0.01 * k
                crop = Image.fromarray(mask * 255).crop(tuple(float(v) for v in box))
                masks[c, k] = np.asarray(crop.resize((cfg.mask_size, cfg.mask_size), Image.BILINEAR))
        for key, value in (("boxes", boxes), ("labels", labels), ("scores", scores), ("masks", masks)):
            root[f"image_teacher/{key}"][i] = value
    return dropped


def test_gt_perfect_image_teacher_scores_about_one(val_cache, tmp_path):
    perfect = tmp_path / "perfect.zarr"
    dropped = _gt_perfect_image_copy(val_cache, perfect)
    runner = CliRunner()
    scores = {}
    for name, cache in (("perfect", str(perfect)), ("random", val_cache)):
        result = runner.invoke(main, ["eval-teacher", "image", "--cache", cache, "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        assert "| mask |" in result.output
        scores[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    p, r = scores["perfect"], scores["random"]
    assert dropped == 0 and p["gt_instances"] == p["detections"] > 0
    assert p["bbox"]["AP"] > 0.99 and p["segm"]["AP50"] > 0.99  # 28x28 masks: mask AP at IoU 0.5 only
    assert r["gt_instances"] == p["gt_instances"] and r["bbox"]["AP50"] < 0.2
