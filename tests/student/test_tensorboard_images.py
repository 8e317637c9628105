"""TensorBoard pictures of a training step (student.tensorboard_images), held to pixels."""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from cache_schema.grid import BevGrid
from detection.pictures import colorize
from student.batch import StudentBatch, TeacherTargets
from student.models.student import StudentOutputs
from student.tensorboard_images import training_images

GRID = BevGrid((-25.6, -25.6, -5.0, 25.6, 25.6, 3.0), (0.2, 0.2, 8.0), 4)  # 64 x 64 cells of 0.8 m


def _enlarged_cell(image: np.ndarray, factor: int, panel: int, width: int, row: int, col: int) -> np.ndarray:
    return image[row * factor, panel * (width * factor + 2) + col * factor]

def test_training_images_show_student_teacher_and_gt_side_by_side():
    from student.config import StudentConfig

    cfg = StudentConfig(point_cloud_range=GRID.point_cloud_range, voxel_size=GRID.voxel_size,
                        out_size_factor=GRID.out_size_factor)
    h, w = GRID.shape
    gt = torch.tensor([[6.3, -4.1, -0.7, 4.2, 1.9, 1.6, 0.4, 0.0, 0.0]])
    col, row = [int(v) for v in box_regression_cell(gt)]
    teacher_heat = torch.zeros(1, 10, h, w)
    teacher_heat[0, 0, 7, 9] = 1.0
    heads = [{"heatmap": torch.full((1, len(t), h, w), -20.0)} for t in cfg.class_setup.tasks]
    outputs = StudentOutputs(pv_features=torch.zeros(6, 8, 4, 8), depth_logits=torch.zeros(6, 112, 4, 8),
                             bev_view=torch.zeros(1, 8, h, w), bev_features=torch.randn(1, 8, h, w),
                             head_outputs=heads)
    depth = torch.zeros(1, 6, 4, 8)
    depth[0, 0, 1, 2] = 30.0
    batch = StudentBatch(images=torch.zeros(1, 6, 3, 64, 128), intrinsics=torch.eye(3).expand(1, 6, 3, 3),
                         cam2lidar=torch.eye(4).expand(1, 6, 4, 4), ida=torch.eye(3).expand(1, 6, 3, 3),
                         bda=torch.eye(4)[None], gt_boxes=[gt], gt_labels=[torch.tensor([0])], depth_targets=depth,
                         teacher=TeacherTargets(bev_features=torch.randn(1, 16, h, w), heatmaps=teacher_heat))
    images = training_images(outputs, batch, cfg)
    assert set(images) == {"bev/heatmaps", "bev/features", "camera/depth"}
    heat = images["bev/heatmaps"]
    factor = 256 // h
    assert heat.shape == (h * factor, 3 * w * factor + 4, 3)
    peak = colorize(np.ones((1, 1)), 0, 1)[0, 0]
    # Rows are flipped so y points up: BEV row r is picture row (h - 1 - r).
    assert (_enlarged_cell(heat, factor, 1, w, h - 1 - 7, 9) == peak).all()       # teacher's one hot cell
    assert (_enlarged_cell(heat, factor, 2, w, h - 1 - row, col) == peak).all()   # GT Gaussian's centre
    assert not (_enlarged_cell(heat, factor, 0, w, h - 1 - row, col) == peak).all()  # student: nothing yet
    dep = images["camera/depth"]
    f = 256 // 4
    assert (dep[1 * f, (8 * f + 2) + 2 * f] == colorize(np.array([[30.0]]), 0, 58.0, "turbo")[0, 0]).all()
    assert dep[0, 8 * f + 2].sum() == 0  # no target there: black

def box_regression_cell(box: torch.Tensor) -> tuple[int, int]:
    from detection.centerpoint_coder import encode_boxes

    cells, _, _ = encode_boxes(box, GRID)
    return tuple(cells[0].tolist())

def test_train_writes_tensorboard_images_every_k_steps(train_cache, synthetic_dataroot, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from student.train_config import load_train_config

    from student.train import train
    from tests.student.run_paths import TINY_YAML

    cfg = load_train_config(TINY_YAML, ["train.steps=2", "train.image_every=2", "loss.xis.enabled=false"])
    train(train_cache, synthetic_dataroot, cfg, tmp_path / "run", progress=False)
    ea = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"images": 0})
    ea.Reload()
    assert set(ea.Tags()["images"]) == {"bev/heatmaps", "bev/features", "camera/depth"}
    events = ea.Images("bev/heatmaps")
    assert [e.step for e in events] == [2]
    picture = np.asarray(Image.open(io.BytesIO(events[0].encoded_image_string)))
    assert picture.shape[0] == events[0].height and picture.std() > 0

    # Off by default.
    cfg = load_train_config(TINY_YAML, ["train.steps=1", "loss.xis.enabled=false"])
    train(train_cache, synthetic_dataroot, cfg, tmp_path / "run2", progress=False)
    ea = EventAccumulator(str(tmp_path / "run2" / "tensorboard"), size_guidance={"images": 0})
    ea.Reload()
    assert ea.Tags()["images"] == []
