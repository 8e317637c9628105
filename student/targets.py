"""Training targets the student builds itself: CenterPoint heatmaps/regression from GT boxes, and
depth-bin targets from the cached sparse LiDAR depth images."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cache_schema.grid import BevGrid, ClassSetup


# ------------------------------------------------------------------------------ CenterPoint det ---

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


def box_regression_target(boxes: torch.Tensor, grid: BevGrid) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For boxes [M, 9]: (integer centre cells [M, 2] as (col, row), 10-channel targets [M, 10],
    mask [M] of centres inside the grid)."""
    r = grid.point_cloud_range
    cx, cy = grid.cell_size
    h, w = grid.shape
    gx = (boxes[:, 0] - r[0]) / cx
    gy = (boxes[:, 1] - r[1]) / cy
    ix, iy = torch.floor(gx), torch.floor(gy)
    inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
    target = torch.stack([
        gx - ix, gy - iy, boxes[:, 2],
        *boxes[:, 3:6].clamp_min(1e-6).log().unbind(1),
        boxes[:, 6].sin(), boxes[:, 6].cos(), boxes[:, 7], boxes[:, 8]], 1)
    return torch.stack([ix, iy], 1).long(), target, inside


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
            cells, target, inside = box_regression_target(boxes.float(), grid)
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


# -------------------------------------------------------------------------------------- depth ---

def depth_image_to_feature_grid(depth: torch.Tensor, ida: torch.Tensor, depth_stride: int,
                                feature_hw: tuple[int, int], feature_stride: int = 16) -> torch.Tensor:
    """Carry cached sparse depth images into the student's feature grid of the augmented image.

    depth: [N, Hd, Wd] metres at the ORIGINAL image size divided by `depth_stride`, 0 = no LiDAR
    point. Cell (r, c) stands for the original pixel (c * s + (s - 1) / 2, r * s + (s - 1) / 2).
    ida: [N, 3, 3] image augmentation. Returns [N, h, w]: per stride-`feature_stride` cell of the
    augmented image the nearest depth that lands in it (0 where none does)."""
    n, hd, wd = depth.shape
    h, w = feature_hw
    out = torch.full((n, h * w), float("inf"), dtype=depth.dtype, device=depth.device)
    for i in range(n):
        rows, cols = torch.nonzero(depth[i] > 0, as_tuple=True)
        if rows.numel() == 0:
            continue
        s = depth_stride
        uv1 = torch.stack([cols * s + (s - 1) / 2, rows * s + (s - 1) / 2, torch.ones_like(rows, dtype=depth.dtype)], 1)
        p = uv1.to(ida.dtype) @ ida[i].T
        u, v = p[:, 0] / p[:, 2], p[:, 1] / p[:, 2]
        # Feature cell j covers augmented pixel centres j*stride .. (j+1)*stride - 1.
        j = torch.floor((u + 0.5) / feature_stride)
        k = torch.floor((v + 0.5) / feature_stride)
        keep = (j >= 0) & (j < w) & (k >= 0) & (k < h)
        idx = (k[keep] * w + j[keep]).long()
        out[i].scatter_reduce_(0, idx, depth[i][rows[keep], cols[keep]], reduce="amin", include_self=True)
    out[torch.isinf(out)] = 0
    return out.view(n, h, w)


def depth_bin_onehot(depth: torch.Tensor, d_bound: tuple[float, float, float]) -> torch.Tensor:
    """One-hot depth bins [..., D, h, w] from metric depth [..., h, w]; all-zero where the depth is 0
    or outside [d_min, d_max). Bin k covers [d_min + k*step, d_min + (k+1)*step)."""
    lo, hi, step = d_bound
    n_bins = int(round((hi - lo) / step))
    k = torch.floor((depth - lo) / step)
    valid = (depth > 0) & (k >= 0) & (k < n_bins)
    onehot = torch.nn.functional.one_hot(torch.where(valid, k, 0).long(), n_bins).to(depth.dtype)
    onehot = onehot * valid[..., None].to(depth.dtype)
    return onehot.movedim(-1, -3)
