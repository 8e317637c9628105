"""What every student model shares: its outputs (`StudentOutputs`, every intermediate a loss reads) and
`BevStudent`, a CenterHead on the teacher's BEV grid whose `predict` decodes the head's maps with the
shared CenterPoint box coder. The camera student (student.py) and the radar student (radar_student.py)
both build on it."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from detection.center_head import CenterHead
from detection.centerpoint_coder import BoxCoderConfig, Detections, decode_detections

from ..batch import StudentBatch

@dataclass
class StudentOutputs:
    """Intermediates of one forward pass (M = B * N camera images).

    pv_features:  [M, C_pv, h, w] stride-16 image features (X-IS); None for the radar student.
    depth_logits: [M, D, h, w] (DS); None for the radar student.
    bev_view:     [B, C_ctx, H, W] BEV features right after the view transform, or the radar pillar
                  canvas (X-FD/X-AT option).
    bev_features: [B, C_bev, H, W] BEV encoder output, the head's input (X-FD/X-AT default).
    head_outputs: one dict per task group: reg, height, dim, rot, vel, heatmap (logits) (det, X-OD)."""

    pv_features: torch.Tensor | None
    depth_logits: torch.Tensor | None
    bev_view: torch.Tensor
    bev_features: torch.Tensor
    head_outputs: list[dict[str, torch.Tensor]]


class BevStudent(nn.Module):
    """What every student shares: a CenterHead on the teacher's BEV grid, and `predict`, which decodes
    its maps with the shared CenterPoint box coder (`self.box_coder`, set by the subclass)."""

    head: CenterHead
    box_coder: BoxCoderConfig

    def forward(self, batch: StudentBatch) -> StudentOutputs:
        raise NotImplementedError

    @property
    def class_names(self) -> tuple[str, ...]:
        """The classes `predict`'s labels index (the head's task groups, concatenated)."""
        return self.head.class_names

    @torch.no_grad()
    def predict(self, batch: StudentBatch) -> list[Detections]:
        """Detections per sample in the un-augmented LiDAR frame; labels index the head's class list."""
        from detection.bev_aug import augment_boxes

        dets = decode_detections(self.forward(batch).head_outputs, self.box_coder)
        out = []
        for d, bda in zip(dets, batch.bda):
            # Undo the BEV augmentation, so test-time flips give boxes in the sample's frame.
            inv = torch.linalg.inv(bda.double()).to(d.boxes.dtype)
            out.append(Detections(augment_boxes(d.boxes, inv), d.scores, d.labels))
        return out
