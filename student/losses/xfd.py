"""X-FD: feature distillation to the cached LiDAR-teacher BEV feature, over the cells `region` picks.

With e(p) = ||A(F_S)(p) - F_T(p)||^2 / C the squared error per cell (A the learned 1x1 adapter, owned by
the criterion and shared with X-AT; F_T optionally standardised per channel with statistics stored in the
cache), and every weight multiplied by the cells that hold teacher data after the BEV augmentation:
- "heatmap" (X3KD as we first defined it): L = sum_p w(p) e(p) / sum_p w(p), w(p) = 1 + fg_weight *
  max_k H_T(k, p). Every cell counts: on the lab's 64x64 grid with ~10 objects most of the weight is
  background, whose LiDAR texture a camera cannot infer.
- "gt_gaussian" (BEVDistill's foreground mask): w(p) = the GT boxes' CenterPoint Gaussians (the det
  targets, max over classes), L = sum w e / sum w: the object centres and their neighbourhoods only.
- "gt_boxes" (DistillBEV's split): cells inside a GT box, each box's cells weighted by sqrt(cell area /
  box area) (so a bus does not outweigh a pedestrian by its area), L_fg = sum w e / sum w, plus
  `background_weight` times the mean of e over the other cells, normalised on its own.
"""
from __future__ import annotations

import torch

from cache_schema.grid import BevGrid

from ..config import XFDLossConfig


def standardize_teacher(features: torch.Tensor, mean: torch.Tensor | None, std: torch.Tensor | None
                        ) -> torch.Tensor:
    """(F_T - mean) / std per channel; identity when no statistics are given."""
    if mean is None or std is None:
        return features
    return (features - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1).clamp_min(1e-6)


def foreground_weight(teacher_heatmaps: torch.Tensor | None, fg_weight: float, like: torch.Tensor) -> torch.Tensor:
    """w(p) [B, 1, H, W] = 1 + fg_weight * max_k H_T(k, p) (all ones without heatmaps)."""
    if teacher_heatmaps is None:
        return torch.ones_like(like[:, :1])
    return 1 + fg_weight * teacher_heatmaps.amax(1, keepdim=True)


def box_cell_weights(gt_boxes: list[torch.Tensor], grid: BevGrid, device: torch.device | str = "cpu"
                     ) -> torch.Tensor:
    """[B, 1, H, W]: for each cell whose centre lies inside a GT box (x, y, l, w, yaw of `cache_schema.boxes`),
    sqrt(cell area / box area) of that box (the largest where boxes overlap); 0 elsewhere."""
    xs, ys = (torch.as_tensor(v, dtype=torch.float32, device=device) for v in grid.cell_centres())
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")
    cell_area = float(grid.cell_size[0] * grid.cell_size[1])
    out = torch.zeros(len(gt_boxes), 1, *cx.shape, device=device)
    for b, boxes in enumerate(gt_boxes):
        for box in boxes.float().to(device):
            x, y, length, width, yaw = box[0], box[1], box[3], box[4], box[6]
            dx, dy = cx - x, cy - y
            along = dx * torch.cos(yaw) + dy * torch.sin(yaw)
            across = -dx * torch.sin(yaw) + dy * torch.cos(yaw)
            inside = (along.abs() <= length / 2) & (across.abs() <= width / 2)
            w = torch.sqrt(cell_area / (length * width).clamp_min(1e-6))
            out[b, 0] = torch.where(inside, torch.maximum(out[b, 0], w), out[b, 0])
    return out


def xfd_loss(adapted_student: torch.Tensor, teacher: torch.Tensor, teacher_heatmaps: torch.Tensor | None,
             cfg: XFDLossConfig, valid: torch.Tensor | None = None, foreground: torch.Tensor | None = None
             ) -> dict[str, torch.Tensor]:
    """adapted_student = A(F_S) and teacher = F_T, both [B, C_T, H, W]; teacher_heatmaps [B, K, H, W];
    valid [B, 1, H, W] (cells holding teacher data after the BEV augmentation) multiplies every weight;
    foreground [B, 1, H, W]: the GT weights "gt_gaussian" / "gt_boxes" need (`gt_gaussians`,
    `box_cell_weights`)."""
    s, t = adapted_student.float(), teacher.float().detach()
    if cfg.region == "heatmap":
        w = foreground_weight(teacher_heatmaps, cfg.fg_weight, t)
        if valid is not None:
            w = w * valid
        return {"loss_xfd": cfg.weight * ((s - t) ** 2 * w).sum() / (t.shape[1] * w.sum())}
    error = ((s - t) ** 2).sum(1, keepdim=True) / t.shape[1]  # e(p)
    valid = torch.ones_like(error) if valid is None else valid.float()
    if foreground is None:
        raise ValueError(f"loss.xfd.region {cfg.region} needs the GT foreground weights")
    w = foreground.float() * valid
    fg = (error * w).sum() / w.sum().clamp_min(1e-6)
    out = {"xfd/foreground": fg.detach()}
    loss = fg
    if cfg.region == "gt_boxes" and cfg.background_weight:
        bg_cells = (foreground <= 0).float() * valid
        bg = (error * bg_cells).sum() / bg_cells.sum().clamp_min(1.0)
        out["xfd/background"] = bg.detach()
        loss = loss + cfg.background_weight * bg
    return {"loss_xfd": cfg.weight * loss, **out}
