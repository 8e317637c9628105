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
- "box_points" (UniDistill's): the features bilinearly sampled at nine points of each GT box (centre,
  corners, edge midpoints), e averaged over those points, plus `relation_weight` times the mean absolute
  difference between the student's and the teacher's 9x9 cosine-similarity matrices of each box (the
  shape of an object's feature, not its scale).
`attention` (DistillBEV's, after FGD) scales e by the teacher's own attention: each channel's squared error
by C * softmax_c(mean_p |F_T| / T) inside e, and each cell's weight by H W * softmax_p(mean_c |F_T| / T),
so the cells and channels where the LiDAR feature is strong carry the loss (T = `attention_temperature`;
both average 1, so an even teacher changes nothing).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

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


def teacher_attention(teacher: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's spatial [B, 1, H, W] and channel [B, C, 1, 1] attention: H W * softmax over the cells
    of mean_c |F_T| / T, and C * softmax over the channels of mean_p |F_T| / T (each averages 1)."""
    b, c, h, w = teacher.shape
    magnitude = teacher.abs()
    spatial = (h * w) * torch.softmax(magnitude.mean(1).flatten(1) / temperature, dim=1).view(b, 1, h, w)
    channel = c * torch.softmax(magnitude.mean((2, 3)) / temperature, dim=1).view(b, c, 1, 1)
    return spatial, channel


# the nine points of a box in its own frame, in half-lengths: centre, corners, edge midpoints
_BOX_POINTS = torch.tensor([[0, 0], [1, 1], [1, -1], [-1, 1], [-1, -1], [1, 0], [-1, 0], [0, 1], [0, -1]],
                           dtype=torch.float32)


def box_points(boxes: torch.Tensor) -> torch.Tensor:
    """[M, 9, 2] metric (x, y) of the nine points of each box (x, y, z, l, w, h, yaw, ...)."""
    boxes = boxes.float()
    half = _BOX_POINTS.to(boxes.device) * (boxes[:, None, 3:5] / 2)  # [M, 9, 2] along / across
    cos, sin = boxes[:, None, 6].cos(), boxes[:, None, 6].sin()
    x = boxes[:, None, 0] + half[..., 0] * cos - half[..., 1] * sin
    y = boxes[:, None, 1] + half[..., 0] * sin + half[..., 1] * cos
    return torch.stack([x, y], -1)


def sample_at(features: torch.Tensor, points: torch.Tensor, grid: BevGrid) -> torch.Tensor:
    """Bilinear samples [M, 9, C] of one sample's map `features` [C, H, W] at metric `points` [M, 9, 2]
    (zero off the grid)."""
    r = grid.point_cloud_range
    norm = torch.stack([(points[..., 0] - r[0]) / (r[3] - r[0]), (points[..., 1] - r[1]) / (r[4] - r[1])], -1)
    sampled = F.grid_sample(features[None].float(), (norm * 2 - 1)[None], mode="bilinear", padding_mode="zeros",
                            align_corners=False)  # [1, C, M, 9]
    return sampled[0].permute(1, 2, 0)


def box_point_losses(adapted_student: torch.Tensor, teacher: torch.Tensor, gt_boxes: list[torch.Tensor],
                     grid: BevGrid, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """UniDistill's feature and relation terms over the nine points of every GT box on the grid: the mean
    over points of the squared error per channel, and the mean |cos-sim_S - cos-sim_T| over each box's
    9x9 pairs. Points off the grid or on cells without teacher data are left out."""
    errors, relations = [], []
    for b, boxes in enumerate(gt_boxes):
        if len(boxes) == 0:
            continue
        points = box_points(boxes.to(teacher.device))
        s, t = sample_at(adapted_student[b], points, grid), sample_at(teacher[b], points, grid)
        keep = grid.contains(points[..., 0], points[..., 1]).float()
        if valid is not None:
            keep = keep * (sample_at(valid[b].float(), points, grid)[..., 0] > 0.5).float()
        errors.append((((s - t) ** 2).mean(-1) * keep).sum() / keep.sum().clamp_min(1.0))
        pair = keep[:, :, None] * keep[:, None, :]
        sim_s = F.normalize(s, dim=-1) @ F.normalize(s, dim=-1).transpose(1, 2)
        sim_t = F.normalize(t, dim=-1) @ F.normalize(t, dim=-1).transpose(1, 2)
        relations.append(((sim_s - sim_t).abs() * pair).sum() / pair.sum().clamp_min(1.0))
    if not errors:
        zero = adapted_student.sum() * 0  # keeps the graph: a batch without boxes teaches nothing
        return zero, zero
    return torch.stack(errors).mean(), torch.stack(relations).mean()


def xfd_loss(adapted_student: torch.Tensor, teacher: torch.Tensor, teacher_heatmaps: torch.Tensor | None,
             cfg: XFDLossConfig, valid: torch.Tensor | None = None, foreground: torch.Tensor | None = None,
             gt_boxes: list[torch.Tensor] | None = None, grid: BevGrid | None = None) -> dict[str, torch.Tensor]:
    """adapted_student = A(F_S) and teacher = F_T, both [B, C_T, H, W]; teacher_heatmaps [B, K, H, W];
    valid [B, 1, H, W] (cells holding teacher data after the BEV augmentation) multiplies every weight;
    foreground [B, 1, H, W]: the GT weights "gt_gaussian" / "gt_boxes" need (`gt_gaussians`,
    `box_cell_weights`); gt_boxes and grid: what "box_points" needs."""
    s, t = adapted_student.float(), teacher.float().detach()
    if cfg.region == "box_points":
        if gt_boxes is None or grid is None:
            raise ValueError("loss.xfd.region box_points needs the GT boxes and the grid")
        feature, relation = box_point_losses(s, t, gt_boxes, grid, valid)
        loss = feature + cfg.relation_weight * relation
        return {"loss_xfd": cfg.weight * loss, "xfd/points": feature.detach(), "xfd/relation": relation.detach()}
    spatial = None
    if cfg.attention:
        spatial, channel = teacher_attention(t, cfg.attention_temperature)
        error = ((s - t) ** 2 * channel).sum(1, keepdim=True) / t.shape[1]
    if cfg.region == "heatmap":
        w = foreground_weight(teacher_heatmaps, cfg.fg_weight, t)
        if valid is not None:
            w = w * valid
        if spatial is None:
            return {"loss_xfd": cfg.weight * ((s - t) ** 2 * w).sum() / (t.shape[1] * w.sum())}
        w = w * spatial
        return {"loss_xfd": cfg.weight * (error * w).sum() / w.sum()}
    if spatial is None:
        error = ((s - t) ** 2).sum(1, keepdim=True) / t.shape[1]  # e(p)
        spatial = torch.ones_like(error)
    valid = torch.ones_like(error) if valid is None else valid.float()
    if foreground is None:
        raise ValueError(f"loss.xfd.region {cfg.region} needs the GT foreground weights")
    w = foreground.float() * valid * spatial
    fg = (error * w).sum() / w.sum().clamp_min(1e-6)
    out = {"xfd/foreground": fg.detach()}
    loss = fg
    if cfg.region == "gt_boxes" and cfg.background_weight:
        bg_cells = (foreground <= 0).float() * valid * spatial
        bg = (error * bg_cells).sum() / bg_cells.sum().clamp_min(1e-6)
        out["xfd/background"] = bg.detach()
        loss = loss + cfg.background_weight * bg
    return {"loss_xfd": cfg.weight * loss, **out}
