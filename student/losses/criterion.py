"""X3KDLoss: every enabled loss term of one training step, and the modules only training needs.

Called after the model: `losses = criterion(model(batch), batch)`; the optimiser steps on
`sum(v for k, v in losses.items() if k.startswith("loss_"))`. Keys without the `loss_` prefix are
detached parts for logging. A term is computed only when it is enabled and its weight is non-zero
(KD-only training = det weight 0)."""
from __future__ import annotations

import torch
from torch import nn

from cache_schema.errors import UserInputError

from ..batch import StudentBatch
from ..config import StudentConfig, term_on
from ..models.student import StudentOutputs
from detection.det_loss import det_loss
from .ds import ds_loss
from .xat import BevDiscriminator, xat_loss
from .xfd import box_cell_weights, standardize_teacher, xfd_loss
from .xis import XISHeads, xis_loss
from .xod import xod_loss


class X3KDLoss(nn.Module):
    """det, DS, X-FD, X-AT, X-OD and X-IS for a student built from the same `StudentConfig`.

    teacher_mean / teacher_std: per-channel statistics of the teacher BEV feature from the store,
    used when `loss.xfd.standardize` is set."""

    def __init__(self, cfg: StudentConfig, teacher_mean: torch.Tensor | None = None,
                 teacher_std: torch.Tensor | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        lc = cfg.losses
        if lc.xfd.feature == "encoder":
            student_ch = cfg.bev_encoder.out_channels
        else:  # the BEV map the encoder starts from: pooled frustum context, or the radar pillar canvas
            student_ch = (cfg.radar.pillar_channels[-1] if cfg.modality == "radar"
                          else cfg.depth_net.context_channels * cfg.key_frames)
        self.adapter = (nn.Conv2d(student_ch, cfg.teacher_bev_channels, 1)
                        if term_on(lc.xfd) or term_on(lc.xat) else None)
        self.discriminator = (BevDiscriminator(cfg.teacher_bev_channels, lc.xat.hidden_channels)
                              if term_on(lc.xat) else None)
        self.xis_heads = (XISHeads(cfg.backbone.neck_channels, len(cfg.classes), lc.xis)
                          if term_on(lc.xis) else None)
        if lc.xfd.standardize and (teacher_mean is None or teacher_std is None):
            raise UserInputError("loss.xfd.standardize is set but the store has no teacher feature statistics")
        self.register_buffer("teacher_mean", teacher_mean if lc.xfd.standardize else None)
        self.register_buffer("teacher_std", teacher_std if lc.xfd.standardize else None)
        # How far the run is, in [0, 1]: the trainer sets it before each step (X-AT's ramp reads it).
        self.progress = 1.0

    @property
    def reaches_every_parameter(self) -> bool:
        """Whether every step's loss has a gradient path to every trainable parameter of student and
        criterion, so data parallelism need not search for unused ones. The detection head is reached only
        through det and X-OD; each enabled term connects its own modules even when it has nothing to
        learn from (X-IS on images without pseudo-labels)."""
        lc = self.cfg.losses
        return term_on(lc.det) or term_on(lc.xod)

    @staticmethod
    def _need(value, what: str, term: str):
        if value is None:
            raise UserInputError(f"loss.{term} is enabled but the batch has no {what}; set loss.{term}.enabled=false "
                                 "or use a cache that has it")
        return value

    def forward(self, out: StudentOutputs, batch: StudentBatch) -> dict[str, torch.Tensor]:
        lc, cfg = self.cfg.losses, self.cfg
        batch = batch.with_teacher_in_augmented_frame(cfg.grid, cfg.class_setup)  # the trainer has, usually
        losses: dict[str, torch.Tensor] = {}
        if term_on(lc.det):
            if len(batch.gt_boxes) != batch.batch_size or len(batch.gt_labels) != batch.batch_size:
                raise UserInputError(f"loss.det is enabled but the batch has {len(batch.gt_boxes)} GT box lists "
                                     f"for {batch.batch_size} samples; set loss.det.weight=0 for KD-only")
            targets = self._need(batch.det_targets, "CenterPoint targets (the dataset builds them)", "det")
            losses.update(det_loss(out.head_outputs, targets, lc.det))
        if term_on(lc.ds):
            depth = self._need(batch.depth_targets, "depth targets", "ds")
            losses.update(ds_loss(out.depth_logits, depth, cfg.depth_net.d_bound, lc.ds))
        teacher = batch.teacher
        if term_on(lc.xfd) or term_on(lc.xat):
            t_feat = self._need(teacher and teacher.bev_features, "teacher BEV features", "xfd/xat")
            t_feat = standardize_teacher(t_feat.float(), self.teacher_mean, self.teacher_std)
            s_feat = out.bev_features if lc.xfd.feature == "encoder" else out.bev_view
            adapted = self.adapter(s_feat)
            if term_on(lc.xfd):
                foreground = None
                if lc.xfd.region == "gt_gaussian":
                    foreground = gt_gaussians(batch.det_targets)
                elif lc.xfd.region == "gt_boxes":
                    foreground = box_cell_weights(batch.gt_boxes, cfg.grid, t_feat.device)
                losses.update(xfd_loss(adapted, t_feat, teacher.heatmaps, lc.xfd, teacher.valid, foreground,
                                       batch.gt_boxes if lc.xfd.region == "box_points" else None, cfg.grid))
            if term_on(lc.xat):
                losses.update(xat_loss(self.discriminator, adapted, t_feat, lc.xat, teacher.valid, teacher.heatmaps,
                                       self.progress))
        if term_on(lc.xod):
            hm = self._need(teacher and teacher.heatmaps, "teacher heatmaps", "xod")
            reg = self._need(teacher.regression, "teacher regression maps", "xod")
            region = gt_gaussians(batch.det_targets) > 0 if lc.xod.region == "gt" else None
            losses.update(xod_loss(out.head_outputs, hm, reg, cfg.class_setup, lc.xod, teacher.valid,
                                   teacher.reg_task, region))
        if term_on(lc.xis) and self.training:
            targets = self._need(batch.xis_targets, "X-IS pseudo labels (the dataset builds them)", "xis")
            losses.update(xis_loss(self.xis_heads, out.pv_features, batch.images.flatten(0, 1), targets, lc.xis))
        return losses


def gt_gaussians(det_targets: list | None) -> torch.Tensor:
    """[B, 1, H, W]: the GT boxes' CenterPoint Gaussians (the det targets the dataset built), max over
    every class: the foreground the GT-gated KD variants use."""
    if det_targets is None:
        raise UserInputError("a GT-gated KD variant (loss.xfd.region gt_*, loss.xod.region gt) needs the det targets, "
                             "which the dataset builds when loss.det is on")
    return torch.cat([t.heatmap for t in det_targets], 1).amax(1, keepdim=True)


def total_loss(losses: dict[str, torch.Tensor]) -> torch.Tensor:
    """The sum the optimiser steps on: every `loss_*` term."""
    return sum(v for k, v in losses.items() if k.startswith("loss_"))
