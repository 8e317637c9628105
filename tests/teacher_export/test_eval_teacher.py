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
from student.targets import build_det_targets


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
        n = int(s["gt/count"])
        boxes = torch.from_numpy(np.asarray(s["gt/boxes"][:n], np.float32))
        labels = torch.from_numpy(np.asarray(s["gt/labels"][:n], np.int64))
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
