"""X-AT: adversarial alignment of the student's (adapted) BEV feature with the teacher's.

A per-cell discriminator D (3 conv layers -> logit) learns with BCE to call F_T real and A(F_S) fake.
A(F_S) reaches D through a gradient-reversal layer: forward is the identity, backward multiplies the
gradient by -lambda_grl. One backward pass of the BCE thus trains D to separate the two and pushes
the student (and adapter) to make its feature indistinguishable from the teacher's."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import XATLossConfig


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:  # noqa: D102
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: D102
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward; gradient times -`scale` backward."""
    return _GradReverse.apply(x, scale)


class BevDiscriminator(nn.Module):
    """[B, C, H, W] -> per-cell real/fake logits [B, 1, H, W]."""

    def __init__(self, in_channels: int, hidden_channels: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, hidden_channels, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(hidden_channels, hidden_channels, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(hidden_channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def xat_loss(discriminator: nn.Module, adapted_student: torch.Tensor, teacher: torch.Tensor,
             cfg: XATLossConfig, valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """BCE(D(F_T), real) + BCE(D(GRL(A(F_S))), fake), each averaged over the `valid` cells [B, 1, H, W]
    (all cells without it): the zero-filled border of a warped teacher map is neither real nor fake."""
    real = discriminator(teacher.float().detach())
    fake = discriminator(grad_reverse(adapted_student.float(), cfg.grl_scale))
    weight = torch.ones_like(real) if valid is None else valid.to(real.dtype)
    count = weight.sum().clamp_min(1.0)
    loss_real = (F.binary_cross_entropy_with_logits(real, torch.ones_like(real), reduction="none") * weight).sum() / count
    loss_fake = (F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake), reduction="none") * weight).sum() / count
    return {"loss_xat": cfg.weight * (loss_real + loss_fake),
            "xat/real": loss_real.detach(), "xat/fake": loss_fake.detach()}
