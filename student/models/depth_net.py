"""BEVDepth's camera-aware depth net: per feature pixel a distribution over D depth bins and a
context vector, both modulated by an MLP of the camera parameters (squeeze-and-excitation), so one
network serves six cameras with different intrinsics, poses and augmentations.

Structure as BEVDepth's `DepthNet` (module names too, so its weights map one to one): a 3x3 reduce
conv; the 27 camera parameters through BatchNorm1d and one MLP per branch whose output gates the
features (`SELayer`: two 1x1 convs and a sigmoid); context = 1x1 conv of the gated features; depth =
residual blocks, ASPP (dilations 1, 6, 12, 18 and a global pool), a deformable 3x3 conv (4 groups,
torchvision's `deform_conv2d` with offsets from a zero-initialised conv, as mmcv's DCN), then a 1x1 conv
to the bins. ASPP and the deformable conv can be switched off (`aspp`, `deformable`), e.g. for the
small CPU configs; `camera_aware: false` drops the camera MLPs.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock
from torchvision.ops import deform_conv2d

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


class Mlp(nn.Module):
    """fc1 -> ReLU -> fc2 (BEVDepth's camera MLP)."""

    def __init__(self, in_features: int, hidden: int, out_features: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SELayer(nn.Module):
    """Gate `x` [M, C, h, w] by sigmoid(conv_expand(relu(conv_reduce(s)))) of a per-image vector s [M, C, 1, 1]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, channels, 1)
        self.act1 = nn.ReLU()
        self.conv_expand = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return x * self.conv_expand(self.act1(self.conv_reduce(s))).sigmoid()


class _ASPPBranch(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel: int, dilation: int) -> None:
        super().__init__()
        pad = 0 if kernel == 1 else dilation
        self.atrous_conv = nn.Conv2d(in_channels, out_channels, kernel, padding=pad, dilation=dilation, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.atrous_conv(x)))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLab v3, as BEVDepth uses it): 1x1 and dilated 3x3 branches
    (dilations 6, 12, 18) and a global-average branch, concatenated, 1x1 conv, BN, ReLU, dropout 0.5."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.aspp1 = _ASPPBranch(in_channels, channels, 1, 1)
        self.aspp2 = _ASPPBranch(in_channels, channels, 3, 6)
        self.aspp3 = _ASPPBranch(in_channels, channels, 3, 12)
        self.aspp4 = _ASPPBranch(in_channels, channels, 3, 18)
        self.global_avg_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, channels, 1, bias=False),
                                             nn.BatchNorm2d(channels), nn.ReLU())
        self.conv1 = nn.Conv2d(5 * channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(0.5)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.global_avg_pool(x).expand(-1, -1, *x.shape[-2:])  # a 1x1 map, bilinearly resized = constant
        y = torch.cat([self.aspp1(x), self.aspp2(x), self.aspp3(x), self.aspp4(x), pooled], 1)
        return self.dropout(self.relu(self.bn1(self.conv1(y))))


class DeformConv(nn.Module):
    """A 3x3 deformable conv with `groups` weight groups and one offset group, its offsets predicted by
    `conv_offset` (zero-initialised: it starts as a plain grouped conv), like mmcv's `DeformConv2dPack`."""

    def __init__(self, channels: int, groups: int = 4) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels, channels // groups, 3, 3))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        self.conv_offset = nn.Conv2d(channels, 2 * 3 * 3, 3, padding=1)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return deform_conv2d(x, self.conv_offset(x), self.weight, padding=1)


class DepthNet(nn.Module):
    """features [M, C_in, h, w] + camera parameters [M, 27] -> (depth logits [M, D, h, w],
    context [M, C_ctx, h, w])."""

    def __init__(self, in_channels: int, mid_channels: int, context_channels: int, num_bins: int,
                 camera_aware: bool = True, residual_blocks: int = 3, aspp: bool = True,
                 deformable: bool = True) -> None:
        super().__init__()
        self.num_bins = num_bins
        self.context_channels = context_channels
        self.reduce_conv = nn.Sequential(nn.Conv2d(in_channels, mid_channels, 3, padding=1),
                                         nn.BatchNorm2d(mid_channels), nn.ReLU(inplace=True))
        self.camera_aware = camera_aware
        if camera_aware:
            # Raw camera parameters span pixels and metres; normalise them before the MLPs.
            self.bn = nn.BatchNorm1d(CAMERA_PARAM_DIM)
            self.depth_mlp = Mlp(CAMERA_PARAM_DIM, mid_channels, mid_channels)
            self.depth_se = SELayer(mid_channels)
            self.context_mlp = Mlp(CAMERA_PARAM_DIM, mid_channels, mid_channels)
            self.context_se = SELayer(mid_channels)
        self.context_conv = nn.Conv2d(mid_channels, context_channels, 1)
        layers: list[nn.Module] = [BasicBlock(mid_channels, mid_channels) for _ in range(residual_blocks)]
        if aspp:
            layers.append(ASPP(mid_channels, mid_channels))
        if deformable:
            layers.append(DeformConv(mid_channels))
        layers.append(nn.Conv2d(mid_channels, num_bins, 1))
        self.depth_conv = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor, camera: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.reduce_conv(features)
        if self.camera_aware:
            cam = self.bn(camera)
            depth_x = self.depth_se(x, self.depth_mlp(cam)[..., None, None])
            ctx_x = self.context_se(x, self.context_mlp(cam)[..., None, None])
        else:
            depth_x, ctx_x = x, x
        return self.depth_conv(depth_x), self.context_conv(ctx_x)


class DepthAggregation(nn.Module):
    """BEVDepth's depth aggregation ("da"): 2D convs over (width, depth) of the frustum features of each
    image row, so neighbouring depth bins and columns exchange evidence before pooling: a reduce conv,
    a residual pair of convs, an output conv (3x3 each)."""

    def __init__(self, channels: int) -> None:
        super().__init__()

        def conv_bn_relu() -> list[nn.Module]:
            return [nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                    nn.ReLU(inplace=True)]
        self.reduce_conv = nn.Sequential(*conv_bn_relu())
        self.conv = nn.Sequential(*conv_bn_relu(), *conv_bn_relu())
        self.out_conv = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, frustum: torch.Tensor) -> torch.Tensor:
        """frustum features [M, D, h, w, C] -> the same shape."""
        m, d, h, w, c = frustum.shape
        x = frustum.permute(0, 2, 4, 3, 1).reshape(m * h, c, w, d)  # one image row: C x (width, depth)
        x = self.reduce_conv(x.float())
        x = self.conv(x) + x
        x = self.out_conv(x).to(frustum.dtype)
        return x.view(m, h, c, w, d).permute(0, 4, 1, 3, 2)
