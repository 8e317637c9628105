"""CenterPoint (pillar and voxel variants) assembled from its parts, built from an mmdet3d model config dict.

pillar: hard voxelization -> PillarFeatureNet -> PointPillarsScatter -> SECOND -> SECONDFPN -> CenterHead;
voxel:  hard voxelization -> HardSimpleVFE -> SparseEncoder (spconv) -> SECOND -> SECONDFPN -> CenterHead.

The module tree mirrors mmdet3d's `CenterPoint` (`pts_voxel_encoder`, `pts_middle_encoder`,
`pts_backbone`, `pts_neck`, `pts_bbox_head`), so `state_dict()` keys equal an mmdet3d checkpoint's.
The builder reads the config's plain values; no registry, no config inheritance.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from cache_schema.errors import UserInputError
from cache_schema.grid import BevGrid
from detection.centerpoint_coder import BoxCoderConfig, Detections, decode_detections
from detection.center_head import CenterHead, bn2d_mmdet3d
from detection.pillar_encoder import PillarFeatureNet, PointPillarsScatter
from teacher_export.teachers.centerpoint.second import SECOND, SECONDFPN
from detection.voxelize import Voxels, voxelize_batch


@dataclass(frozen=True)
class VoxelLayerConfig:
    """mmdet3d `data_preprocessor.voxel_layer` (hard voxelization)."""

    voxel_size: tuple[float, float, float]
    point_cloud_range: tuple[float, float, float, float, float, float]
    max_num_points: int
    max_voxels: int  # the test-time value (mmdet3d's second entry of a (train, test) pair)


@dataclass
class CenterPointOutput:
    """Batched raw outputs: the neck's BEV features (B, C, H, W) and the head's per-task dicts."""

    voxels: Voxels
    bev_features: Tensor
    head: list[dict[str, Tensor]]


class CenterPoint(nn.Module):
    """CenterPoint: voxelize -> voxel encoder -> middle encoder (to a dense BEV canvas) -> SECOND ->
    SECONDFPN -> CenterHead. The encoders are PillarFeatureNet + PointPillarsScatter (pillar configs)
    or HardSimpleVFE + SparseEncoder (voxel configs); both take (voxels, num_points, coors) and
    (features, coors, batch_size)."""

    def __init__(self, voxel_layer: VoxelLayerConfig, pts_voxel_encoder: nn.Module,
                 pts_middle_encoder: nn.Module, pts_backbone: SECOND, pts_neck: SECONDFPN,
                 pts_bbox_head: CenterHead, coder: BoxCoderConfig):
        super().__init__()
        self.voxel_layer = voxel_layer
        self.pts_voxel_encoder = pts_voxel_encoder
        self.pts_middle_encoder = pts_middle_encoder
        self.pts_backbone = pts_backbone
        self.pts_neck = pts_neck
        self.pts_bbox_head = pts_bbox_head
        self.coder = coder

    @property
    def grid(self) -> BevGrid:
        return self.coder.grid

    def voxelize(self, points: Sequence[Tensor]) -> Voxels:
        v = self.voxel_layer
        return voxelize_batch(points, v.voxel_size, v.point_cloud_range, v.max_num_points, v.max_voxels)

    def forward(self, points: Sequence[Tensor]) -> CenterPointOutput:
        """points: one (N_i, C) float tensor per sample, on the model's device."""
        return self.forward_voxels(self.voxelize(points), len(points))

    def forward_voxels(self, vox: Voxels, batch_size: int) -> CenterPointOutput:
        """The network after voxelization (training reuses voxels computed once per sample)."""
        pillars = self.pts_voxel_encoder(vox.voxels, vox.num_points, vox.coors)
        canvas = self.pts_middle_encoder(pillars, vox.coors, batch_size)
        if next(self.pts_backbone.parameters()).is_contiguous(memory_format=torch.channels_last):
            # a model moved to channels_last (CPU training: ~1.5x faster convs at these narrow widths)
            canvas = canvas.contiguous(memory_format=torch.channels_last)
        bev = self.pts_neck(self.pts_backbone(canvas))
        return CenterPointOutput(vox, bev, self.pts_bbox_head(bev))

    def decode(self, head: Sequence[Mapping[str, Tensor]]) -> list[Detections]:
        """Boxes per sample in the cache_schema convention (gravity-centre z); labels index
        `self.pts_bbox_head.class_names`."""
        return decode_detections(head, self.coder)

    @classmethod
    def from_mmdet3d_config(cls, config: Mapping[str, Any] | str) -> "CenterPoint":
        """Build from an mmdet3d `model` config dict (or its JSON), e.g. the one of
        `centerpoint_pillar02_second_secfpn_8xb4-cyclic-20e_nus-3d.py`."""
        cfg = json.loads(config) if isinstance(config, str) else config
        try:
            return _build(cfg)
        except UserInputError:
            raise
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise UserInputError(f"CenterPoint model config: cannot build ({type(e).__name__}: {e})") from None


def point_features(model_config: Mapping[str, Any]) -> int:
    """How many point columns the network reads: PillarFeatureNet's `in_channels`, HardSimpleVFE's
    `num_features` (mmdet3d's default 4 for either)."""
    encoder = model_config["pts_voxel_encoder"]
    return int(encoder.get("in_channels", encoder.get("num_features", 4)))


def _expect_type(section: Mapping[str, Any], name: str, allowed: Sequence[str]) -> None:
    t = section.get("type")
    if t not in allowed:
        raise UserInputError(f"CenterPoint model config: {name}.type is {t!r}; the built-in teacher supports "
                             f"{' / '.join(allowed)} (use the 'mmdet3d' adapter for other CenterPoint variants)")


def _bn(norm_cfg: Mapping[str, Any] | None, default_eps: float, default_momentum: float) -> tuple[float, float]:
    norm_cfg = norm_cfg or {}
    if norm_cfg.get("type", "BN") not in ("BN", "BN1d", "BN2d", "SyncBN", "naiveSyncBN2d"):
        raise UserInputError(f"CenterPoint model config: norm type {norm_cfg.get('type')!r} is not supported (BatchNorm only)")
    return float(norm_cfg.get("eps", default_eps)), float(norm_cfg.get("momentum", default_momentum))


def _pair_last(v: Any) -> int:
    return int(v[1] if isinstance(v, (list, tuple)) else v)


def _build(cfg: Mapping[str, Any]) -> CenterPoint:
    _expect_type(cfg, "model", ["CenterPoint"])
    pre = cfg["data_preprocessor"]
    if not pre.get("voxel", False) or pre.get("voxel_type", "hard") != "hard":
        raise UserInputError("CenterPoint model config: data_preprocessor must use hard voxelization (voxel=True)")
    vl = pre["voxel_layer"]
    voxel_layer = VoxelLayerConfig(tuple(float(v) for v in vl["voxel_size"]),
                                   tuple(float(v) for v in vl["point_cloud_range"]),
                                   int(vl["max_num_points"]), _pair_last(vl["max_voxels"]))

    ve = cfg["pts_voxel_encoder"]
    _expect_type(ve, "pts_voxel_encoder", ["PillarFeatureNet", "HardSimpleVFE"])
    me = cfg["pts_middle_encoder"]
    if ve["type"] == "HardSimpleVFE":
        encoder, middle = _voxel_encoders(ve, me)
    else:
        encoder, middle = _pillar_encoders(ve, me, vl)
    canvas_channels = _canvas_channels(me)

    bb = cfg["pts_backbone"]
    _expect_type(bb, "pts_backbone", ["SECOND"])
    eps, mom = _bn(bb.get("norm_cfg"), 1e-3, 0.01)
    if (bb.get("conv_cfg") or {}).get("bias", False):
        raise UserInputError("CenterPoint model config: pts_backbone.conv_cfg.bias=True is not supported")
    if canvas_channels is not None and int(bb["in_channels"]) != canvas_channels:
        raise UserInputError(f"CenterPoint model config: pts_backbone.in_channels is {bb['in_channels']}, but the "
                             f"middle encoder gives {canvas_channels} channels")
    backbone = SECOND(int(bb["in_channels"]), [int(c) for c in bb["out_channels"]], [int(n) for n in bb["layer_nums"]],
                      [int(s) for s in bb["layer_strides"]], eps, mom)

    nk = cfg["pts_neck"]
    _expect_type(nk, "pts_neck", ["SECONDFPN"])
    eps, mom = _bn(nk.get("norm_cfg"), 1e-3, 0.01)
    if (nk.get("upsample_cfg") or {}).get("bias", False) or (nk.get("conv_cfg") or {}).get("bias", False):
        raise UserInputError("CenterPoint model config: biased convs in pts_neck are not supported")
    neck = SECONDFPN([int(c) for c in nk["in_channels"]], [int(c) for c in nk["out_channels"]],
                     [float(s) for s in nk["upsample_strides"]], eps, mom,
                     bool(nk.get("use_conv_for_no_stride", False)))

    hd = cfg["pts_bbox_head"]
    _expect_type(hd, "pts_bbox_head", ["CenterHead"])
    sep = hd.get("separate_head", {})
    _expect_type(sep, "pts_bbox_head.separate_head", ["SeparateHead"])
    head_bn = _bn(hd.get("norm_cfg", {"type": "BN2d"}), 1e-5, 0.1)
    if _bn(sep.get("norm_cfg", {"type": "BN2d"}), 1e-5, 0.1) != head_bn:
        raise UserInputError("CenterPoint model config: different norm_cfg in CenterHead and SeparateHead is not supported")
    head = CenterHead(
        in_channels=int(hd["in_channels"]), tasks=[tuple(t["class_names"]) for t in hd["tasks"]],
        share_conv_channel=int(hd.get("share_conv_channel", 64)), head_conv=int(sep.get("head_conv", 64)),
        common_heads={k: (int(v[0]), int(v[1])) for k, v in hd["common_heads"].items()},
        num_heatmap_convs=int(hd.get("num_heatmap_convs", 2)), final_kernel=int(sep.get("final_kernel", 1)),
        init_bias=float(sep.get("init_bias", -2.19)), norm=bn2d_mmdet3d(*head_bn))

    test_cfg = (cfg.get("test_cfg") or {}).get("pts") or hd.get("test_cfg")
    if not test_cfg:
        raise UserInputError("CenterPoint model config: test_cfg.pts is missing")
    grid = BevGrid(voxel_layer.point_cloud_range, voxel_layer.voxel_size, int(hd["bbox_coder"]["out_size_factor"]))
    coder = BoxCoderConfig.from_mmdet3d(hd["bbox_coder"], test_cfg, grid, bool(hd.get("norm_bbox", True)))
    return CenterPoint(voxel_layer, encoder, middle, backbone, neck, head, coder)


def _pillar_encoders(ve: Mapping[str, Any], me: Mapping[str, Any], vl: Mapping[str, Any]) -> tuple[nn.Module, nn.Module]:
    _expect_type(me, "pts_middle_encoder", ["PointPillarsScatter"])
    eps, mom = _bn(ve.get("norm_cfg"), 1e-3, 0.01)
    encoder = PillarFeatureNet(
        in_channels=int(ve.get("in_channels", 4)), feat_channels=[int(c) for c in ve.get("feat_channels", (64,))],
        with_distance=bool(ve.get("with_distance", False)),
        with_cluster_center=bool(ve.get("with_cluster_center", True)),
        with_voxel_center=bool(ve.get("with_voxel_center", True)),
        voxel_size=ve.get("voxel_size", vl["voxel_size"]),
        point_cloud_range=ve.get("point_cloud_range", vl["point_cloud_range"]),
        eps=eps, momentum=mom, mode=ve.get("mode", "max"), legacy=bool(ve.get("legacy", True)))
    return encoder, PointPillarsScatter(int(me["in_channels"]), me["output_shape"])


def _voxel_encoders(ve: Mapping[str, Any], me: Mapping[str, Any]) -> tuple[nn.Module, nn.Module]:
    from teacher_export.teachers.centerpoint.sparse_encoder import HardSimpleVFE, SparseEncoder

    _expect_type(me, "pts_middle_encoder", ["SparseEncoder"])
    if me.get("block_type", "conv_module") != "basicblock" or tuple(me.get("order", ("conv", "norm", "act"))) != \
            ("conv", "norm", "act"):
        raise UserInputError("CenterPoint model config: the built-in SparseEncoder supports block_type='basicblock' "
                             "with order (conv, norm, act), as CenterPoint's voxel configs use")
    eps, mom = _bn(me.get("norm_cfg", {"type": "BN1d"}), 1e-3, 0.01)
    num_features = int(ve.get("num_features", 4))
    if int(me["in_channels"]) != num_features:
        raise UserInputError(f"CenterPoint model config: pts_middle_encoder.in_channels is {me['in_channels']}, but "
                             f"HardSimpleVFE gives {num_features} features")
    middle = SparseEncoder(
        int(me["in_channels"]), me["sparse_shape"], int(me.get("base_channels", 16)),
        int(me.get("output_channels", 128)), me["encoder_channels"], me["encoder_paddings"], eps, mom)
    return HardSimpleVFE(num_features), middle


def _canvas_channels(me: Mapping[str, Any]) -> int | None:
    """Channels of the dense BEV canvas the middle encoder hands to the backbone, where the config fixes it."""
    if me["type"] == "PointPillarsScatter":
        return int(me["in_channels"])
    # SparseEncoder: a 3x3x3 stride-2 conv ends every stage but the last (z padding from
    # encoder_paddings), then conv_out (3, 1, 1) / (2, 1, 1) without padding; z is folded into channels.
    depth = int(me["sparse_shape"][0])
    for paddings in me["encoder_paddings"][:-1]:
        pad = paddings[-1]
        pad_z = int(pad[0]) if isinstance(pad, (list, tuple)) else int(pad)
        depth = (depth + 2 * pad_z - 3) // 2 + 1
    depth = (depth - 3) // 2 + 1
    return int(me.get("output_channels", 128)) * depth
