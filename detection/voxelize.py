"""Point -> pillar (hard) voxelization in plain torch, reproducing mmcv's `Voxelization` exactly.

mmcv's CPU kernel walks the points in input order: a point outside the range is skipped; a point
whose voxel is new opens the next voxel slot unless `max_voxels` are already open (then the point is
dropped); a point is stored in its voxel while the voxel holds fewer than `max_points`. So voxels are
numbered by the first point that falls into them, and each voxel keeps its first `max_points` points.
We compute the same thing with sorts and scatters (deterministic, any device): coordinates are
`floor((p - range_min) / voxel_size)` in float32, as mmcv computes them.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Voxels:
    """`voxels (V, max_points, C)` zero-padded point features, `coors (V, 4)` int32
    (batch, z, y, x), `num_points (V,)` int32 — mmdet3d's `voxels` dict for a batch."""

    voxels: Tensor
    coors: Tensor
    num_points: Tensor


def grid_size(point_cloud_range: Sequence[float], voxel_size: Sequence[float]) -> list[int]:
    """Voxels along (x, y, z), rounded in float32 as mmcv does."""
    r = torch.tensor(point_cloud_range, dtype=torch.float32)
    v = torch.tensor(voxel_size, dtype=torch.float32)
    return torch.round((r[3:] - r[:3]) / v).long().tolist()


def hard_voxelize(points: Tensor, voxel_size: Sequence[float], point_cloud_range: Sequence[float],
                  max_points: int, max_voxels: int) -> tuple[Tensor, Tensor, Tensor]:
    """One point cloud (N, C) -> (voxels (V, max_points, C), coors (V, 3) int32 as (z, y, x),
    num_points (V,) int32), in mmcv's voxel order."""
    dev = points.device
    vs = torch.tensor(voxel_size, dtype=torch.float32, device=dev)
    lo = torch.tensor(point_cloud_range[:3], dtype=torch.float32, device=dev)
    gx, gy, gz = grid_size(point_cloud_range, voxel_size)
    dims = torch.tensor([gx, gy, gz], device=dev)

    cell = torch.floor((points[:, :3].float() - lo) / vs)
    inside = ((cell >= 0) & (cell < dims)).all(1)
    src = inside.nonzero().squeeze(1)                       # indices of usable points, input order
    cell = cell[src].long()
    lin = (cell[:, 2] * gy + cell[:, 1]) * gx + cell[:, 0]

    n = src.numel()
    uniq, inverse = torch.unique(lin, return_inverse=True)
    arange = torch.arange(n, device=dev)
    first = torch.full((uniq.numel(),), n, dtype=torch.long, device=dev)
    first = first.scatter_reduce(0, inverse, arange, reduce="amin")
    by_first = first.argsort()                              # voxel rank -> unique id
    rank = torch.empty_like(by_first)
    rank[by_first] = torch.arange(by_first.numel(), device=dev)
    vid = rank[inverse]                                     # mmcv voxel index of every usable point

    # slot of each point inside its voxel = how many earlier points share the voxel
    order = torch.sort(vid, stable=True).indices
    counts = torch.bincount(vid, minlength=uniq.numel())
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.empty_like(vid)
    slot[order] = arange - starts[vid[order]]

    n_vox = min(uniq.numel(), max_voxels)
    keep = (vid < n_vox) & (slot < max_points)
    voxels = points.new_zeros((n_vox, max_points, points.shape[1]))
    voxels[vid[keep], slot[keep]] = points[src[keep]]
    first_pt = first[by_first[:n_vox]]
    coors = torch.stack([cell[first_pt, 2], cell[first_pt, 1], cell[first_pt, 0]], 1).int()
    num_points = counts[:n_vox].clamp(max=max_points).int()
    return voxels, coors, num_points


def voxelize_batch(points: Sequence[Tensor], voxel_size: Sequence[float], point_cloud_range: Sequence[float],
                   max_points: int, max_voxels: int) -> Voxels:
    """Voxelize every cloud on its own and prefix its batch index to the coordinates (mmdet3d's
    `Det3DDataPreprocessor.voxelize`, hard mode)."""
    vox, coors, nums = [], [], []
    for i, p in enumerate(points):
        v, c, n = hard_voxelize(p, voxel_size, point_cloud_range, max_points, max_voxels)
        vox.append(v)
        coors.append(torch.nn.functional.pad(c, (1, 0), value=i))
        nums.append(n)
    return Voxels(torch.cat(vox), torch.cat(coors), torch.cat(nums))
