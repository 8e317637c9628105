"""X-FD: foreground-weighted feature distillation to the cached LiDAR-teacher BEV feature.

L = sum_p w(p) * ||A(F_S)(p) - F_T(p)||^2 / (C * sum_p w(p)),  w(p) = 1 + lambda_fg * max_k H_T(k, p),
with A the learned 1x1 adapter (owned by the criterion, shared with X-AT) and F_T optionally
standardised per channel with statistics stored in the cache."""
from __future__ import annotations

import torch

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


def xfd_loss(adapted_student: torch.Tensor, teacher: torch.Tensor, teacher_heatmaps: torch.Tensor | None,
             cfg: XFDLossConfig, valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """adapted_student = A(F_S) and teacher = F_T, both [B, C_T, H, W]; teacher_heatmaps [B, K, H, W];
    valid [B, 1, H, W] (cells holding teacher data after the BEV augmentation) multiplies w(p)."""
    s, t = adapted_student.float(), teacher.float().detach()
    w = foreground_weight(teacher_heatmaps, cfg.fg_weight, t)
    if valid is not None:
        w = w * valid
    sq = ((s - t) ** 2 * w).sum()
    loss = sq / (t.shape[1] * w.sum())
    return {"loss_xfd": cfg.weight * loss}
