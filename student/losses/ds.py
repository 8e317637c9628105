"""DS: BEVDepth depth supervision.

Binary cross-entropy between the softmax depth distribution of each feature pixel and the one-hot bin
of its LiDAR depth, summed over bins and averaged over the pixels that have a target."""
from __future__ import annotations

import torch

from ..config import DepthLossConfig
from ..targets import depth_bin_onehot


def ds_loss(depth_logits: torch.Tensor, depth_targets: torch.Tensor, d_bound: tuple[float, float, float],
            cfg: DepthLossConfig) -> dict[str, torch.Tensor]:
    """depth_logits [M, D, h, w] (M = B*N cameras), depth_targets [M or B, N, h, w] metres (0 = none).

    Returns `loss_ds` = cfg.weight * sum_{pixels with target} BCE(softmax, one-hot) / max(1, #pixels)."""
    d = depth_logits.shape[1]
    logits = depth_logits.float().permute(0, 2, 3, 1).reshape(-1, d)
    onehot = depth_bin_onehot(depth_targets.float().reshape(-1, *depth_targets.shape[-2:]), d_bound)
    onehot = onehot.permute(0, 2, 3, 1).reshape(-1, d)
    fg = onehot.amax(1) > 0
    logits, onehot = logits[fg], onehot[fg]
    # BCE on softmax probabilities; logs clamped at -100 like torch's binary_cross_entropy, but written
    # from log_softmax so it is stable and allowed under autocast.
    log_p = logits.log_softmax(1).clamp_min(-100)
    log_not_p = torch.log1p(-log_p.exp().clamp_max(1 - 1e-7)).clamp_min(-100)
    bce = -(onehot * log_p + (1 - onehot) * log_not_p)
    loss = bce.sum() / max(1.0, float(fg.sum()))
    return {"loss_ds": cfg.weight * loss, "ds/pixels": fg.sum().detach()}
