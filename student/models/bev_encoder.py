"""BEV encoder: ResNet-style BasicBlock stages over the pooled BEV map + a neck back to its resolution,
so the head predicts on the same grid as the LiDAR teacher.

Two necks: "secondfpn", BEVDepth's (its BEV trunk is mmdet's ResNet-18 with base 160 channels: a 7x7
stride-2 stem conv, stages of strides 1/2/2; mmdet3d's SECONDFPN brings the input map and every stage
back to the grid with transposed convs, `neck_channels` each, concatenated: 4 x 64 = 256); and "fpn"
(1x1 laterals summed at the grid's resolution, then a 3x3 conv; no stem)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock

NECKS = ("secondfpn", "fpn")


def _stage(in_ch: int, out_ch: int, blocks: int, stride: int) -> nn.Sequential:
    down = None
    if stride != 1 or in_ch != out_ch:
        down = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))
    layers = [BasicBlock(in_ch, out_ch, stride=stride, downsample=down)]
    layers += [BasicBlock(out_ch, out_ch) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def _upsample(in_ch: int, out_ch: int, step: int) -> nn.Sequential:
    """SECONDFPN's block: transposed conv (kernel = stride = step), BN (eps 1e-3, momentum 0.01), ReLU."""
    return nn.Sequential(nn.ConvTranspose2d(in_ch, out_ch, step, stride=step, bias=False),
                         nn.BatchNorm2d(out_ch, eps=1e-3, momentum=0.01), nn.ReLU(inplace=True))


class BevEncoder(nn.Module):
    """[B, C_in, H, W] -> [B, out_channels, H, W] (H, W divisible by the total stride)."""

    def __init__(self, in_channels: int, stage_channels: tuple[int, ...], stage_blocks: tuple[int, ...],
                 stage_strides: tuple[int, ...], out_channels: int, neck: str = "fpn") -> None:
        super().__init__()
        if not len(stage_channels) == len(stage_blocks) == len(stage_strides):
            raise ValueError("bev_encoder stage_channels, stage_blocks and stage_strides need equal lengths")
        if neck not in NECKS:
            raise ValueError(f"bev_encoder neck {neck!r}: expected one of {', '.join(NECKS)}")
        self.neck = neck
        ch = in_channels
        if neck == "secondfpn":
            parts = 1 + len(stage_channels)  # the input map and every stage
            if out_channels % parts:
                raise ValueError(f"bev_encoder out_channels {out_channels}: the secondfpn neck concatenates {parts} "
                                 "maps, so it must be divisible by that")
            self.stem = nn.Sequential(nn.Conv2d(in_channels, stage_channels[0], 7, stride=2, padding=3, bias=False),
                                      nn.BatchNorm2d(stage_channels[0]), nn.ReLU(inplace=True))
            ch = stage_channels[0]
        stages = []
        for c, nb, s in zip(stage_channels, stage_blocks, stage_strides):
            stages.append(_stage(ch, c, nb, s))
            ch = c
        self.stages = nn.ModuleList(stages)
        if neck == "secondfpn":
            steps, total = [1], 2  # the stem halves the grid
            for s in stage_strides:
                total *= s
                steps.append(total)
            widths = [in_channels, *stage_channels]
            self.deblocks = nn.ModuleList(_upsample(c, out_channels // parts, st) for c, st in zip(widths, steps))
        else:
            self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in stage_channels)
            self.fuse = nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        if self.neck == "secondfpn":
            maps = [x]
            x = self.stem(x)
            for stage in self.stages:
                x = stage(x)
                maps.append(x)
            outs = [block(m) for block, m in zip(self.deblocks, maps)]
            if any(o.shape[-2:] != size for o in outs):
                raise ValueError(f"the secondfpn BEV neck needs a grid divisible by its total stride "
                                 f"{self.deblocks[-1][0].stride[0]}; the BEV map is {tuple(size)}")
            return torch.cat(outs, 1)
        out = None
        for stage, lat in zip(self.stages, self.lateral):
            x = stage(x)
            y = lat(x)
            if y.shape[-2:] != size:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            out = y if out is None else out + y
        return self.fuse(out)
