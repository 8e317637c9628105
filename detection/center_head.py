"""CenterPoint's detection head, shared by the LiDAR teacher and the camera student.

Module and parameter names follow mmdet3d's `CenterHead` / `SeparateHead` / mmcv `ConvModule`
(`shared_conv.conv`, `shared_conv.bn`, `task_heads.<t>.<head>.<i>.conv|bn`, last layer a plain conv
`task_heads.<t>.<head>.<n-1>`), so an mmdet3d CenterPoint checkpoint's head weights load with strict
key checking.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from cache_schema.layout import REGRESSION_HEADS

NormFactory = Callable[[int], nn.Module]

# What one task group predicts besides its heatmap, as output channels: the regression layout.
DEFAULT_COMMON_HEADS: dict[str, int] = {name: len(channels) for name, channels in REGRESSION_HEADS}


class ConvBNReLU(nn.Module):
    """conv -> norm -> ReLU, named `conv`/`bn` like mmcv's ConvModule with a BN norm."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, norm: NormFactory = nn.BatchNorm2d):
        super().__init__()
        # no conv bias: the following BatchNorm has one (mmcv's bias='auto')
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = norm(out_channels)
        self.activate = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.activate(self.bn(self.conv(x)))


class SeparateHead(nn.Module):
    """One task group: for every output (reg, height, ..., heatmap) a small conv stack of
    `num_conv - 1` ConvBNReLU layers and a final biased conv."""

    def __init__(self, in_channels: int, heads: Mapping[str, tuple[int, int]], head_conv: int = 64,
                 final_kernel: int = 3, init_bias: float = -2.19, norm: NormFactory = nn.BatchNorm2d):
        super().__init__()
        self.heads = dict(heads)
        for name, (channels, num_conv) in self.heads.items():
            layers: list[nn.Module] = []
            c_in = in_channels
            for _ in range(num_conv - 1):
                layers.append(ConvBNReLU(c_in, head_conv, final_kernel, norm))
                c_in = head_conv
            layers.append(nn.Conv2d(c_in, channels, final_kernel, padding=final_kernel // 2, bias=True))
            self.add_module(name, nn.Sequential(*layers))
        self._init_weights(init_bias)

    def _init_weights(self, init_bias: float) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if "heatmap" in self.heads:
            # focal-loss prior: start every heatmap at sigmoid(-2.19) ~ 0.1 so training is stable
            nn.init.constant_(getattr(self, "heatmap")[-1].bias, init_bias)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {name: getattr(self, name)(x) for name in self.heads}


class CenterHead(nn.Module):
    """Shared 3x3 conv, then one `SeparateHead` per task group.

    `tasks` lists the class names of each group (e.g. `cache_schema.grid.NUSCENES_TASKS`).
    `common_heads` maps an output name to its channel count, or to `(channels, num_conv)` as in
    mmdet3d configs (an int means `num_conv=2`). `forward` returns one dict per task group with the
    raw outputs `reg, height, dim, rot, vel` and `heatmap` (logits, one channel per class of the
    group). `dim` is log-size when the model was trained with mmdet3d's `norm_bbox=True`.
    """

    def __init__(self, in_channels: int, tasks: Sequence[Sequence[str]], share_conv_channel: int = 64,
                 head_conv: int = 64, common_heads: Mapping[str, int | Sequence[int]] | None = None,
                 num_heatmap_convs: int = 2, final_kernel: int = 3, init_bias: float = -2.19,
                 norm: NormFactory = nn.BatchNorm2d):
        super().__init__()
        self.tasks = tuple(tuple(t) for t in tasks)
        heads: dict[str, tuple[int, int]] = {}
        for name, spec in (DEFAULT_COMMON_HEADS if common_heads is None else common_heads).items():
            heads[name] = (int(spec), 2) if isinstance(spec, int) else (int(spec[0]), int(spec[1]))
        self.common_heads = heads
        self.shared_conv = ConvBNReLU(in_channels, share_conv_channel, 3, norm)
        self.task_heads = nn.ModuleList(
            SeparateHead(share_conv_channel, {**heads, "heatmap": (len(t), num_heatmap_convs)}, head_conv,
                         final_kernel, init_bias, norm)
            for t in self.tasks)

    @property
    def num_classes(self) -> list[int]:
        return [len(t) for t in self.tasks]

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names in heatmap-channel order when the task groups' heatmaps are concatenated."""
        return tuple(c for t in self.tasks for c in t)

    def forward(self, x: Tensor) -> list[dict[str, Tensor]]:
        x = self.shared_conv(x)
        return [task(x) for task in self.task_heads]


def bn2d_mmdet3d(eps: float = 1e-5, momentum: float = 0.1) -> NormFactory:
    """A BatchNorm2d factory with explicit eps/momentum (mmdet3d configs set them per module)."""
    def make(channels: int) -> nn.Module:
        return nn.BatchNorm2d(channels, eps=eps, momentum=momentum)
    return make


def concat_task_heatmaps(outputs: Sequence[Mapping[str, Tensor]]) -> Tensor:
    """Heatmap logits of all task groups stacked along channels, in `CenterHead.class_names` order."""
    return torch.cat([o["heatmap"] for o in outputs], dim=1)
