"""The voxel CenterPoint's 3D part: `HardSimpleVFE` and the `SparseEncoder`, named like mmdet3d's.

HardSimpleVFE averages the points of each voxel. The SparseEncoder is SECOND's sparse 3D backbone as
mmdet3d 1.4 builds it with `block_type='basicblock'` (the CenterPoint voxel configs):

    conv_input        SubMConv3d 3x3x3 -> BN1d -> ReLU                          (in -> base channels)
    encoder_layer{i}  per stage, residual SparseBasicBlocks (two SubMConv3d 3x3x3 + BN1d, identity
                      shortcut), and at the end of every stage but the last a SparseConv3d 3x3x3 of
                      stride 2 (with that stage's padding) -> BN1d -> ReLU
    conv_out          SparseConv3d (3, 1, 1) of stride (2, 1, 1) -> BN1d -> ReLU
    then the sparse tensor is made dense (B, C, D, H, W) and D is folded into channels (B, C*D, H, W).

Sparse convolutions come from spconv (CPU and CUDA wheels on the package registry), imported only when
a voxel teacher is built; the weights are spconv's own layout (out, kD, kH, kW, in), as mmdet3d saves
them when spconv is installed, so mmdet3d checkpoints load as they are.
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from cache_schema.errors import UserInputError

SPCONV_MISSING = ("the voxel CenterPoint teachers need spconv (sparse 3D convolutions): pip install spconv "
                  "(CPU) or spconv-cu120 / spconv-cu121 ... matching your CUDA, or pip install 'x3kd[voxel]'")


def import_spconv():
    """spconv.pytorch, or a one-line UserInputError that says how to install it."""
    try:
        import spconv.pytorch as spconv
    except ImportError:
        raise UserInputError(SPCONV_MISSING) from None
    return spconv


class HardSimpleVFE(nn.Module):
    """Mean of the first `num_features` features of the points in each voxel."""

    def __init__(self, num_features: int = 4) -> None:
        super().__init__()
        self.num_features = int(num_features)

    def forward(self, voxels: Tensor, num_points: Tensor, coors: Tensor) -> Tensor:
        summed = voxels[:, :, :self.num_features].sum(dim=1)
        return summed / num_points.to(voxels.dtype).view(-1, 1)


def _bn1d(channels: int, eps: float, momentum: float) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(channels, eps=eps, momentum=momentum)


def _conv_block(spconv, kind: str, c_in: int, c_out: int, kernel, stride, padding, eps: float, momentum: float,
                indice_key: str | None):
    """mmdet3d's `make_sparse_convmodule` with order (conv, norm, act): parameters `0.weight`, `1.*`."""
    conv_cls = _conv_classes(spconv)[kind]
    return spconv.SparseSequential(
        conv_cls(c_in, c_out, kernel, stride=stride, padding=padding, bias=False, indice_key=indice_key),
        _bn1d(c_out, eps, momentum), nn.ReLU(inplace=True))


@functools.cache
def _conv_classes(spconv) -> dict[str, type]:
    """spconv's SubMConv3d and SparseConv3d with two things pinned, because importing mmdet3d patches
    spconv's base class for the whole process (its kernel-layout conversion on load):
    - state_dict metadata version 2 = spconv-2 kernel layout (out, kD, kH, kW, in), so mmdet3d reads a
      checkpoint written here (fit-teacher) without permuting it;
    - torch's own `_load_from_state_dict`, so loading here never depends on whether mmdet3d was imported
      (our checkpoint loader converts mmcv-layout kernels itself)."""
    def pinned(cls: type) -> type:
        return type(cls.__name__, (cls,), {"_version": 2, "__module__": __name__,
                                           "_load_from_state_dict": nn.Module._load_from_state_dict})
    return {"subm": pinned(spconv.SubMConv3d), "sparse": pinned(spconv.SparseConv3d)}


def _sparse_basic_block(spconv, channels: int, eps: float, momentum: float) -> nn.Module:
    class SparseBasicBlock(spconv.SparseModule):
        """Two submanifold 3x3x3 convs with BN, identity shortcut, ReLU after the sum."""

        def __init__(self) -> None:
            super().__init__()
            subm = _conv_classes(spconv)["subm"]
            self.conv1 = subm(channels, channels, 3, stride=1, padding=1, bias=False)
            self.bn1 = _bn1d(channels, eps, momentum)
            self.conv2 = subm(channels, channels, 3, stride=1, padding=1, bias=False)
            self.bn2 = _bn1d(channels, eps, momentum)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            identity = x.features
            out = self.conv1(x)
            out = out.replace_feature(self.relu(self.bn1(out.features)))
            out = self.conv2(out)
            out = out.replace_feature(self.relu(self.bn2(out.features) + identity))
            return out

    return SparseBasicBlock()


class SparseEncoder(nn.Module):
    """mmdet3d's SparseEncoder (basicblock variant): voxel features (V, C) at coors (V, 4) as
    (batch, z, y, x) -> dense BEV (B, output_channels * D_out, H, W)."""

    def __init__(self, in_channels: int, sparse_shape: Sequence[int], base_channels: int = 16,
                 output_channels: int = 128,
                 encoder_channels: Sequence[Sequence[int]] = ((16, 16, 32), (32, 32, 64), (64, 64, 128), (128, 128)),
                 encoder_paddings: Sequence[Sequence] = ((0, 0, 1), (0, 0, 1), (0, 0, (0, 1, 1)), (0, 0)),
                 eps: float = 1e-3, momentum: float = 0.01) -> None:
        super().__init__()
        spconv = import_spconv()
        self._spconv = spconv
        self.sparse_shape = [int(s) for s in sparse_shape]
        self.conv_input = _conv_block(spconv, "subm", in_channels, base_channels, 3, 1, 1, eps, momentum, "subm1")
        stages = []
        c_in = base_channels
        last = len(encoder_channels) - 1
        for i, (channels, paddings) in enumerate(zip(encoder_channels, encoder_paddings)):
            blocks = []
            for j, (c_out, pad) in enumerate(zip(channels, paddings)):
                if j == len(channels) - 1 and i != last:
                    blocks.append(_conv_block(spconv, "sparse", c_in, c_out, 3, 2, _padding(pad), eps, momentum,
                                              f"spconv{i + 1}"))
                else:
                    if c_out != c_in:
                        raise UserInputError(f"SparseEncoder: a basic block of stage {i + 1} maps {c_in} to {c_out} "
                                             "channels; mmdet3d's basicblock encoder keeps them equal")
                    blocks.append(_sparse_basic_block(spconv, c_out, eps, momentum))
                c_in = c_out
            stages.append((f"encoder_layer{i + 1}", spconv.SparseSequential(*blocks)))
        self.encoder_layers = spconv.SparseSequential()
        for name, stage in stages:
            self.encoder_layers.add_module(name, stage)
        self.conv_out = _conv_block(spconv, "sparse", c_in, output_channels, (3, 1, 1), (2, 1, 1), 0, eps, momentum,
                                    "spconv_down2")

    def forward(self, voxel_features: Tensor, coors: Tensor, batch_size: int) -> Tensor:
        x = self._spconv.SparseConvTensor(voxel_features, coors.int(), self.sparse_shape, batch_size)
        with _one_cpu_thread(voxel_features.device):
            x = self.conv_out(self.encoder_layers(self.conv_input(x)))
        dense = x.dense()
        b, c, d, h, w = dense.shape
        return dense.reshape(b, c * d, h, w)


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device):
    """spconv 2.3.8's CPU kernels are not deterministic with more than one thread (measured: two runs on
    the same voxels with 2 threads differ by 1% relative L2 after the encoder, and in which output
    sites exist; with 1 thread they are bit-identical). A cache must not depend on the thread count,
    so on CPU the sparse part runs single-threaded (its cost: BENCHMARKS.md, export rows)."""
    if device.type != "cpu" or torch.get_num_threads() == 1:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _padding(pad) -> int | tuple[int, ...]:
    return tuple(int(p) for p in pad) if isinstance(pad, (list, tuple)) else int(pad)


