"""Image-space augmentation: one 3x3 matrix `ida` per draw.

Resize -> crop -> horizontal flip -> rotation act as one 3x3 matrix `ida` on homogeneous pixel
coordinates of the original image (pixel column i has its centre at u = i). The intrinsics of the
augmented image are `ida @ K`, and depth targets / 2D teacher boxes are carried into the augmented image
with the same matrix. BEV augmentation is `detection.bev_aug`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


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
    """Apply `params` to `image` [C, H0, W0] (uint8 or float). Returns (augmented [C, H, W] float32,
    ida [3, 3]).

    The resize is an antialiased interpolation; crop, flip and rotation are one exact warp of the
    resized image, so the returned matrix is what the pixels actually went through. A uint8 image is
    resized as uint8 (torch's fixed-point kernel, several times faster than converting the full-size
    image to float first; it rounds the resized pixels to whole levels, within one level of the float
    result) and only the resized image becomes float."""
    original_hw = (image.shape[-2], image.shape[-1])
    rh, rw = _resized_hw(original_hw, params.resize)
    resized = F.interpolate(image[None], size=(rh, rw), mode="bilinear", align_corners=False,
                            antialias=True)[0].float()
    ida = image_aug_matrix(params, original_hw)
    # The warp applies what is left after the resize (crop, flip, rotation), as one affine map from the
    # output's normalised coordinates (grid_sample's, align_corners=False) to the resized image's.
    rest_inv = torch.linalg.inv(ida.double() @ torch.linalg.inv(_resize_matrix(original_hw, params.resize)))
    fh, fw = params.final_size
    from_output = torch.tensor([[fw / 2, 0, (fw - 1) / 2], [0, fh / 2, (fh - 1) / 2], [0, 0, 1]], dtype=torch.float64)
    to_input = torch.tensor([[2 / rw, 0, 1 / rw - 1], [0, 2 / rh, 1 / rh - 1], [0, 0, 1]], dtype=torch.float64)
    theta = (to_input @ rest_inv @ from_output)[:2].float()
    # affine_grid's own kernel is slower on the CPU than these two outer sums
    xs = (2 * torch.arange(fw, dtype=torch.float32) + 1) / fw - 1
    ys = ((2 * torch.arange(fh, dtype=torch.float32) + 1) / fh - 1)[:, None]
    grid = torch.stack([theta[0, 0] * xs + (theta[0, 1] * ys + theta[0, 2]),
                        theta[1, 0] * xs + (theta[1, 1] * ys + theta[1, 2])], -1)
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
