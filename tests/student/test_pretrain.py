"""x3kd-student pretrain-backbone: object crops from a dataset's cameras labelled by its GT boxes, a
classifier trained on them, a backbone file the student's config loads."""
from __future__ import annotations

import numpy as np
import torch
from click.testing import CliRunner

from student.cli import main
from student.models.image_backbone import ImageBackbone
from student.pretrain import BACKGROUND, PretrainOptions, collect_crops
from tests.student.run_paths import TINY_YAML


def test_crops_are_labelled_by_the_gt_boxes_and_background_is_empty(synthetic_dataroot):
    options = PretrainOptions(dataroot=str(synthetic_dataroot), version="v1.0-mini", out="x", split="mini_train",
                              crop_size=24, min_box_pixels=4, limit=2)
    crops = collect_crops(options, "mini_train", np.random.default_rng(0), progress=False)
    assert crops.images.shape[1:] == (24, 24, 3) and crops.images.dtype == np.uint8
    objects = crops.labels != BACKGROUND
    assert objects.sum() > 0 and (~objects).sum() == 2 * 2 * 6  # two background windows per camera image
    assert set(crops.labels[objects]) <= set(range(BACKGROUND))
    # an object crop shows a rendered object, a background crop mostly the plain synthetic ground and sky
    assert crops.images[objects].std() > 0


def test_the_command_writes_weights_the_config_loads(synthetic_dataroot, tmp_path):
    out = tmp_path / "backbone.pth"
    r = CliRunner().invoke(main, ["pretrain-backbone", "--dataroot", str(synthetic_dataroot), "--version", "v1.0-mini",
                                  "--split", "mini_train", "--val-split", "mini_val", "--config", str(TINY_YAML),
                                  "--out", str(out), "--steps", "3", "--batch-size", "8", "--crop-size", "32",
                                  "--limit", "2"])
    assert r.exit_code == 0, r.output
    assert "held-out top-1" in r.output
    saved = torch.load(out, weights_only=True)
    backbone = ImageBackbone(18, 32, weights=str(out), neck="fpn")  # configs/tiny.yaml's ResNet-18
    assert torch.equal(backbone.layer1[0].conv1.weight, saved["state_dict"]["layer1.0.conv1.weight"])
    assert saved["pretraining"]["steps"] == 3 and 0 <= saved["pretraining"]["train_accuracy"] <= 1


def test_a_split_without_boxes_is_one_line(synthetic_dataroot, tmp_path):
    r = CliRunner().invoke(main, ["pretrain-backbone", "--dataroot", str(tmp_path), "--version", "v1.0-mini",
                                  "--config", str(TINY_YAML), "--out", str(tmp_path / "b.pth")])
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
