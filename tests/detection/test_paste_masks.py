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


def _paste_over_the_whole_image(masks, boxes, image_hw, ida):
    """The definition, evaluated at every pixel of the target image (what paste_masks computes only in
    a window around each box)."""
    h, w = image_hw
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    pix = torch.stack([u, v, torch.ones_like(u)], -1) @ torch.linalg.inv(ida.double()).T
    x = (pix[..., 0] / pix[..., 2] + 0.5).float()[None]
    y = (pix[..., 1] / pix[..., 2] + 0.5).float()[None]
    bx1, by1, bx2, by2 = (boxes[:, i, None, None] for i in range(4))
    grid = torch.stack([2 * (x - bx1) / (bx2 - bx1).clamp_min(1e-6) - 1, 2 * (y - by1) / (by2 - by1).clamp_min(1e-6) - 1], -1)
    inside = (x >= bx1) & (x < bx2) & (y >= by1) & (y < by2)
    return torch.nn.functional.grid_sample(masks[:, None], grid, mode="bilinear", padding_mode="border",
                                           align_corners=False)[:, 0] * inside


@pytest.mark.parametrize("flip, rotate", [(False, 0.0), (True, 0.0), (True, 5.4), (False, -4.0)])
def test_pasting_near_each_box_equals_pasting_over_the_whole_image(flip, rotate):
    g = torch.Generator().manual_seed(3)
    x1 = torch.rand(12, generator=g) * 220 - 20  # some boxes reach outside the 200x120 image
    y1 = torch.rand(12, generator=g) * 130 - 10
    boxes = torch.stack([x1, y1, x1 + 1 + torch.rand(12, generator=g) * 60, y1 + 1 + torch.rand(12, generator=g) * 40], 1)
    boxes[0] = torch.tensor([250.0, 10, 300, 40])  # wholly outside
    masks = torch.rand(12, 28, 28, generator=g)
    # resize by 0.6, crop at (7, 11), flip, rotate about the centre of the 96x64 result
    a = math.radians(rotate)
    rot = torch.tensor([[math.cos(a), math.sin(a), 0], [-math.sin(a), math.cos(a), 0], [0, 0, 1]], dtype=torch.float64)
    centre = torch.tensor([[1, 0, 47.5], [0, 1, 31.5], [0, 0, 1]], dtype=torch.float64)
    mirror = torch.tensor([[-1, 0, 95], [0, 1, 0], [0, 0, 1]], dtype=torch.float64) if flip else torch.eye(3).double()
    crop_resize = torch.tensor([[0.6, 0, 0.3 - 0.5 - 7], [0, 0.6, 0.3 - 0.5 - 11], [0, 0, 1]], dtype=torch.float64)
    ida = (centre @ rot @ torch.linalg.inv(centre) @ mirror @ crop_resize).float()
    pasted = paste_masks(masks, boxes, (64, 96), ida)
    reference = _paste_over_the_whole_image(masks, boxes, (64, 96), ida)
    assert (reference > 0).sum() > 300  # the comparison covers pasted pixels, not only zeros
    torch.testing.assert_close(pasted, reference, rtol=0, atol=1e-6)
    assert pasted[0].abs().sum() == 0
