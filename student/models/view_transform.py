"""Lift-Splat: lift every feature pixel to D points along its camera ray, weight its context by the
depth probability of each point, and sum the points that fall into each BEV cell (voxel pooling).

The frustum (pixel centres x depth-bin centres) is a buffer made once; its 3D geometry and the BEV
cell of every point are computed once per batch (`FrustumGeometry`), from the batch's camera matrices
and BEV augmentation, so BEV augmentation of the student features is exact. Pooling is one
`index_add_` over the flattened points: plain torch, any device, differentiable in both the depth
probabilities and the context.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cache_schema.grid import BevGrid

from .depth_net import DepthAggregation


@dataclass
class FrustumGeometry:
    """Where each lifted point of a batch lands.

    points:   [B, N, D, h, w, 3] augmented-LiDAR-frame coordinates.
    keep:     [B*N*D*h*w] bool, the point lies inside the BEV grid (x, y and z range).
    cell:     [K] flat index b*H*W + row*W + col of each kept point."""

    points: torch.Tensor
    keep: torch.Tensor
    cell: torch.Tensor


def inverse_3x3(m: torch.Tensor) -> torch.Tensor:
    """Inverse of [..., 3, 3] matrices by their adjugate: elementwise ops that every runtime has (ONNX
    has no matrix inverse), as exact as an LU solve for the well-conditioned camera matrices here."""
    a, b, c = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    d, e, f = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    g, h, i = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    co_a, co_b, co_c = e * i - f * h, f * g - d * i, d * h - e * g
    det = a * co_a + b * co_b + c * co_c
    adjugate = torch.stack([
        torch.stack([co_a, c * h - b * i, b * f - c * e], -1),
        torch.stack([co_b, a * i - c * g, c * d - a * f], -1),
        torch.stack([co_c, b * g - a * h, a * e - b * d], -1)], -2)
    return adjugate / det[..., None, None]


class LSSViewTransform(nn.Module):
    """Lift-Splat voxel pooling into `grid` for images of `image_size` features at `feature_stride`;
    with `aggregation_channels`, BEVDepth's depth aggregation runs on the frustum features first."""

    def __init__(self, grid: BevGrid, d_bound: tuple[float, float, float], image_size: tuple[int, int],
                 feature_stride: int = 16, aggregation_channels: int | None = None) -> None:
        super().__init__()
        self.grid = grid
        self.depth_aggregation = DepthAggregation(aggregation_channels) if aggregation_channels else None
        self.d_bound = tuple(d_bound)
        lo, hi, step = d_bound
        d = lo + (torch.arange(int(round((hi - lo) / step)), dtype=torch.float32) + 0.5) * step
        h, w = image_size[0] // feature_stride, image_size[1] // feature_stride
        # Centre (in augmented-image pixels) of the stride x stride block each feature pixel covers.
        u = torch.arange(w, dtype=torch.float32) * feature_stride + (feature_stride - 1) / 2
        v = torch.arange(h, dtype=torch.float32) * feature_stride + (feature_stride - 1) / 2
        dd, vv, uu = torch.meshgrid(d, v, u, indexing="ij")
        self.register_buffer("frustum", torch.stack([uu, vv, dd], -1), persistent=False)  # [D, h, w, 3]

    @property
    def num_bins(self) -> int:
        return self.frustum.shape[0]

    def geometry(self, intrinsics: torch.Tensor, cam2lidar: torch.Tensor, bda: torch.Tensor) -> FrustumGeometry:
        """Frustum points of every camera in the augmented LiDAR frame and their BEV cells.

        intrinsics [B, N, 3, 3] of the augmented images, cam2lidar [B, N, 4, 4], bda [B, 4, 4]."""
        b, n = intrinsics.shape[:2]
        f = self.frustum
        # Pixel (u, v) at depth d -> camera point K^-1 (u d, v d, d); ida is already inside K.
        pix = torch.stack([f[..., 0] * f[..., 2], f[..., 1] * f[..., 2], f[..., 2]], -1)
        k_inv = inverse_3x3(intrinsics.float())
        cam = torch.einsum("bnij,dhwj->bndhwi", k_inv, pix)
        to_bev = bda[:, None].float() @ cam2lidar.float()  # [B, N, 4, 4]
        pts = torch.einsum("bnij,bndhwj->bndhwi", to_bev[..., :3, :3], cam) + to_bev[..., None, None, None, :3, 3]
        r = self.grid.point_cloud_range
        hh, ww = self.grid.shape
        col, row = (torch.floor(c) for c in self.grid.cell_coords(pts[..., 0], pts[..., 1]))
        keep = (col >= 0) & (col < ww) & (row >= 0) & (row < hh) & (pts[..., 2] >= r[2]) & (pts[..., 2] < r[5])
        batch = torch.arange(b, device=pts.device).view(b, 1, 1, 1, 1).expand_as(col)
        cell = (batch * hh * ww + row * ww + col).long()
        keep = keep.reshape(-1)
        return FrustumGeometry(pts, keep, cell.reshape(-1)[keep])

    def pool(self, depth_prob: torch.Tensor, context: torch.Tensor, geom: FrustumGeometry) -> torch.Tensor:
        """Sum depth-weighted context per BEV cell.

        depth_prob [B, N, D, h, w], context [B, N, C, h, w] -> BEV features [B, C, H, W]."""
        b, n, d, h, w = depth_prob.shape
        c = context.shape[2]
        hh, ww = self.grid.shape
        # Outer product per pixel, channels last so each kept point is one row of index_add_.
        feats = depth_prob.unsqueeze(-1) * context.permute(0, 1, 3, 4, 2).unsqueeze(2)  # [B, N, D, h, w, C]
        if self.depth_aggregation is not None:
            feats = self.depth_aggregation(feats.flatten(0, 1)).reshape(feats.shape)
        feats = feats.reshape(-1, c)[geom.keep]
        bev = feats.new_zeros(b * hh * ww, c)
        if torch.onnx.is_in_onnx_export():
            # the same sum as ONNX knows it (ScatterElements, reduction add); torch exports index_add_
            # and an accumulating index_put as scatters that overwrite
            bev = bev.scatter_add(0, geom.cell[:, None].expand(-1, c), feats)
        else:
            bev = bev.index_add_(0, geom.cell, feats)
        return bev.view(b, hh, ww, c).permute(0, 3, 1, 2).contiguous()

    def forward(self, depth_logits: torch.Tensor, context: torch.Tensor, intrinsics: torch.Tensor,
                cam2lidar: torch.Tensor, bda: torch.Tensor) -> torch.Tensor:
        """depth_logits [B*N, D, h, w], context [B*N, C, h, w] -> BEV [B, C, H, W]."""
        b, n = intrinsics.shape[:2]
        geom = self.geometry(intrinsics, cam2lidar, bda)
        prob = depth_logits.softmax(1)
        return self.pool(prob.view(b, n, *prob.shape[1:]), context.view(b, n, *context.shape[1:]), geom)
