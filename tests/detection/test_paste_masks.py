"""paste_masks: box-relative 28×28 masks into image-sized maps."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from detection.masks import paste_masks


def centres_inside(box, h, w):
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    return (xs >= box[0]) & (xs < box[2]) & (ys >= box[1]) & (ys < box[3])


def naive_paste(mask: np.ndarray, box, h: int, w: int) -> np.ndarray:
    """Per-pixel bilinear sampling at pixel centres, cell k of the mask centred at k, border held."""
    m = mask.shape[0]
    out = np.zeros((h, w), np.float32)
    x0, y0, x1, y1 = box
    for i in range(h):
        for j in range(w):
            cx, cy = j + 0.5, i + 0.5
            if not (x0 <= cx < x1 and y0 <= cy < y1):
                continue
            px = min(max((cx - x0) / (x1 - x0) * m - 0.5, 0), m - 1)
            py = min(max((cy - y0) / (y1 - y0) * m - 0.5, 0), m - 1)
            ix, iy = math.floor(px), math.floor(py)
            fx, fy = px - ix, py - iy
            ix1, iy1 = min(ix + 1, m - 1), min(iy + 1, m - 1)
            out[i, j] = ((1 - fy) * ((1 - fx) * mask[iy, ix] + fx * mask[iy, ix1])
                         + fy * ((1 - fx) * mask[iy1, ix] + fx * mask[iy1, ix1]))
    return out


def test_mask_of_ones_fills_its_box():
    boxes = np.array([[10.2, 5.7, 30.6, 20.1], [0.0, 0.0, 40.0, 32.0], [35.5, 25.0, 60.0, 50.0]], np.float32)
    pasted = paste_masks(np.ones((3, 28, 28), np.float32), boxes, (32, 40))
    assert isinstance(pasted, np.ndarray) and pasted.shape == (3, 32, 40) and pasted.dtype == np.float32
    for k in range(3):  # the third box leaves the image: its outside part is cut off
        np.testing.assert_allclose(pasted[k], centres_inside(boxes[k], 32, 40).astype(np.float32), atol=1e-6)


def test_matches_naive_bilinear_and_grid_sample():
    rng = np.random.default_rng(0)
    masks = rng.uniform(size=(4, 28, 28)).astype(np.float32)
    boxes = np.array([[2.3, 1.1, 19.7, 15.2], [0.0, 0.0, 24.0, 20.0], [5.0, 4.0, 6.5, 5.5], [-4.0, 10.0, 30.0, 26.0]],
                     np.float32)
    h, w = 20, 24
    pasted = paste_masks(torch.from_numpy(masks), torch.from_numpy(boxes), (h, w))
    assert isinstance(pasted, torch.Tensor)
    for k in range(4):
        np.testing.assert_allclose(pasted[k].numpy(), naive_paste(masks[k], boxes[k], h, w), atol=1e-5)
        # torch's own sampler with the same convention: normalised coordinates over the box, border held.
        ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
        x0, y0, x1, y1 = boxes[k].tolist()
        grid = torch.stack([(xs - x0) / (x1 - x0) * 2 - 1, (ys - y0) / (y1 - y0) * 2 - 1], -1)[None]
        ref = F.grid_sample(torch.from_numpy(masks[k])[None, None], grid, mode="bilinear",
                            padding_mode="border", align_corners=False)[0, 0]
        ref = ref * torch.from_numpy(centres_inside(boxes[k], h, w))
        torch.testing.assert_close(pasted[k], ref, atol=1e-5, rtol=0)


def test_empty_and_bad_input():
    assert paste_masks(np.zeros((0, 28, 28), np.float32), np.zeros((0, 4), np.float32), (8, 9)).shape == (0, 8, 9)
    with pytest.raises(ValueError):
        paste_masks(np.zeros((2, 28, 28), np.float32), np.zeros((3, 4), np.float32), (8, 9))
