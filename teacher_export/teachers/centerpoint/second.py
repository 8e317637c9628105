"""SECOND's 2D BEV backbone and SECONDFPN neck, named like mmdet3d's `SECOND` / `SECONDFPN`."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class SECOND(nn.Module):
    """Stages of 3x3 convs; each stage starts with a strided conv and returns its output."""

    def __init__(self, in_channels: int = 128, out_channels: Sequence[int] = (128, 128, 256),
                 layer_nums: Sequence[int] = (3, 5, 5), layer_strides: Sequence[int] = (2, 2, 2),
                 eps: float = 1e-3, momentum: float = 0.01):
        super().__init__()
        if not len(out_channels) == len(layer_nums) == len(layer_strides):
            raise ValueError("SECOND: out_channels, layer_nums and layer_strides must have equal length")
        in_filters = [in_channels, *out_channels[:-1]]
        blocks = []
        for c_in, c_out, n, stride in zip(in_filters, out_channels, layer_nums, layer_strides):
            layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                                       nn.BatchNorm2d(c_out, eps=eps, momentum=momentum), nn.ReLU(inplace=True)]
            for _ in range(n):
                layers += [nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                           nn.BatchNorm2d(c_out, eps=eps, momentum=momentum), nn.ReLU(inplace=True)]
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        return tuple(outs)


class SECONDFPN(nn.Module):
    """Bring every backbone stage to one resolution (transposed conv for stride > 1, strided conv
    for stride < 1, 1x1 conv for stride 1) and concatenate along channels."""

    def __init__(self, in_channels: Sequence[int] = (128, 128, 256), out_channels: Sequence[int] = (256, 256, 256),
                 upsample_strides: Sequence[float] = (1, 2, 4), eps: float = 1e-3, momentum: float = 0.01,
                 use_conv_for_no_stride: bool = False):
        super().__init__()
        if not len(in_channels) == len(out_channels) == len(upsample_strides):
            raise ValueError("SECONDFPN: in_channels, out_channels and upsample_strides must have equal length")
        deblocks = []
        for c_in, c_out, stride in zip(in_channels, out_channels, upsample_strides):
            if stride > 1 or (stride == 1 and not use_conv_for_no_stride):
                s = int(stride)
                up: nn.Module = nn.ConvTranspose2d(c_in, c_out, s, stride=s, bias=False)
            else:
                s = int(round(1 / stride))
                up = nn.Conv2d(c_in, c_out, s, stride=s, bias=False)
            deblocks.append(nn.Sequential(up, nn.BatchNorm2d(c_out, eps=eps, momentum=momentum), nn.ReLU(inplace=True)))
        self.deblocks = nn.ModuleList(deblocks)
        self.out_channels = int(sum(out_channels))

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        ups = [deblock(f) for deblock, f in zip(self.deblocks, feats)]
        return torch.cat(ups, dim=1) if len(ups) > 1 else ups[0]
