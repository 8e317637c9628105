"""Instance masks: paste the image teacher's 28×28 box-relative masks into the image.

The cache keeps each detection's mask as the Mask R-CNN head's 28×28 probabilities over its box (a
fraction of the size of a full-resolution mask); the student pastes them when it loads a sample, at
whatever resolution and crop its augmentation produced, by transforming the boxes first.

Convention: boxes are x1 y1 x2 y2 in continuous pixel coordinates (the image spans [0, W] × [0, H]) and
pixel (i, j) is the unit square whose centre is (j + 0.5, i + 0.5). A pixel belongs to a box when its
centre lies in [x1, x2) × [y1, y2); its value is the mask bilinearly sampled at that centre, the 28×28
mask cells tiling the box evenly and values beyond the outer cell centres held at the border. So a mask
of ones fills exactly the pixels whose centres are inside the box, and everything outside stays 0.
"""
from __future__ import annotations

import numpy as np
import torch


def _resample_matrix(lo: torch.Tensor, hi: torch.Tensor, n_out: int, m: int) -> torch.Tensor:
    """(K, n_out, m) linear-interpolation weights from m mask cells spanning [lo, hi) to n_out pixel
    centres, zero rows for pixels outside [lo, hi). Bilinear sampling is separable, so pasting is two
    small matrix products per mask instead of a per-pixel grid over the whole image."""
    centres = torch.arange(n_out, dtype=lo.dtype, device=lo.device) + 0.5
    extent = (hi - lo).clamp_min(1e-6)
    # Position in mask-cell units where cell k's centre sits at k (hence the -0.5).
    pos = ((centres[None] - lo[:, None]) / extent[:, None] * m - 0.5).clamp(0, m - 1)
    i0 = pos.floor().long()
    frac = pos - i0
    i1 = (i0 + 1).clamp(max=m - 1)
    weights = torch.zeros(lo.shape[0], n_out, m, dtype=lo.dtype, device=lo.device)
    weights.scatter_add_(2, i0[..., None], (1 - frac)[..., None])
    weights.scatter_add_(2, i1[..., None], frac[..., None])
    inside = (centres[None] >= lo[:, None]) & (centres[None] < hi[:, None])
    return weights * inside[..., None]


def paste_masks(masks: torch.Tensor | np.ndarray, boxes: torch.Tensor | np.ndarray,
                image_hw: tuple[int, int]) -> torch.Tensor | np.ndarray:
    """Paste (M, m, m) box-relative mask probabilities into (M, H, W) image-sized maps.

    boxes are (M, 4) x1 y1 x2 y2 in the target image's pixels (they may reach outside it; the outside
    part is cut off). Returns float32, as a numpy array when `masks` is one, else a tensor on its device.
    Threshold the result (e.g. > 0.5) for binary masks.
    """
    as_numpy = isinstance(masks, np.ndarray)
    masks_t = torch.as_tensor(masks, dtype=torch.float32)
    boxes_t = torch.as_tensor(boxes, dtype=torch.float32, device=masks_t.device).reshape(-1, 4)
    if masks_t.ndim != 3 or masks_t.shape[1] != masks_t.shape[2] or masks_t.shape[0] != boxes_t.shape[0]:
        raise ValueError(f"paste_masks: expected (M, m, m) masks and (M, 4) boxes, got {tuple(masks_t.shape)} "
                         f"and {tuple(boxes_t.shape)}")
    h, w = int(image_hw[0]), int(image_hw[1])
    m = masks_t.shape[1]
    rows = _resample_matrix(boxes_t[:, 1], boxes_t[:, 3], h, m)  # (M, H, m)
    cols = _resample_matrix(boxes_t[:, 0], boxes_t[:, 2], w, m)  # (M, W, m)
    pasted = rows @ masks_t @ cols.transpose(1, 2)
    return pasted.cpu().numpy() if as_numpy else pasted
