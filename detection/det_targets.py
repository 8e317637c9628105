"""CenterPoint detection targets the student (and the LiDAR teacher's fitting) build from GT boxes:
per task group a Gaussian heatmap per class and, at each object's centre cell, its 10-channel regression
target in the coder's layout (`detection.centerpoint_coder.encode_boxes`)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cache_schema.grid import BevGrid, ClassSetup

from detection.centerpoint_coder import encode_boxes


def gaussian_radius(height: float, width: float, min_overlap: float = 0.1) -> float:
    """CornerNet's Gaussian radius for an object of `height` x `width` cells: the largest corner
    displacement that keeps IoU >= `min_overlap`, taken as the smallest root of three cases (both
    corners inside, both outside, one of each). Kept in the form CenterPoint trains with, so that
    student targets match the teacher's."""
    o = min_overlap
    roots = []
    for a, b, c in ((1.0, height + width, width * height * (1 - o) / (1 + o)),
                    (4.0, 2 * (height + width), (1 - o) * width * height),
                    (4 * o, -2 * o * (height + width), (o - 1) * width * height)):
        roots.append((b + math.sqrt(b * b - 4 * a * c)) / 2)
    return min(roots)


def draw_gaussian(heatmap: torch.Tensor, centre: tuple[int, int], radius: int) -> None:
    """Max-blend a Gaussian of `radius` cells (sigma = diameter / 6) centred on integer cell
    `centre` = (col, row) into `heatmap` [H, W], in place."""
    diameter = 2 * radius + 1
    sigma = diameter / 6
    offs = torch.arange(-radius, radius + 1, dtype=heatmap.dtype, device=heatmap.device)
    g = torch.exp(-(offs[None, :] ** 2 + offs[:, None] ** 2) / (2 * sigma * sigma))
    g[g < torch.finfo(g.dtype).eps * g.max()] = 0
    x, y = centre
    h, w = heatmap.shape
    left, right = min(x, radius), min(w - x, radius + 1)
    top, bottom = min(y, radius), min(h - y, radius + 1)
    if left + right <= 0 or top + bottom <= 0:
        return
    window = heatmap[y - top:y + bottom, x - left:x + right]
    torch.maximum(window, g[radius - top:radius + bottom, radius - left:radius + right], out=window)


@dataclass
class TaskTargets:
    """Targets of one task group for a batch.

    heatmap:     [B, n_classes_in_task, H, W] GT Gaussians.
    batch_index: [P] which sample each object belongs to.
    cell_index:  [P] flat cell (row * W + col) of each object's centre.
    box_target:  [P, 10] reg_x, reg_y, z, log l, log w, log h, sin yaw, cos yaw, vx, vy.
    """

    heatmap: torch.Tensor
    batch_index: torch.Tensor
    cell_index: torch.Tensor
    box_target: torch.Tensor


def build_det_targets(gt_boxes: list[torch.Tensor], gt_labels: list[torch.Tensor], grid: BevGrid,
                      classes: ClassSetup, min_overlap: float = 0.1, min_radius: int = 2
                      ) -> list[TaskTargets]:
    """CenterPoint targets per task group from per-sample GT boxes [M, 9] and labels [M] (indices into
    `classes.classes`). Objects whose centre falls outside the grid are dropped."""
    h, w = grid.shape
    cx, cy = grid.cell_size
    device = gt_boxes[0].device if gt_boxes else torch.device("cpu")
    out = []
    for task in classes.tasks:
        task_ids = [classes.classes.index(c) for c in task]
        heat = torch.zeros(len(gt_boxes), len(task), h, w, device=device)
        b_idx, c_idx, tgt = [], [], []
        for b, (boxes, labels) in enumerate(zip(gt_boxes, gt_labels)):
            if boxes.numel() == 0:
                continue
            cells, target, inside = encode_boxes(boxes.float(), grid)
            for m in range(boxes.shape[0]):
                label = int(labels[m])
                if label not in task_ids or not bool(inside[m]):
                    continue
                length, width = float(boxes[m, 3]) / cx, float(boxes[m, 4]) / cy
                if length <= 0 or width <= 0:
                    continue
                radius = max(min_radius, int(gaussian_radius(width, length, min_overlap)))
                col, row = int(cells[m, 0]), int(cells[m, 1])
                draw_gaussian(heat[b, task_ids.index(label)], (col, row), radius)
                b_idx.append(b)
                c_idx.append(row * w + col)
                tgt.append(target[m])
        out.append(TaskTargets(
            heat,
            torch.tensor(b_idx, dtype=torch.long, device=device),
            torch.tensor(c_idx, dtype=torch.long, device=device),
            torch.stack(tgt) if tgt else torch.zeros(0, 10, device=device)))
    return out


def merge_det_targets(per_sample: list[list[TaskTargets]]) -> list[TaskTargets]:
    """Targets built for one sample each (batch index 0) -> the batch's, as `build_det_targets` would
    have built them for all samples at once. The dataset builds per sample in its workers, so the
    Python loop over objects never runs in the training step."""
    merged = []
    for task in zip(*per_sample):
        merged.append(TaskTargets(
            torch.cat([t.heatmap for t in task]),
            torch.cat([torch.full_like(t.batch_index, b) for b, t in enumerate(task)]),
            torch.cat([t.cell_index for t in task]),
            torch.cat([t.box_target for t in task])))
    return merged
