"""Image-space and BEV-space augmentation, each returning the matrix it applied.

Image augmentation (resize -> crop -> horizontal flip -> rotation) is one 3x3 matrix `ida` acting on
homogeneous pixel coordinates of the original image (pixel column i has its centre at u = i). The
intrinsics of the augmented image are `ida @ K`, and depth targets / 2D teacher boxes are carried
into the augmented image with the same matrix.

BEV augmentation (rotation about z, scale, flips of x and/or y) is one 4x4 matrix `bda` acting on
LiDAR-frame points. It moves the GT boxes, the frustum geometry of the student (so the BEV features
the head sees are augmented) and the cached teacher maps. Teacher regression maps are not images: a
warp moves them to the right cells, and then the channels are recomputed (sub-cell offsets from the
moved object centre, height, log-dims under scale, yaw sin/cos and velocity under the linear part).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cache_schema.grid import BevGrid, ClassSetup


# ----------------------------------------------------------------------------------------- image ---

@dataclass(frozen=True)
class ImageAugConfig:
    """Random image augmentation (BEVDepth's recipe): resize by a factor, crop to `final_size`
    (vertically from the bottom, keeping the road), flip, rotate. `train=False` sampling uses the
    mean resize, a centred bottom crop, no flip and no rotation."""

    final_size: tuple[int, int] = (256, 704)  # (H, W)
    resize_lim: tuple[float, float] = (0.386, 0.55)
    bot_pct_lim: tuple[float, float] = (0.0, 0.0)
    rot_lim: tuple[float, float] = (-5.4, 5.4)  # degrees
    flip_prob: float = 0.5


@dataclass(frozen=True)
class ImageAugParams:
    """One draw of image augmentation; `image_aug_matrix` turns it into the 3x3 `ida`."""

    resize: float
    crop: tuple[int, int]  # (x0, y0) of the crop window in the resized image
    flip: bool
    rotate: float  # degrees, counter-clockwise as displayed
    final_size: tuple[int, int]  # (H, W)


def sample_image_aug(cfg: ImageAugConfig, original_hw: tuple[int, int], rng: np.random.Generator,
                     train: bool = True) -> ImageAugParams:
    """Draw augmentation parameters for an image of size `original_hw`."""
    h0, w0 = original_hw
    fh, fw = cfg.final_size
    if train:
        resize = float(rng.uniform(*cfg.resize_lim))
    else:
        resize = float(np.mean(cfg.resize_lim))
    rh, rw = round(h0 * resize), round(w0 * resize)
    bot = float(rng.uniform(*cfg.bot_pct_lim)) if train else float(np.mean(cfg.bot_pct_lim))
    y0 = int((1 - bot) * rh) - fh
    x0 = int(rng.integers(0, max(0, rw - fw) + 1)) if train else max(0, rw - fw) // 2
    flip = bool(train and rng.uniform() < cfg.flip_prob)
    rotate = float(rng.uniform(*cfg.rot_lim)) if train else 0.0
    return ImageAugParams(resize, (x0, y0), flip, rotate, (fh, fw))


def _resized_hw(original_hw: tuple[int, int], resize: float) -> tuple[int, int]:
    return round(original_hw[0] * resize), round(original_hw[1] * resize)


def _resize_matrix(original_hw: tuple[int, int], resize: float) -> torch.Tensor:
    """Resizing with pixel centres at integers: u' = (u + 0.5) * s - 0.5, with the exact factors of
    the rounded resized size."""
    h0, w0 = original_hw
    rh, rw = _resized_hw(original_hw, resize)
    sx, sy = rw / w0, rh / h0
    return torch.tensor([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]], dtype=torch.float64)


def image_aug_matrix(params: ImageAugParams, original_hw: tuple[int, int]) -> torch.Tensor:
    """The 3x3 matrix mapping original pixel (u, v, 1) to augmented pixel coordinates."""
    fh, fw = params.final_size
    resize = _resize_matrix(original_hw, params.resize)
    crop = torch.tensor([[1, 0, -params.crop[0]], [0, 1, -params.crop[1]], [0, 0, 1]], dtype=torch.float64)
    flip = torch.eye(3, dtype=torch.float64)
    if params.flip:
        flip = torch.tensor([[-1, 0, fw - 1], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)
    a = math.radians(params.rotate)
    cx, cy = (fw - 1) / 2, (fh - 1) / 2
    # Image y points down, so a counter-clockwise rotation on screen is [[c, s], [-s, c]].
    r = torch.tensor([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]], dtype=torch.float64)
    rot = torch.eye(3, dtype=torch.float64)
    rot[:2, :2] = r
    rot[:2, 2] = torch.tensor([cx, cy], dtype=torch.float64) - r @ torch.tensor([cx, cy], dtype=torch.float64)
    return (rot @ flip @ crop @ resize).float()


def augment_image(image: torch.Tensor, params: ImageAugParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply `params` to `image` [C, H0, W0] (float). Returns (augmented [C, H, W], ida [3, 3]).

    The resize is an antialiased interpolation; crop, flip and rotation are one exact warp of the
    resized image, so the returned matrix is what the pixels actually went through."""
    original_hw = (image.shape[-2], image.shape[-1])
    rh, rw = _resized_hw(original_hw, params.resize)
    resized = F.interpolate(image[None].float(), size=(rh, rw), mode="bilinear", align_corners=False,
                            antialias=True)[0]
    ida = image_aug_matrix(params, original_hw)
    # The warp applies what is left after the resize: crop, flip, rotation.
    rest_inv = torch.linalg.inv(ida.double() @ torch.linalg.inv(_resize_matrix(original_hw, params.resize))).float()
    fh, fw = params.final_size
    v, u = torch.meshgrid(torch.arange(fh, dtype=torch.float32), torch.arange(fw, dtype=torch.float32),
                          indexing="ij")
    src = torch.stack([u, v, torch.ones_like(u)], -1) @ rest_inv.T
    grid = torch.stack([(2 * src[..., 0] + 1) / rw - 1, (2 * src[..., 1] + 1) / rh - 1], -1)
    out = F.grid_sample(resized[None], grid[None], mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    return out, ida


def transform_boxes_2d(boxes: torch.Tensor, ida: torch.Tensor, image_hw: tuple[int, int] | None = None
                       ) -> torch.Tensor:
    """Move xyxy boxes [..., 4] through `ida`: the axis-aligned hull of the 4 moved corners, clipped
    to `image_hw` when given. Boxes are edges, not pixel centres: x1 is the left edge of its pixel."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    # Edges sit half a pixel outside the centres that ida maps.
    xs = torch.stack([x1, x2, x2, x1], -1) - 0.5
    ys = torch.stack([y1, y1, y2, y2], -1) - 0.5
    pts = torch.stack([xs, ys, torch.ones_like(xs)], -1) @ ida.to(boxes.dtype).T
    px, py = pts[..., 0] + 0.5, pts[..., 1] + 0.5
    out = torch.stack([px.amin(-1), py.amin(-1), px.amax(-1), py.amax(-1)], -1)
    if image_hw is not None:
        h, w = image_hw
        out = torch.stack([out[..., 0].clamp(0, w), out[..., 1].clamp(0, h),
                           out[..., 2].clamp(0, w), out[..., 3].clamp(0, h)], -1)
    return out


# ------------------------------------------------------------------------------------------- BEV ---

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


def _linear_scale(bda: torch.Tensor) -> torch.Tensor:
    """Isotropic scale of the xy part of `bda` [..., 4, 4] (rotations and flips have |det| = 1)."""
    return torch.linalg.det(bda[..., :2, :2]).abs().sqrt()


def augment_boxes(boxes: torch.Tensor, bda: torch.Tensor) -> torch.Tensor:
    """Apply `bda` [4, 4] to boxes [M, 9] (x, y, z, l, w, h, yaw, vx, vy)."""
    bda = bda.to(boxes.dtype)
    lin = bda[:2, :2]
    out = boxes.clone()
    centre = torch.cat([boxes[:, :3], torch.ones_like(boxes[:, :1])], 1) @ bda.T
    out[:, :3] = centre[:, :3]
    out[:, 3:6] = boxes[:, 3:6] * _linear_scale(bda)
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
    h, w = grid.shape
    cx, cy = grid.cell_size
    r = grid.point_cloud_range
    ys = r[1] + (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * cy
    xs = r[0] + (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * cx
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
    r = grid.point_cloud_range
    sx, sy = _source_points(bda, grid)
    norm = torch.stack([(sx - r[0]) / (r[3] - r[0]) * 2 - 1, (sy - r[1]) / (r[4] - r[1]) * 2 - 1], -1)
    return F.grid_sample(maps, norm.to(maps.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)


def _source_cells(bda: torch.Tensor, grid: BevGrid) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The source cell (column, row) of every output cell, each [B, H, W] float, and whether it is on
    the grid."""
    h, w = grid.shape
    r = grid.point_cloud_range
    sx, sy = _source_points(bda, grid)
    qj = torch.floor((sx - r[0]) / grid.cell_size[0])
    qi = torch.floor((sy - r[1]) / grid.cell_size[1])
    return qj, qi, (qj >= 0) & (qj < w) & (qi >= 0) & (qi < h)


def _gather_cells(maps: torch.Tensor, qj: torch.Tensor, qi: torch.Tensor) -> torch.Tensor:
    b, c, h, w = maps.shape
    flat = (qi.clamp(0, h - 1) * w + qj.clamp(0, w - 1)).long().view(b, 1, h * w)
    return maps.view(b, c, h * w).gather(2, flat.expand(b, c, h * w)).view(b, c, h, w)


def warp_task_map(task: torch.Tensor, bda: torch.Tensor, grid: BevGrid) -> torch.Tensor:
    """Move a per-cell task-group index map [B, H, W] (long) with the same nearest-cell rule as the
    regression maps, so the task a regression cell is read from is the one it was written from."""
    qj, qi, _ = _source_cells(bda, grid)
    return _gather_cells(task[:, None].float(), qj, qi)[:, 0].round().long()


def teacher_task_map(heatmaps: torch.Tensor, classes: ClassSetup) -> torch.Tensor:
    """[..., K, H, W] class heatmaps -> [..., H, W] task-group index of the best class at each cell:
    the group the LiDAR teacher took each cell's regression from (teacher_export's CenterPoint)."""
    task_of = torch.tensor([next(t for t, task in enumerate(classes.tasks) if c in task) for c in classes.classes],
                           device=heatmaps.device)
    return task_of[heatmaps.argmax(-3)]


def warp_regression_maps(reg: torch.Tensor, bda: torch.Tensor, grid: BevGrid) -> torch.Tensor:
    """Move CenterPoint regression maps [B, 10, H, W] into the augmented frame.

    Each output cell takes the channels of the source cell it lands in (nearest, not interpolated:
    neighbouring cells may describe different objects), then re-expresses them: the object centre
    (source cell corner + offset) is moved by `bda` and the new offset is taken from the output cell's
    corner; height follows bda's z row; log-dims gain log(scale); (cos, sin) of yaw and the velocity go
    through the linear xy part. Cells whose source lies outside the grid become 0."""
    b, c, h, w = reg.shape
    if c != 10:
        raise ValueError(f"regression maps need 10 channels, got {c}")
    r = grid.point_cloud_range
    cell_x, cell_y = grid.cell_size
    qj, qi, valid = _source_cells(bda, grid)
    src = _gather_cells(reg, qj, qi)
    bda = bda.to(reg.dtype)
    # Object centre in metres in the original frame.
    ox = r[0] + (qj + src[:, 0]) * cell_x
    oy = r[1] + (qi + src[:, 1]) * cell_y
    oz = src[:, 2]
    m = bda[:, :3, :, None, None]
    nx = m[:, 0, 0] * ox + m[:, 0, 1] * oy + m[:, 0, 2] * oz + m[:, 0, 3]
    ny = m[:, 1, 0] * ox + m[:, 1, 1] * oy + m[:, 1, 2] * oz + m[:, 1, 3]
    nz = m[:, 2, 0] * ox + m[:, 2, 1] * oy + m[:, 2, 2] * oz + m[:, 2, 3]
    out_j = torch.arange(w, device=reg.device, dtype=reg.dtype).view(1, 1, w)
    out_i = torch.arange(h, device=reg.device, dtype=reg.dtype).view(1, h, 1)
    lin = m[:, :2, :2]
    sin, cos = src[:, 6], src[:, 7]
    hc = lin[:, 0, 0] * cos + lin[:, 0, 1] * sin
    hs = lin[:, 1, 0] * cos + lin[:, 1, 1] * sin
    norm = torch.sqrt(hc ** 2 + hs ** 2).clamp_min(1e-12)
    vx, vy = src[:, 8], src[:, 9]
    out = torch.stack([
        (nx - r[0]) / cell_x - out_j,
        (ny - r[1]) / cell_y - out_i,
        nz,
        *(src[:, 3:6] + torch.log(_linear_scale(bda))[:, None, None, None]).unbind(1),
        hs / norm * torch.sqrt(sin ** 2 + cos ** 2),
        hc / norm * torch.sqrt(sin ** 2 + cos ** 2),
        lin[:, 0, 0] * vx + lin[:, 0, 1] * vy,
        lin[:, 1, 0] * vx + lin[:, 1, 1] * vy,
    ], 1)
    return out * valid[:, None].to(out.dtype)  # no teacher data where the source left the grid


def teacher_validity(bda: torch.Tensor, grid: BevGrid) -> torch.Tensor:
    """[B, 1, H, W] (or [1, H, W] for one bda [4, 4]): 1 where the cell's source lies on the grid, 0
    where a rotation or down-scaling brought in area the teacher never saw. The warped maps are zero
    there, and a zero there is no teacher answer: every KD term multiplies this into its weights (the
    cells whose regression `warp_regression_maps` zeroes, by the same rule)."""
    single = bda.dim() == 2
    bda_b = bda[None] if single else bda
    valid = _source_cells(bda_b, grid)[2].float()[:, None]
    return valid[0] if single else valid


def augment_teacher_maps(bda: torch.Tensor, grid: BevGrid, bev_features: torch.Tensor | None = None,
                         heatmaps: torch.Tensor | None = None, regression: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Apply one BEV augmentation to the cached teacher maps (batched [B, C, H, W] with bda [B, 4, 4],
    or single [C, H, W] with bda [4, 4]). Returns (bev_features, heatmaps, regression)."""
    single = bda.dim() == 2
    bda_b = bda[None] if single else bda

    def run(x, fn):
        if x is None:
            return None
        y = fn(x[None] if single else x, bda_b, grid)
        return y[0] if single else y

    return run(bev_features, warp_bev_maps), run(heatmaps, warp_bev_maps), run(regression, warp_regression_maps)
