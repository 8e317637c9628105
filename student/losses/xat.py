"""X-AT: adversarial alignment of the student's (adapted) BEV feature with the teacher's.

A per-cell discriminator D (3 conv layers -> logit) learns to call F_T real and A(F_S) fake; the student
(and its adapter) learns to make A(F_S) look real. How (`loss.xat.objective`):
- "grl" (X3KD's): one BCE, A(F_S) reaching D through a gradient-reversal layer (forward the identity,
  backward times -lambda_grl), so one backward pass trains both. The student's gradient is
  -lambda * sigmoid(D(f)) * dD/df: it vanishes once D wins, which is what the lab measured.
- "nonsaturating": D learns with BCE on detached features; the student minimises BCE(D(A(F_S)), real)
  through a copy of D whose parameters it does not move (GAN's non-saturating generator loss: its
  gradient is largest where D is most sure the feature is fake).
- "least_squares": the same split with LSGAN's squared errors (D(F_T) -> 1, D(A(F_S)) -> 0; student:
  D(A(F_S)) -> 1), whose gradient does not saturate either.
`ramp` scales the student's side by DANN's 2 / (1 + exp(-10 p)) - 1 over the run's progress p; `region`
"foreground" judges only cells where the teacher's heatmap reaches 0.1; `normalize` L2-normalises both
features per cell first (the teacher's ReLU features are >= 0, a linear adapter's are not: without it D
can tell them apart by their sign)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

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


def ramp_factor(progress: float) -> float:
    """DANN's schedule for the adversarial term: 0 at the start of the run, ~1 from half of it on."""
    return 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0


def xat_loss(discriminator: nn.Module, adapted_student: torch.Tensor, teacher: torch.Tensor,
             cfg: XATLossConfig, valid: torch.Tensor | None = None, teacher_heatmaps: torch.Tensor | None = None,
             progress: float = 1.0) -> dict[str, torch.Tensor]:
    """The discriminator's BCE on F_T (real) and A(F_S) (fake), and the student's side of the game,
    averaged over the `valid` cells [B, 1, H, W] (the zero-filled border of a warped teacher map is
    neither real nor fake; all cells without it), with `loss.xat.region` "foreground" only where
    max_k H_T >= 0.1. `progress` in [0, 1] is the run's (for `ramp`)."""
    teacher, student = teacher.float().detach(), adapted_student.float()
    if cfg.normalize:
        teacher, student = F.normalize(teacher, dim=1), F.normalize(student, dim=1)
    weight = torch.ones_like(teacher[:, :1]) if valid is None else valid.float()
    if cfg.region == "foreground" and teacher_heatmaps is not None:
        weight = weight * (teacher_heatmaps.amax(1, keepdim=True) >= 0.1).float()
    count = weight.sum().clamp_min(1.0)
    scale = ramp_factor(progress) if cfg.ramp else 1.0

    def mean(per_cell: torch.Tensor) -> torch.Tensor:
        return (per_cell * weight).sum() / count

    if cfg.objective == "grl":
        real = discriminator(teacher)
        fake = discriminator(grad_reverse(student, cfg.grl_scale * scale))
        loss_real = mean(F.binary_cross_entropy_with_logits(real, torch.ones_like(real), reduction="none"))
        loss_fake = mean(F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake), reduction="none"))
        return {"loss_xat": cfg.weight * (loss_real + loss_fake),
                "xat/real": loss_real.detach(), "xat/fake": loss_fake.detach()}
    real, fake = discriminator(teacher), discriminator(student.detach())
    # the student's view of D: the same weights, but the student's loss must not move them
    frozen = {name: p.detach() for name, p in discriminator.named_parameters()}
    judged = functional_call(discriminator, frozen, (student,))
    if cfg.objective == "nonsaturating":
        loss_real = mean(F.binary_cross_entropy_with_logits(real, torch.ones_like(real), reduction="none"))
        loss_fake = mean(F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake), reduction="none"))
        loss_student = mean(F.binary_cross_entropy_with_logits(judged, torch.ones_like(judged), reduction="none"))
    else:  # least_squares
        loss_real, loss_fake = mean((real - 1) ** 2), mean(fake ** 2)
        loss_student = mean((judged - 1) ** 2)
    return {"loss_xat": cfg.weight * (loss_real + loss_fake + scale * loss_student),
            "xat/real": loss_real.detach(), "xat/fake": loss_fake.detach(), "xat/student": loss_student.detach()}
