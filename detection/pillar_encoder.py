"""PointPillars' pillar feature net and BEV scatter, named and computed like mmdet3d's
`PillarFeatureNet` / `PFNLayer` / `PointPillarsScatter`."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class PFNLayer(nn.Module):
    """Linear -> BatchNorm1d -> ReLU over every point of a pillar, then max over the pillar. A
    non-last layer concatenates the pillar max back onto each point (and so outputs half its
    width per part)."""

    def __init__(self, in_channels: int, out_channels: int, eps: float = 1e-3, momentum: float = 0.01,
                 last_layer: bool = False, mode: str = "max"):
        super().__init__()
        if mode not in ("max", "avg"):
            raise ValueError(f"PFNLayer mode must be 'max' or 'avg', got {mode!r}")
        self.last_vfe = last_layer
        units = out_channels if last_layer else out_channels // 2
        self.norm = nn.BatchNorm1d(units, eps=eps, momentum=momentum)
        self.linear = nn.Linear(in_channels, units, bias=False)
        self.mode = mode

    def forward(self, inputs: Tensor, num_points: Tensor) -> Tensor:
        x = self.linear(inputs)
        x = self.norm(x.permute(0, 2, 1).contiguous()).permute(0, 2, 1).contiguous()
        x = torch.relu(x)
        if self.mode == "max":
            # padded (zero) point slots take part in the max, as in mmdet3d
            pooled = x.max(dim=1, keepdim=True).values
        else:
            pooled = x.sum(dim=1, keepdim=True) / num_points.type_as(inputs).view(-1, 1, 1)
        if self.last_vfe:
            return pooled
        return torch.cat([x, pooled.repeat(1, inputs.shape[1], 1)], dim=2)


class PillarFeatureNet(nn.Module):
    """Decorate each point with its offset from the pillar's point mean (cluster centre) and from
    the pillar's geometric centre, optionally its range, then run the PFN layers.

    `legacy=True` reproduces mmdet3d's old behaviour where the centre offset overwrote the point's
    own x, y, z in place (so the raw coordinates are lost); pillar02 configs use `legacy=False`.
    """

    def __init__(self, in_channels: int = 4, feat_channels: Sequence[int] = (64,), with_distance: bool = False,
                 with_cluster_center: bool = True, with_voxel_center: bool = True,
                 voxel_size: Sequence[float] = (0.2, 0.2, 4), point_cloud_range: Sequence[float] = (0, -40, -3, 70.4, 40, 1),
                 eps: float = 1e-3, momentum: float = 0.01, mode: str = "max", legacy: bool = True):
        super().__init__()
        if len(feat_channels) == 0:
            raise ValueError("PillarFeatureNet needs at least one feat_channels entry")
        self.legacy = legacy
        in_channels += 3 * with_cluster_center + 3 * with_voxel_center + 1 * with_distance
        self._with_distance = with_distance
        self._with_cluster_center = with_cluster_center
        self._with_voxel_center = with_voxel_center
        chans = [in_channels, *feat_channels]
        self.pfn_layers = nn.ModuleList(
            PFNLayer(chans[i], chans[i + 1], eps, momentum, last_layer=i >= len(chans) - 2, mode=mode)
            for i in range(len(chans) - 1))
        self.vx, self.vy, self.vz = (float(v) for v in voxel_size)
        self.x_offset = self.vx / 2 + point_cloud_range[0]
        self.y_offset = self.vy / 2 + point_cloud_range[1]
        self.z_offset = self.vz / 2 + point_cloud_range[2]

    @property
    def out_channels(self) -> int:
        last = self.pfn_layers[-1]
        return last.linear.out_features

    def forward(self, features: Tensor, num_points: Tensor, coors: Tensor) -> Tensor:
        """features (V, P, C) padded points, num_points (V,), coors (V, 4) (batch, z, y, x) -> (V, C_out)."""
        if self.legacy:
            features = features.clone()  # the legacy path writes into it; keep the caller's copy
        parts = [features]
        if self._with_cluster_center:
            mean = features[:, :, :3].sum(dim=1, keepdim=True) / num_points.type_as(features).view(-1, 1, 1)
            parts.append(features[:, :, :3] - mean)
        if self._with_voxel_center:
            if not self.legacy:
                f_center = torch.zeros_like(features[:, :, :3])
            else:
                f_center = features[:, :, :3]
            f_center[:, :, 0] = features[:, :, 0] - (coors[:, 3].to(features.dtype).unsqueeze(1) * self.vx + self.x_offset)
            f_center[:, :, 1] = features[:, :, 1] - (coors[:, 2].to(features.dtype).unsqueeze(1) * self.vy + self.y_offset)
            f_center[:, :, 2] = features[:, :, 2] - (coors[:, 1].to(features.dtype).unsqueeze(1) * self.vz + self.z_offset)
            parts.append(f_center)
        if self._with_distance:
            parts.append(torch.norm(features[:, :, :3], 2, 2, keepdim=True))
        x = torch.cat(parts, dim=-1)
        # decorations were computed on padded slots too; empty slots must stay zero
        slots = torch.arange(x.shape[1], device=x.device)
        x = x * (slots[None] < num_points[:, None]).unsqueeze(-1).type_as(x)
        for pfn in self.pfn_layers:
            x = pfn(x, num_points)
        return x.squeeze(1)


class PointPillarsScatter(nn.Module):
    """Pillar features -> dense BEV canvas (B, C, ny, nx); `output_shape` is (ny, nx)."""

    def __init__(self, in_channels: int, output_shape: Sequence[int]):
        super().__init__()
        self.in_channels = in_channels
        self.ny, self.nx = int(output_shape[0]), int(output_shape[1])

    def forward(self, voxel_features: Tensor, coors: Tensor, batch_size: int) -> Tensor:
        cells = self.ny * self.nx
        canvas = voxel_features.new_zeros((batch_size * cells, self.in_channels))
        idx = coors[:, 0].long() * cells + coors[:, 2].long() * self.nx + coors[:, 3].long()
        canvas[idx] = voxel_features
        return canvas.view(batch_size, self.ny, self.nx, self.in_channels).permute(0, 3, 1, 2).contiguous()
