"""X-OD: output distillation to the cached LiDAR-teacher heatmaps and regression maps.

heatmap:    sum |sigmoid(S_k) - H_T|^gamma * BCE(sigmoid(S_k), H_T) / N, N = max(1, the teacher's objects:
            per-class 3x3 peaks of H_T >= reg_threshold) or, with normalize "mass", max(1, sum H_T)
regression: sum_p w(p) * sum_c |S_reg - T_reg| / sum_p w(p),  w(p) = max_k H_T(k, p)

The teacher's regression at a cell comes from its task group with the highest heatmap there; the
student's regression is read from the same task group (chosen by the teacher's heatmap), so both sides
describe the same object hypothesis.

Variants (`loss.xod`): `classes: class_agnostic` distils max_k over the classes on both sides instead of
every class (UniDistill's: the teacher's objectness, not its split between classes, e.g. truck against
the other large vehicles); `region: gt` multiplies both terms' weights by where the GT boxes'
CenterPoint Gaussians are (BEVDistill and UniDistill gate response distillation with GT)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from cache_schema.grid import ClassSetup

from ..config import XODLossConfig
from detection.centerpoint_coder import join_regression, teacher_task_map


def class_order_heatmaps(head_outputs: list[dict[str, torch.Tensor]], classes: ClassSetup) -> torch.Tensor:
    """Student heatmap logits of all task groups, reordered to `classes.classes`: [B, K, H, W]."""
    by_name = {}
    for task, out in zip(classes.tasks, head_outputs):
        for i, name in enumerate(task):
            by_name[name] = out["heatmap"][:, i]
    return torch.stack([by_name[c] for c in classes.classes], 1)


def soft_focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
                    weight: torch.Tensor | None = None) -> torch.Tensor:
    """sum w * |sigmoid(x) - t|^gamma * BCE(sigmoid(x), t), summed (not normalised); w broadcasts."""
    p = logits.sigmoid()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    terms = (p - target).abs().pow(gamma) * bce
    return (terms if weight is None else terms * weight).sum()


def regression_weight(teacher_heatmaps: torch.Tensor, cfg: XODLossConfig) -> torch.Tensor:
    """[B, 1, H, W] weight of each cell's regression term (XODLossConfig.reg_mask): the teacher's
    confidence max_k H_T where it is confident ("threshold"), also only at its 3x3 peaks ("peak"), or
    everywhere ("soft")."""
    conf = teacher_heatmaps.amax(1, keepdim=True)
    if cfg.reg_mask == "soft":
        return conf
    keep = conf >= cfg.reg_threshold
    if cfg.reg_mask == "peak":
        keep &= conf == F.max_pool2d(conf, 3, stride=1, padding=1)
    return conf * keep


def heatmap_normalizer(h_t: torch.Tensor, mask: torch.Tensor | None, cfg: XODLossConfig) -> torch.Tensor:
    """What the X-OD heatmap term is divided by (XODLossConfig.normalize), at least 1."""
    if cfg.normalize == "mass":
        return (h_t if mask is None else h_t * mask).sum().clamp_min(1.0)
    peaks = (h_t >= cfg.reg_threshold) & (h_t == F.max_pool2d(h_t, 3, stride=1, padding=1))
    if mask is not None:
        peaks = peaks & (mask > 0)
    return peaks.sum().float().clamp_min(1.0)


def xod_loss(head_outputs: list[dict[str, torch.Tensor]], teacher_heatmaps: torch.Tensor,
             teacher_regression: torch.Tensor, classes: ClassSetup, cfg: XODLossConfig,
             valid: torch.Tensor | None = None, reg_task: torch.Tensor | None = None,
             gt_region: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """teacher_heatmaps [B, K, H, W] probabilities, teacher_regression [B, 10, H, W]; valid [B, 1, H, W]
    leaves out the cells the BEV augmentation filled with zeros (no teacher answer there); reg_task
    [B, H, W] is the task group of each teacher regression cell (`detection.centerpoint_coder.warp_task_map`);
    gt_region [B, 1, H, W], where the GT Gaussians are (`region: gt`)."""
    h_t = teacher_heatmaps.float().detach()
    logits = class_order_heatmaps(head_outputs, classes).float()
    mask = None if valid is None else valid.float()
    if cfg.region == "gt":
        if gt_region is None:
            raise ValueError("loss.xod.region gt needs the GT region")
        mask = gt_region.float() if mask is None else mask * gt_region.float()
    heat_t, heat_s = h_t, logits
    if cfg.classes == "class_agnostic":
        # sigmoid is monotone: the student's most likely class at a cell is its largest logit
        heat_t, heat_s = h_t.amax(1, keepdim=True), logits.amax(1, keepdim=True)
    hm = soft_focal_loss(heat_s, heat_t, cfg.gamma, mask) / heatmap_normalizer(heat_t, mask, cfg)

    student_reg = torch.stack([join_regression(o) for o in head_outputs], 1).float()  # [B, T, 10, H, W]
    # The task group each teacher regression cell was written from: warped with the regression itself
    # (nearest cell) when the batch has it, else read off the (bilinearly warped) heatmaps.
    group = reg_task if reg_task is not None else teacher_task_map(h_t, classes)
    b, t, c, h, w = student_reg.shape
    picked = student_reg.gather(1, group.view(b, 1, 1, h, w).expand(b, 1, c, h, w))[:, 0]
    weight = regression_weight(h_t, cfg)
    if mask is not None:
        weight = weight * mask
    reg = ((picked - teacher_regression.float().detach()).abs() * weight).sum() / weight.sum().clamp_min(1e-6)
    total = cfg.heatmap_weight * hm + cfg.reg_weight * reg
    return {"loss_xod": cfg.weight * total, "xod/heatmap": hm.detach(), "xod/reg": reg.detach()}
