"""BEV-space augmentation: one 4x4 matrix `bda` per draw, and what moves with it.

Rotation about z, scale and flips of x and/or y are one 4x4 matrix `bda` acting on LiDAR-frame points.
It moves the GT boxes, the radar points, the frustum geometry of the student (so the BEV features the
head sees are augmented) and the cached teacher maps: dense maps (features, heatmaps) are resampled here;
the CenterPoint regression maps, which are not images, are re-expressed by the coder
(`detection.centerpoint_coder.warp_regression_maps`) on the same source cells. Image augmentation
is `student.image_aug`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cache_schema.grid import BevGrid


@dataclass(frozen=True)
class BevAugConfig:
    """Random BEV augmentation (BEVDepth's recipe)."""

    rot_lim: tuple[float, float] = (-22.5, 22.5)  # degrees
    scale_lim: tuple[float, float] = (0.95, 1.05)
    flip_x_prob: float = 0.5
    flip_y_prob: float = 0.5


def bev_aug_matrix(rotate: float = 0.0, scale: float = 1.0, flip_x: bool = False, flip_y: bool = False
                   ) -> torch.Tensor:
    """4x4 BEV augmentation: rotate by `rotate` degrees about z, scale, then negate x (`flip_x`)
    and/or y (`flip_y`)."""
    a = math.radians(rotate)
    rot = torch.eye(4, dtype=torch.float64)
    rot[:2, :2] = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float64)
    sc = torch.diag(torch.tensor([scale, scale, scale, 1.0], dtype=torch.float64))
    fl = torch.diag(torch.tensor([-1.0 if flip_x else 1.0, -1.0 if flip_y else 1.0, 1.0, 1.0], dtype=torch.float64))
    return (fl @ sc @ rot).float()


def sample_bev_aug(cfg: BevAugConfig, rng: np.random.Generator, train: bool = True) -> torch.Tensor:
    """Draw one BEV augmentation matrix (identity when not training)."""
    if not train:
        return torch.eye(4)
    return bev_aug_matrix(float(rng.uniform(*cfg.rot_lim)), float(rng.uniform(*cfg.scale_lim)),
                          bool(rng.uniform() < cfg.flip_x_prob), bool(rng.uniform() < cfg.flip_y_prob))


def linear_scale(bda: torch.Tensor) -> torch.Tensor:
    """Isotropic scale of the xy part of `bda` [..., 4, 4] (rotations and flips have |det| = 1)."""
    return torch.linalg.det(bda[..., :2, :2]).abs().sqrt()


def augment_boxes(boxes: torch.Tensor, bda: torch.Tensor) -> torch.Tensor:
    """Apply `bda` [4, 4] to boxes [M, 9] (x, y, z, l, w, h, yaw, vx, vy)."""
    bda = bda.to(boxes.dtype)
    lin = bda[:2, :2]
    out = boxes.clone()
    centre = torch.cat([boxes[:, :3], torch.ones_like(boxes[:, :1])], 1) @ bda.T
    out[:, :3] = centre[:, :3]
    out[:, 3:6] = boxes[:, 3:6] * linear_scale(bda)
    heading = torch.stack([boxes[:, 6].cos(), boxes[:, 6].sin()], 1) @ lin.T
    out[:, 6] = torch.atan2(heading[:, 1], heading[:, 0])
    out[:, 7:9] = boxes[:, 7:9] @ lin.T
    return out


def augment_radar_points(points: torch.Tensor, bda: torch.Tensor) -> torch.Tensor:
    """Apply `bda` [4, 4] to radar points [N, 7] (x, y, z, rcs, vx_comp, vy_comp, time_lag): positions
    as points, velocities like the boxes' (`augment_boxes`), so a point's Doppler keeps pointing along
    the motion of the box it lies on."""
    bda = bda.to(points.dtype)
    out = points.clone()
    out[:, :3] = points[:, :3] @ bda[:3, :3].T + bda[:3, 3]
    out[:, 4:6] = points[:, 4:6] @ bda[:2, :2].T
    return out


def _cell_centres(grid: BevGrid, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Metric (x, y) of every cell centre, each [H, W] (rows along y, columns along x)."""
    xs, ys = (torch.as_tensor(v, dtype=torch.float32, device=device) for v in grid.cell_centres())
    return torch.meshgrid(xs, ys, indexing="xy")


def _source_points(bda: torch.Tensor, grid: BevGrid) -> tuple[torch.Tensor, torch.Tensor]:
    """For every output cell centre, the un-augmented metric point it comes from: (x, y) each [B, H, W].

    BEV augmentations act on xy independently of z (rotation about z, scale, flips), so the inverse of
    the xy part is all a map warp needs."""
    x, y = _cell_centres(grid, bda.device)
    inv = torch.linalg.inv(bda[:, :2, :2].double()).float()
    dx, dy = x[None] - bda[:, 0, 3, None, None], y[None] - bda[:, 1, 3, None, None]
    sx = inv[:, 0, 0, None, None] * dx + inv[:, 0, 1, None, None] * dy
    sy = inv[:, 1, 0, None, None] * dx + inv[:, 1, 1, None, None] * dy
    return sx, sy


def warp_bev_maps(maps: torch.Tensor, bda: torch.Tensor, grid: BevGrid) -> torch.Tensor:
    """Bilinearly resample dense maps [B, C, H, W] (features, heatmaps) into the augmented frame."""
    h, w = grid.shape
    cj, ci = grid.cell_coords(*_source_points(bda, grid))
    norm = torch.stack([cj / w * 2 - 1, ci / h * 2 - 1], -1)  # grid_sample's [-1, 1] over the whole grid
    return F.grid_sample(maps, norm.to(maps.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)


def source_cells(bda: torch.Tensor, grid: BevGrid) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The source cell (column, row) of every output cell, each [B, H, W] float, and whether it is on
    the grid."""
    h, w = grid.shape
    qj, qi = (torch.floor(c) for c in grid.cell_coords(*_source_points(bda, grid)))
    return qj, qi, (qj >= 0) & (qj < w) & (qi >= 0) & (qi < h)


def gather_cells(maps: torch.Tensor, qj: torch.Tensor, qi: torch.Tensor) -> torch.Tensor:
    b, c, h, w = maps.shape
    flat = (qi.clamp(0, h - 1) * w + qj.clamp(0, w - 1)).long().view(b, 1, h * w)
    return maps.view(b, c, h * w).gather(2, flat.expand(b, c, h * w)).view(b, c, h, w)


def teacher_validity(bda: torch.Tensor, grid: BevGrid) -> torch.Tensor:
    """[B, 1, H, W] (or [1, H, W] for one bda [4, 4]): 1 where the cell's source lies on the grid, 0
    where a rotation or down-scaling brought in area the teacher never saw. The warped maps are zero
    there, and a zero there is no teacher answer: every KD term multiplies this into its weights (the
    cells whose regression `warp_regression_maps` zeroes, by the same rule)."""
    single = bda.dim() == 2
    bda_b = bda[None] if single else bda
    valid = source_cells(bda_b, grid)[2].float()[:, None]
    return valid[0] if single else valid
