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
    out = masks_t.new_zeros(masks_t.shape[0], h, w)
    if masks_t.shape[0] == 0:
        return out.cpu().numpy() if as_numpy else out
    ida_t = inv = None
    if ida is not None:
        ida_t = torch.as_tensor(ida, dtype=torch.float64, device=masks_t.device)
        inv = torch.linalg.inv(ida_t)
    # Only the pixels near each box can be inside it: the window of target pixels around the hull of
    # its four corners (moved by ida), a pixel wider on every side than rounding could need. Every
    # pixel of it gets the value the whole image would give it, every pixel outside stays 0.
    for m, (window_rows, window_cols) in enumerate(_box_windows(boxes_t, ida_t, h, w)):
        if window_rows.numel() == 0 or window_cols.numel() == 0:
            continue
        v, u = torch.meshgrid(window_rows, window_cols, indexing="ij")
        pix = torch.stack([u, v, torch.ones_like(u)], -1)
        if inv is not None:
            pix = pix @ inv.T
            pix = pix / pix[..., 2:]
        # ida works on pixel-centre-at-integer coordinates, boxes on continuous ones (centre at +0.5).
        x = (pix[..., 0] + 0.5).float()
        y = (pix[..., 1] + 0.5).float()
        bx1, by1, bx2, by2 = boxes_t[m]
        gx = 2 * (x - bx1) / (bx2 - bx1).clamp_min(1e-6) - 1
        gy = 2 * (y - by1) / (by2 - by1).clamp_min(1e-6) - 1
        inside = (x >= bx1) & (x < bx2) & (y >= by1) & (y < by2)
        # align_corners=False puts mask cell k's centre at box fraction (k + 0.5) / m; "border" holds the
        # values beyond the outer cell centres.
        pasted = F.grid_sample(masks_t[m, None, None], torch.stack([gx, gy], -1)[None], mode="bilinear",
                               padding_mode="border", align_corners=False)[0, 0]
        out[m, int(window_rows[0]):int(window_rows[-1]) + 1, int(window_cols[0]):int(window_cols[-1]) + 1] = \
            pasted * inside
    return out.cpu().numpy() if as_numpy else out


def _box_windows(boxes: torch.Tensor, ida: torch.Tensor | None, h: int, w: int
                 ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per box, the float64 row and column indices of the target pixels that may lie inside it."""
    x1, y1, x2, y2 = boxes.double().unbind(-1)
    # corners in pixel-centre coordinates (ida's), in the target image
    corners = torch.stack([torch.stack([x1, y1], -1), torch.stack([x2, y1], -1), torch.stack([x2, y2], -1),
                           torch.stack([x1, y2], -1)], 1) - 0.5
    if ida is not None:
        moved = torch.cat([corners, torch.ones_like(corners[..., :1])], -1) @ ida.T
        corners = moved[..., :2] / moved[..., 2:]
    lo = torch.floor(corners.amin(1)) - 1
    hi = torch.ceil(corners.amax(1)) + 1
    windows = []
    device = boxes.device
    for (c_lo, r_lo), (c_hi, r_hi) in zip(lo.tolist(), hi.tolist()):
        c0, c1 = max(0, int(c_lo)), min(w - 1, int(c_hi))
        r0, r1 = max(0, int(r_lo)), min(h - 1, int(r_hi))
        # a box wholly outside the image gets empty ranges
        windows.append((torch.arange(r0, max(r0, r1 + 1), dtype=torch.float64, device=device),
                        torch.arange(c0, max(c0, c1 + 1), dtype=torch.float64, device=device)))
    return windows
