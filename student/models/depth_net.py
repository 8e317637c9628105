"""BEVDepth's camera-aware depth net: per feature pixel a distribution over D depth bins and a
context vector, both modulated by an MLP of the camera parameters (squeeze-and-excitation style), so
one network serves six cameras with different intrinsics, poses and augmentations."""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

CAMERA_PARAM_DIM = 27


def camera_parameters(intrinsics: torch.Tensor, ida: torch.Tensor, bda: torch.Tensor,
                      cam2lidar: torch.Tensor) -> torch.Tensor:
    """The depth net's camera input [B, N, 27]: fx, fy, cx, cy of the augmented image, the 2x3 image
    augmentation, the 5 non-trivial BEV-augmentation entries and the 3x4 camera pose."""
    b, n = intrinsics.shape[:2]
    bda = bda[:, None].expand(b, n, 4, 4)
    return torch.cat([
        torch.stack([intrinsics[..., 0, 0], intrinsics[..., 1, 1], intrinsics[..., 0, 2], intrinsics[..., 1, 2]], -1),
        ida[..., :2, :3].reshape(b, n, 6),
        torch.stack([bda[..., 0, 0], bda[..., 0, 1], bda[..., 1, 0], bda[..., 1, 1], bda[..., 2, 2]], -1),
        cam2lidar[..., :3, :4].reshape(b, n, 12),
    ], -1)


class _CameraSE(nn.Module):
    """Gate feature channels with a sigmoid of an MLP of the camera parameters."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(CAMERA_PARAM_DIM, channels), nn.ReLU(inplace=True),
                                 nn.Linear(channels, channels))
        self.gate = nn.Sequential(nn.Linear(channels, channels), nn.ReLU(inplace=True),
                                  nn.Linear(channels, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.mlp(cam))[:, :, None, None]


class DepthNet(nn.Module):
    """features [M, C_in, h, w] + camera parameters [M, 27] -> (depth logits [M, D, h, w],
    context [M, C_ctx, h, w])."""

    def __init__(self, in_channels: int, mid_channels: int, context_channels: int, num_bins: int,
                 camera_aware: bool = True) -> None:
        super().__init__()
        self.num_bins = num_bins
        self.context_channels = context_channels
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, mid_channels, 3, padding=1, bias=False),
                                    nn.BatchNorm2d(mid_channels), nn.ReLU(inplace=True))
        self.camera_aware = camera_aware
        if camera_aware:
            # Raw camera parameters span pixels and metres; normalise them before the MLPs.
            self.camera_norm = nn.BatchNorm1d(CAMERA_PARAM_DIM)
            self.depth_se = _CameraSE(mid_channels)
            self.context_se = _CameraSE(mid_channels)
        self.context_head = nn.Conv2d(mid_channels, context_channels, 1)
        self.depth_head = nn.Sequential(BasicBlock(mid_channels, mid_channels), BasicBlock(mid_channels, mid_channels),
                                        nn.Conv2d(mid_channels, num_bins, 1))

    def forward(self, features: torch.Tensor, camera: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.reduce(features)
        if self.camera_aware:
            cam = self.camera_norm(camera)
            depth_x, ctx_x = self.depth_se(x, cam), self.context_se(x, cam)
        else:
            depth_x, ctx_x = x, x
        return self.depth_head(depth_x), self.context_head(ctx_x)
