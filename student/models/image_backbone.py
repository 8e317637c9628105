"""Perspective-view image features: torchvision ResNet + a neck that ends at stride 16.

Two necks: "secondfpn", BEVDepth's (mmdet3d's SECONDFPN over all four ResNet stages: each stage is
brought to stride 16 by a strided conv (stride 4 and 8 stages) or a transposed conv (stride 16 and 32),
BN, ReLU, and the four are concatenated: 4 x 128 = 512 channels for R50); and "fpn", a lighter
FPN-style fusion of C3-C5 into one map (1x1 laterals summed at stride 16, then a 3x3 conv)."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cache_schema.errors import UserInputError

from detection.resnet import RESNET_DEPTHS, build_resnet
from detection.weights import read_torch_file, state_dict_in

log = logging.getLogger(__name__)


NECKS = ("secondfpn", "fpn")


def _to_stride_16(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """SECONDFPN's block for one ResNet stage of `stride`: to stride 16, then BN (mmdet3d's eps 1e-3,
    momentum 0.01) and ReLU. A stage finer than 16 is downsampled by a conv whose kernel equals its
    step; the others are upsampled by a transposed conv (kernel = step; 1 for the stride-16 stage)."""
    if stride < 16:
        step = 16 // stride
        resample: nn.Module = nn.Conv2d(in_channels, out_channels, step, stride=step, bias=False)
    else:
        step = stride // 16
        resample = nn.ConvTranspose2d(in_channels, out_channels, step, stride=step, bias=False)
    return nn.Sequential(resample, nn.BatchNorm2d(out_channels, eps=1e-3, momentum=0.01), nn.ReLU(inplace=True))


class ImageBackbone(nn.Module):
    """ResNet + neck -> one stride-16 map of `out_channels` (what the depth net and the X-IS heads
    take). `neck` "secondfpn" (BEVDepth's: C2-C5, `out_channels // 4` each, concatenated) or "fpn"."""

    def __init__(self, depth: int = 50, out_channels: int = 256, weights: str | None = None,
                 frozen_stages: int = 0, neck: str = "secondfpn", base_width: int = 64) -> None:
        super().__init__()
        if depth not in RESNET_DEPTHS:
            raise UserInputError(f"backbone depth {depth}: expected one of {list(RESNET_DEPTHS)}")
        if neck not in NECKS:
            raise UserInputError(f"backbone neck {neck!r}: expected one of {', '.join(NECKS)}")
        resnet = build_resnet(depth, base_width)
        if weights is not None:
            load_resnet_weights(resnet, weights)
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4
        self.neck = neck
        if neck == "secondfpn":
            if out_channels % 4:
                raise UserInputError(f"backbone neck_channels {out_channels}: the secondfpn neck concatenates four "
                                     "stages, so it must be divisible by 4")
            widths = [self._width(getattr(self, f"layer{i}")) for i in (1, 2, 3, 4)]
            self.deblocks = nn.ModuleList(_to_stride_16(c, out_channels // 4, s)
                                          for c, s in zip(widths, (4, 8, 16, 32)))
        else:
            widths = [self._width(getattr(self, f"layer{i}")) for i in (2, 3, 4)]
            self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in widths)
            self.fuse = nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))
        self.out_channels = out_channels
        self.stride = 16
        self._freeze(frozen_stages)

    @staticmethod
    def _width(layer: nn.Sequential) -> int:
        last = layer[-1]
        return (last.bn3 if hasattr(last, "bn3") else last.bn2).num_features

    def _freeze(self, frozen_stages: int) -> None:
        self.frozen = [self.stem, self.layer1, self.layer2, self.layer3, self.layer4][:frozen_stages]
        for p in self.frozen:
            for q in p.parameters():
                q.requires_grad_(False)

    def train(self, mode: bool = True) -> "ImageBackbone":
        """Frozen stages stay in eval mode: their BatchNorm statistics are part of what is frozen
        (requires_grad alone would let every training batch move them)."""
        super().train(mode)
        for part in self.frozen:
            part.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [M, 3, H, W] -> features [M, out_channels, H/16, W/16]."""
        c2 = self.layer1(self.stem(images))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        size = c4.shape[-2:]
        if self.neck == "secondfpn":
            # An image size not divisible by 32 leaves the upsampled C5 one cell off C4: resample it to C4's size.
            parts = [block(c) for block, c in zip(self.deblocks, (c2, c3, c4, c5))]
            return torch.cat([p if p.shape[-2:] == size else F.interpolate(p, size=size, mode="nearest")
                              for p in parts], 1)
        x = self.lateral[1](c4)
        x = x + F.interpolate(self.lateral[2](c5), size=size, mode="bilinear", align_corners=False)
        x = x + F.adaptive_avg_pool2d(self.lateral[0](c3), size)
        return self.fuse(x)


def load_resnet_weights(resnet: nn.Module, path: str) -> None:
    """Load a torchvision ResNet state dict from a local file (never a download). The classifier
    (`fc.*`) may be absent or mismatched; every other tensor must match."""
    p = Path(path)
    state = state_dict_in(read_torch_file(p, "backbone weights"), p, "backbone weights")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        missing, unexpected = resnet.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches: a ResNet of another depth
        raise UserInputError(f"{p}: not a matching ResNet state dict ({str(e).splitlines()[1].strip()[:120]})") from None
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise UserInputError(f"{p}: not a matching ResNet state dict (missing {missing[:3]}, unexpected {unexpected[:3]})")
    log.info("loaded backbone weights from %s", p)
