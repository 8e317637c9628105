"""det: CenterPoint's detection loss against GT boxes.

Per task group: Gaussian focal loss (alpha, beta) between the clamped sigmoid heatmap and the GT
Gaussians, divided by the number of GT centres; plus L1 between the 10 regression channels at each GT
centre cell and the box target (channels weighted by `code_weights`), divided by the number of
objects. Task groups are summed."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from detection.det_targets import TaskTargets
from detection.centerpoint_coder import join_regression


@dataclass(frozen=True)
class DetLossConfig:
    """CenterPoint detection loss against GT boxes (Gaussian focal + L1 at GT centres)."""

    enabled: bool = True
    weight: float = 1.0
    heatmap_weight: float = 1.0
    reg_weight: float = 0.25
    # Per regression channel: reg_x, reg_y, height, dim_l, dim_w, dim_h, rot_sin, rot_cos, vel_x, vel_y.
    code_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2)
    alpha: float = 2.0
    beta: float = 4.0
    gaussian_overlap: float = 0.1
    min_radius: int = 2


def clamped_sigmoid(logits: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """CenterPoint clamps heatmap probabilities so the focal loss never takes log(0)."""
    return logits.sigmoid().clamp(eps, 1 - eps)


def gaussian_focal_loss(prob: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0
                        ) -> torch.Tensor:
    """CornerNet/CenterPoint focal loss on Gaussian targets, summed (not normalised).

    Cells with target exactly 1 are positives; every other cell is a negative down-weighted by
    (1 - target)^beta, so cells near a centre are barely punished."""
    eps = 1e-12
    pos = target.eq(1).to(prob.dtype)
    pos_loss = -(prob + eps).log() * (1 - prob).pow(alpha) * pos
    neg_loss = -(1 - prob + eps).log() * prob.pow(alpha) * (1 - target).pow(beta)
    return pos_loss.sum() + neg_loss.sum()


def det_loss(head_outputs: list[dict[str, torch.Tensor]], targets: list[TaskTargets], cfg: DetLossConfig
             ) -> dict[str, torch.Tensor]:
    """Returns `loss_det` (weighted by cfg.weight) and detached parts `det/heatmap`, `det/reg`."""
    code_w = None
    hm_total, reg_total = 0.0, 0.0
    for out, tgt in zip(head_outputs, targets):
        logits = out["heatmap"]
        num_pos = tgt.heatmap.eq(1).sum().clamp_min(1).to(logits.dtype)
        hm_total = hm_total + gaussian_focal_loss(clamped_sigmoid(logits.float()), tgt.heatmap, cfg.alpha, cfg.beta) / num_pos
        reg = join_regression(out).float()
        b, c, h, w = reg.shape
        if code_w is None:
            code_w = torch.tensor(cfg.code_weights, dtype=reg.dtype, device=reg.device)
        pred = reg.permute(0, 2, 3, 1).reshape(b, h * w, c)[tgt.batch_index, tgt.cell_index]  # [P, 10]
        l1 = ((pred - tgt.box_target).abs() * code_w).sum()
        reg_total = reg_total + l1 / (tgt.box_target.shape[0] + 1e-4)
    total = cfg.heatmap_weight * hm_total + cfg.reg_weight * reg_total
    return {"loss_det": cfg.weight * total,
            "det/heatmap": torch.as_tensor(hm_total).detach(), "det/reg": torch.as_tensor(reg_total).detach()}
