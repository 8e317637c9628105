"""BEV encoder: ResNet-style BasicBlock stages over the pooled BEV map + an FPN back to its resolution,
so the head predicts on the same grid as the LiDAR teacher."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock


def _stage(in_ch: int, out_ch: int, blocks: int, stride: int) -> nn.Sequential:
    down = None
    if stride != 1 or in_ch != out_ch:
        down = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))
    layers = [BasicBlock(in_ch, out_ch, stride=stride, downsample=down)]
    layers += [BasicBlock(out_ch, out_ch) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class BevEncoder(nn.Module):
    """[B, C_in, H, W] -> [B, out_channels, H, W]."""

    def __init__(self, in_channels: int, stage_channels: tuple[int, ...], stage_blocks: tuple[int, ...],
                 stage_strides: tuple[int, ...], out_channels: int) -> None:
        super().__init__()
        if not len(stage_channels) == len(stage_blocks) == len(stage_strides):
            raise ValueError("bev_encoder stage_channels, stage_blocks and stage_strides need equal lengths")
        stages, ch = [], in_channels
        for c, nb, s in zip(stage_channels, stage_blocks, stage_strides):
            stages.append(_stage(ch, c, nb, s))
            ch = c
        self.stages = nn.ModuleList(stages)
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in stage_channels)
        self.fuse = nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        out = None
        for stage, lat in zip(self.stages, self.lateral):
            x = stage(x)
            y = lat(x)
            if y.shape[-2:] != size:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            out = y if out is None else out + y
        return self.fuse(out)
