"""Depth-bin targets for depth supervision (DS), from the cached sparse LiDAR depth images, carried into
the student's feature grid of the augmented image."""
from __future__ import annotations

import torch


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
