"""Instance masks: paste the image teacher's 28×28 box-relative masks into the (augmented) image.

The cache keeps each detection's mask as the Mask R-CNN head's 28×28 probabilities over its box (a
fraction of the size of a full-resolution mask); the student pastes them when it builds X-IS targets,
at whatever resolution, crop, flip and rotation its augmentation produced.

Convention: boxes are x1 y1 x2 y2 in continuous pixel coordinates of the ORIGINAL image (the image
spans [0, W] × [0, H]) and pixel (i, j) is the unit square whose centre is (j + 0.5, i + 0.5). A pixel
of the target image is carried back to the original image through ida^-1; it belongs to a box when that
point lies in [x1, x2) × [y1, y2), and its value is the mask bilinearly sampled there, the 28×28 mask
cells tiling the box evenly and values beyond the outer cell centres held at the border. So a mask of
ones fills exactly the pixels whose centres are inside the box, and everything outside stays 0; with
an augmentation, flips and rotations move the mask content, not only its box.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def paste_masks(masks: torch.Tensor | np.ndarray, boxes: torch.Tensor | np.ndarray,
                image_hw: tuple[int, int], ida: torch.Tensor | np.ndarray | None = None
                ) -> torch.Tensor | np.ndarray:
    """Paste (M, m, m) box-relative mask probabilities into (M, H, W) image-sized maps.

    boxes are (M, 4) x1 y1 x2 y2 in the original image's pixels (they may reach outside it; the
    outside part is cut off). `ida` (3, 3) maps original pixel coordinates (centres at integers) to the
    target image's (student.image_aug); None = the target image is the original. Returns float32, as a
    numpy array when `masks` is one, else a tensor on its device. Threshold (e.g. > 0.5) for binary masks.
    """
    as_numpy = isinstance(masks, np.ndarray)
    masks_t = torch.as_tensor(masks, dtype=torch.float32)
    boxes_t = torch.as_tensor(boxes, dtype=torch.float32, device=masks_t.device).reshape(-1, 4)
    if masks_t.ndim != 3 or masks_t.shape[1] != masks_t.shape[2] or masks_t.shape[0] != boxes_t.shape[0]:
        raise ValueError(f"paste_masks: expected (M, m, m) masks and (M, 4) boxes, got {tuple(masks_t.shape)} "
                         f"and {tuple(boxes_t.shape)}")
    h, w = int(image_hw[0]), int(image_hw[1])
    if masks_t.shape[0] == 0:
        out = masks_t.new_zeros(0, h, w)
        return out.cpu().numpy() if as_numpy else out
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float64, device=masks_t.device),
                          torch.arange(w, dtype=torch.float64, device=masks_t.device), indexing="ij")
    pix = torch.stack([u, v, torch.ones_like(u)], -1)
    if ida is not None:
        inv = torch.linalg.inv(torch.as_tensor(ida, dtype=torch.float64, device=masks_t.device))
        pix = pix @ inv.T
        pix = pix / pix[..., 2:]
    # ida works on pixel-centre-at-integer coordinates, boxes on continuous ones (centre at +0.5).
    x = (pix[..., 0] + 0.5).float()[None]
    y = (pix[..., 1] + 0.5).float()[None]
    bx1, by1, bx2, by2 = (boxes_t[:, i, None, None] for i in range(4))
    gx = 2 * (x - bx1) / (bx2 - bx1).clamp_min(1e-6) - 1
    gy = 2 * (y - by1) / (by2 - by1).clamp_min(1e-6) - 1
    inside = (x >= bx1) & (x < bx2) & (y >= by1) & (y < by2)
    # align_corners=False puts mask cell k's centre at box fraction (k + 0.5) / m; "border" holds the
    # values beyond the outer cell centres.
    pasted = F.grid_sample(masks_t[:, None], torch.stack([gx, gy], -1), mode="bilinear",
                           padding_mode="border", align_corners=False)[:, 0]
    pasted = pasted * inside
    return pasted.cpu().numpy() if as_numpy else pasted
