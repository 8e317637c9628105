"""The training targets a dataset worker builds from one cache sample, besides the CenterPoint targets
(detection.det_targets): the depth targets of depth supervision (DS), carried from the cached sparse
LiDAR depth images into the student's feature grid of the augmented image, and X-IS's pseudo ground
truth from the image teacher's cached detections. Built once, in the worker, never in the step."""
from __future__ import annotations

import torch

from detection.masks import paste_masks

from .image_aug import transform_boxes_2d


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


def xis_targets(boxes: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor, masks: torch.Tensor,
                ida: torch.Tensor, image_hw: tuple[int, int], score_threshold: float, min_size: float = 2.0
                ) -> list[dict[str, torch.Tensor]]:
    """Pseudo ground truth per camera image from the image teacher's cached detections.

    boxes [M_img, k, 4] (original pixels), labels [M_img, k] (-1 = padding), scores [M_img, k],
    masks [M_img, k, S, S], ida [M_img, 3, 3]. Keeps detections with score >= threshold whose box
    stays at least `min_size` pixels wide and high inside the augmented image; labels become 1-based
    (0 is torchvision's background)."""
    out = []
    for i in range(boxes.shape[0]):
        keep = (labels[i] >= 0) & (scores[i] >= score_threshold)
        moved = transform_boxes_2d(boxes[i][keep].float(), ida[i], image_hw)
        big = ((moved[:, 2] - moved[:, 0]) >= min_size) & ((moved[:, 3] - moved[:, 1]) >= min_size)
        src_boxes = boxes[i][keep][big]
        out.append({"boxes": moved[big],
                    "labels": labels[i][keep][big].long() + 1,
                    "masks": paste_masks(masks[i][keep][big], src_boxes, image_hw, ida[i])})
    return out
