"""The BEVDepth-style camera student, composed explicitly from its five parts (the radar student,
`radar_student.py`, shares its BEV encoder, head, outputs and prediction).

    images --image_backbone--> PV features --depth_net--> depth logits + context
           --view_transform (Lift-Splat)--> BEV --bev_encoder--> BEV features --head--> CenterHead maps

`forward` returns every intermediate a loss needs (`StudentOutputs`); losses are a separate, explicit
step (`student.losses.X3KDLoss`), which also owns every training-only module (X-FD adapter, X-AT
discriminator, X-IS heads). The inference model is therefore exactly this module, whatever losses
were used to train it. `predict` decodes detections with the shared CenterPoint box coder.
"""
from __future__ import annotations

import torch

from detection.center_head import CenterHead
from detection.centerpoint_coder import BoxCoderConfig

from ..batch import StudentBatch
from ..config import StudentConfig
from .base import BevStudent, StudentOutputs
from .bev_encoder import BevEncoder
from .depth_net import DepthNet, camera_parameters
from .image_backbone import ImageBackbone
from .view_transform import LSSViewTransform

__all__ = ["BEVDepthStudent", "BevStudent", "StudentOutputs", "build_student"]


class BEVDepthStudent(BevStudent):
    """Multi-camera 3D detector: image backbone -> depth net -> Lift-Splat -> BEV encoder -> CenterHead."""

    def __init__(self, image_backbone: ImageBackbone, depth_net: DepthNet, view_transform: LSSViewTransform,
                 bev_encoder: BevEncoder, head: CenterHead, box_coder: BoxCoderConfig, key_frames: int = 1) -> None:
        super().__init__()
        self.key_frames = key_frames
        self.image_backbone = image_backbone
        self.depth_net = depth_net
        self.view_transform = view_transform
        self.bev_encoder = bev_encoder
        self.head = head
        self.box_coder = box_coder

    def forward(self, batch: StudentBatch) -> StudentOutputs:
        b, n, _, h, w = batch.images.shape
        pv = self.image_backbone(batch.images.flatten(0, 1))
        cam = camera_parameters(batch.intrinsics, batch.ida, batch.bda, batch.cam2lidar).flatten(0, 1)
        depth_logits, context = self.depth_net(pv, cam.to(pv.dtype))
        if depth_logits.shape[-2:] != self.view_transform.frustum.shape[1:3]:
            raise ValueError(f"images of {h}x{w} give features {tuple(depth_logits.shape[-2:])}, but the view "
                             f"transform was built for {tuple(self.view_transform.frustum.shape[1:3])}")
        bev_view = self.view_transform(depth_logits, context, batch.intrinsics, batch.cam2lidar, batch.bda)
        if self.key_frames == 2:
            bev_view = torch.cat([bev_view, self._previous_frame(batch, cam)], 1)
        bev = self.bev_encoder(bev_view)
        return StudentOutputs(pv, depth_logits, bev_view, bev, self.head(bev))

    @torch.no_grad()
    def _previous_frame(self, batch: StudentBatch, cam: torch.Tensor) -> torch.Tensor:
        """The previous key frame's BEV map on this frame's grid, as BEVDepth makes it: the same image
        branch without gradient (its cost is inference only), the depth net conditioned on THIS frame's
        camera parameters `cam` (BEVDepth feeds every frame the key frame's), its frustum lifted with its
        own intrinsics and its cameras' pose in this frame's LiDAR frame, under the same BEV augmentation."""
        if batch.prev_images is None:
            raise ValueError("a two-key-frame student (model.key_frames: 2) needs batch.prev_images")
        pv = self.image_backbone(batch.prev_images.flatten(0, 1))
        depth_logits, context = self.depth_net(pv, cam.to(pv.dtype))
        return self.view_transform(depth_logits, context, batch.prev_intrinsics, batch.prev_cam2lidar, batch.bda)


def build_student(cfg: StudentConfig) -> BevStudent:
    """The inference model described by `cfg` (training-only loss modules are built by X3KDLoss)."""
    if cfg.modality == "radar":
        from .radar_student import build_radar_student

        return build_radar_student(cfg)
    backbone = ImageBackbone(cfg.backbone.depth, cfg.backbone.neck_channels, cfg.backbone.weights,
                             cfg.backbone.frozen_stages, cfg.backbone.neck, cfg.backbone.base_width)
    dn = cfg.depth_net
    depth_net = DepthNet(backbone.out_channels, dn.mid_channels, dn.context_channels, dn.num_bins, dn.camera_aware,
                         dn.residual_blocks, dn.aspp, dn.deformable)
    view = LSSViewTransform(cfg.grid, dn.d_bound, cfg.image_size, backbone.stride,
                            dn.context_channels if dn.aggregation else None)
    be = cfg.bev_encoder
    encoder = BevEncoder(dn.context_channels * cfg.key_frames, be.stage_channels, be.stage_blocks, be.stage_strides,
                         be.out_channels, be.neck)
    head = CenterHead(be.out_channels, cfg.class_setup.tasks, cfg.head.share_conv_channel, cfg.head.head_conv,
                      {k: tuple(v) for k, v in cfg.head.common_heads.items()})
    return BEVDepthStudent(backbone, depth_net, view, encoder, head, BoxCoderConfig.on_grid(cfg.grid, cfg.test),
                           cfg.key_frames)
