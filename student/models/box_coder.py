"""Turn CenterHead outputs into 3D boxes, as mmdet3d's CenterPoint does at test time.

Pipeline per task group (mmdet3d `CenterHead.predict_by_feat` with `CenterPointBBoxCoder`):
sigmoid heatmap -> top-k peaks -> boxes from the regression maps at the peaks -> score threshold and
centre range -> NMS (rotated BEV IoU, or circle NMS on centre distance) -> keep at most
`post_max_size` -> centre-range filter again; then the task groups are concatenated with their labels
offset so labels index the concatenated class list.

The rotated NMS is exact: mmdet3d 1.4's `nms_bev` hands (x, y, dx, dy, yaw) boxes to mmcv's
`nms_rotated`, which computes the polygon intersection of the rotated rectangles (no axis-aligned
approximation) and suppresses at IoU >= threshold; we do the same in torch.

Boxes come out in THE box convention of `cache_schema.boxes` (x, y, z_gravity_centre, l, w, h, yaw,
vx, vy): CenterPoint regresses the gravity-centre height, so no shift is needed here (mmdet3d's own
`predict` moves z to the box bottom afterwards; compare with `z - h / 2` when talking to mmdet3d).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor


@dataclass
class Detections:
    """Boxes of one sample: `boxes (M, 9)` in the cache_schema box convention, `scores (M,)`,
    `labels (M,)` int64 indices into the head's concatenated class list."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls, device: torch.device | str = "cpu") -> "Detections":
        return cls(torch.zeros(0, 9, device=device), torch.zeros(0, device=device),
                   torch.zeros(0, dtype=torch.long, device=device))


@dataclass(frozen=True)
class BoxCoderConfig:
    """mmdet3d's `bbox_coder` (CenterPointBBoxCoder) and `test_cfg` in one place.

    `pc_range` is (x_min, y_min); `voxel_size` (vx, vy); a BEV cell is `out_size_factor` voxels.
    `coder_post_center_range` filters decoded peaks, `post_center_limit_range` filters after NMS
    (mmdet3d keeps both; they are usually equal). `norm_bbox`: the head predicts log sizes.
    """

    pc_range: tuple[float, float] = (-51.2, -51.2)
    voxel_size: tuple[float, float] = (0.2, 0.2)
    out_size_factor: int = 4
    max_num: int = 500
    coder_score_threshold: float | None = 0.1
    coder_post_center_range: tuple[float, ...] | None = (-61.2, -61.2, -10.0, 61.2, 61.2, 10.0)
    norm_bbox: bool = True
    score_threshold: float = 0.1
    nms_type: str = "rotate"
    nms_thr: float = 0.2
    pre_max_size: int = 1000
    post_max_size: int = 83
    post_center_limit_range: tuple[float, ...] | None = (-61.2, -61.2, -10.0, 61.2, 61.2, 10.0)
    min_radius: tuple[float, ...] = field(default=(4, 12, 10, 1, 0.85, 0.175))

    def __post_init__(self) -> None:
        if self.nms_type not in ("rotate", "circle"):
            raise ValueError(f"nms_type must be 'rotate' or 'circle', got {self.nms_type!r}")

    @classmethod
    def from_mmdet3d(cls, bbox_coder: Mapping, test_cfg: Mapping, norm_bbox: bool = True) -> "BoxCoderConfig":
        """Build from the `pts_bbox_head.bbox_coder` and `test_cfg.pts` dicts of an mmdet3d config."""
        def opt_tuple(v):
            return None if v is None or len(v) == 0 else tuple(float(x) for x in v)
        thr = test_cfg.get("nms_thr", 0.2)
        if isinstance(thr, (list, tuple)):
            raise ValueError("per-task nms_thr lists are not supported; use one float")
        return cls(
            pc_range=tuple(float(v) for v in bbox_coder["pc_range"][:2]),
            voxel_size=tuple(float(v) for v in bbox_coder["voxel_size"][:2]),
            out_size_factor=int(bbox_coder["out_size_factor"]),
            max_num=int(bbox_coder.get("max_num", 100)),
            coder_score_threshold=bbox_coder.get("score_threshold"),
            coder_post_center_range=opt_tuple(bbox_coder.get("post_center_range")),
            norm_bbox=bool(norm_bbox),
            score_threshold=float(test_cfg.get("score_threshold", 0.0)),
            nms_type=str(test_cfg.get("nms_type", "rotate")),
            nms_thr=float(thr),
            pre_max_size=int(test_cfg.get("pre_max_size", 1000)),
            post_max_size=int(test_cfg.get("post_max_size", 83)),
            post_center_limit_range=opt_tuple(test_cfg.get("post_center_limit_range")),
            min_radius=tuple(float(v) for v in test_cfg.get("min_radius", ())),
        )


# --------------------------------------------------------------------------- peak decoding

def _topk(heat: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Top-k over classes and cells: scores, flat cell index, class, row, column (each (B, k)).

    Two-stage like mmdet3d (top-k per class, then over the classes' candidates), so ties and the
    order of equal scores resolve as they do there."""
    b, c, h, w = heat.shape
    k_cls = min(k, h * w)
    scores_c, inds_c = torch.topk(heat.reshape(b, c, -1), k_cls)
    k_all = min(k, c * k_cls)
    scores, ind = torch.topk(scores_c.reshape(b, -1), k_all)
    classes = torch.div(ind, k_cls, rounding_mode="floor")
    inds = inds_c.reshape(b, -1).gather(1, ind)
    ys = torch.div(inds, w, rounding_mode="floor").to(heat.dtype)
    xs = (inds % w).to(heat.dtype)
    return scores, inds, classes, ys, xs


def _gather(feat: Tensor, inds: Tensor) -> Tensor:
    """feat (B, C, H, W), inds (B, K) flat cell indices -> (B, K, C)."""
    b, c = feat.shape[:2]
    flat = feat.reshape(b, c, -1)
    return flat.gather(2, inds[:, None, :].expand(b, c, inds.shape[1])).permute(0, 2, 1)


def decode_task(out: Mapping[str, Tensor], cfg: BoxCoderConfig) -> list[Detections]:
    """Peaks of one task group's outputs -> boxes per sample (before NMS), labels within the group."""
    heat = out["heatmap"].sigmoid()
    k = cfg.max_num
    scores, inds, classes, ys, xs = _topk(heat, k)
    k = scores.shape[1]
    if "reg" in out:
        reg = _gather(out["reg"], inds)
        xs = xs[..., None] + reg[..., 0:1]
        ys = ys[..., None] + reg[..., 1:2]
    else:
        xs = xs[..., None] + 0.5
        ys = ys[..., None] + 0.5
    rot = _gather(out["rot"], inds)
    yaw = torch.atan2(rot[..., 0:1], rot[..., 1:2])
    hei = _gather(out["height"], inds)
    dim = _gather(out["dim"], inds)
    if cfg.norm_bbox:
        dim = dim.exp()
    # same operation order as mmdet3d so that boxes agree to the last bit
    xs = xs * cfg.out_size_factor * cfg.voxel_size[0] + cfg.pc_range[0]
    ys = ys * cfg.out_size_factor * cfg.voxel_size[1] + cfg.pc_range[1]
    parts = [xs, ys, hei, dim, yaw]
    if "vel" in out:
        parts.append(_gather(out["vel"], inds))
    boxes = torch.cat(parts, dim=2)

    mask = torch.ones(scores.shape, dtype=torch.bool, device=scores.device)
    if cfg.coder_post_center_range is not None:
        rng = torch.tensor(cfg.coder_post_center_range, dtype=boxes.dtype, device=boxes.device)
        mask &= (boxes[..., :3] >= rng[:3]).all(2) & (boxes[..., :3] <= rng[3:]).all(2)
    if cfg.coder_score_threshold:
        mask &= scores > cfg.coder_score_threshold
    return [Detections(boxes[i, mask[i]], scores[i, mask[i]], classes[i, mask[i]].long())
            for i in range(scores.shape[0])]


# --------------------------------------------------------------------------- rotated BEV IoU and NMS

def _corners(boxes: Tensor) -> Tensor:
    """(..., 5) boxes (x, y, dx, dy, angle) -> (..., 4, 2) corners, counter-clockwise."""
    x, y, dx, dy, a = boxes.unbind(-1)
    cos, sin = torch.cos(a), torch.sin(a)
    hx, hy = dx / 2, dy / 2
    sx = torch.stack([-hx, hx, hx, -hx], -1)
    sy = torch.stack([-hy, -hy, hy, hy], -1)
    px = x[..., None] + sx * cos[..., None] - sy * sin[..., None]
    py = y[..., None] + sx * sin[..., None] + sy * cos[..., None]
    return torch.stack([px, py], -1)


def _inside(points: Tensor, boxes: Tensor, eps: float = 1e-6) -> Tensor:
    """points (P, K, 2) inside boxes (P, 5)? -> (P, K)."""
    d = points - boxes[:, None, :2]
    cos, sin = torch.cos(boxes[:, 4])[:, None], torch.sin(boxes[:, 4])[:, None]
    u = d[..., 0] * cos + d[..., 1] * sin
    v = -d[..., 0] * sin + d[..., 1] * cos
    return (u.abs() <= boxes[:, None, 2] / 2 + eps) & (v.abs() <= boxes[:, None, 3] / 2 + eps)


def rotated_iou_pairs(a: Tensor, b: Tensor) -> Tensor:
    """Exact BEV IoU of paired rotated rectangles a[i], b[i], each (P, 5) = (x, y, dx, dy, angle).

    The intersection of two convex quadrilaterals is the convex hull of the corners of each inside
    the other plus the edge-edge crossings; its vertices are ordered by angle around their mean and
    its area summed as a triangle fan. Computed in float64 around the pair's midpoint (mmcv shifts
    the same way) so that IoUs near an NMS threshold are decided like mmcv's."""
    if a.shape[0] == 0:
        return a.new_zeros(0)
    a, b = a.double().clone(), b.double().clone()
    mid = (a[:, :2] + b[:, :2]) / 2
    a[:, :2] -= mid
    b[:, :2] -= mid
    ca, cb = _corners(a), _corners(b)                       # (P, 4, 2)
    # edge crossings: every edge of a against every edge of b
    pa, ra = ca, ca.roll(-1, 1) - ca                        # start, direction
    pb, rb = cb, cb.roll(-1, 1) - cb
    p, r = pa[:, :, None], ra[:, :, None]                   # (P, 4, 1, 2)
    q, s = pb[:, None], rb[:, None]                         # (P, 1, 4, 2)

    def cross(u, v):
        return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]
    denom = cross(r, s)
    qp = q - p
    ok = denom.abs() > 1e-12
    safe = torch.where(ok, denom, torch.ones_like(denom))
    t = cross(qp, s) / safe
    u = cross(qp, r) / safe
    ok &= (t >= 0) & (t <= 1) & (u >= 0) & (u <= 1)
    xpts = (p + t[..., None] * r).reshape(-1, 16, 2)
    pts = torch.cat([ca, cb, xpts], 1)                      # (P, 24, 2)
    valid = torch.cat([_inside(ca, b), _inside(cb, a), ok.reshape(-1, 16)], 1)

    n_valid = valid.sum(1)
    w = valid.to(pts.dtype)
    centre = (pts * w[..., None]).sum(1) / n_valid.clamp(min=1)[:, None]
    rel = pts - centre[:, None]
    ang = torch.atan2(rel[..., 1], rel[..., 0])
    ang = torch.where(valid, ang, torch.full_like(ang, 10.0))  # invalid points sort last
    order = ang.argsort(1)
    rel = rel.gather(1, order[..., None].expand_as(rel))
    valid = valid.gather(1, order)
    # fan triangle (centre, v_i, v_next), v_next wraps from the last valid vertex to the first
    idx = torch.arange(pts.shape[1], device=pts.device)[None]
    nxt = torch.where(idx + 1 < n_valid[:, None], idx + 1, torch.zeros_like(idx))
    rel_next = rel.gather(1, nxt[..., None].expand_as(rel))
    area = (cross(rel, rel_next) * valid.to(rel.dtype)).sum(1) / 2
    inter = torch.where(n_valid >= 3, area.clamp(min=0), torch.zeros_like(area))
    area_a = a[:, 2] * a[:, 3]
    area_b = b[:, 2] * b[:, 3]
    union = area_a + area_b - inter
    iou = torch.where((area_a > 1e-14) & (area_b > 1e-14), inter / union.clamp(min=1e-14),
                      torch.zeros_like(inter))
    return iou.to(torch.float32)


def rotated_iou_matrix(a: Tensor, b: Tensor, chunk: int = 65536) -> Tensor:
    """(N, 5) x (M, 5) rotated BEV boxes -> (N, M) IoU. Pairs whose circumcircles do not touch
    are zero without computing their polygons."""
    n, m = a.shape[0], b.shape[0]
    iou = torch.zeros(n, m, dtype=torch.float32, device=a.device)
    if n == 0 or m == 0:
        return iou
    ra = torch.hypot(a[:, 2], a[:, 3]) / 2
    rb = torch.hypot(b[:, 2], b[:, 3]) / 2
    near = torch.cdist(a[:, :2].double(), b[:, :2].double()) <= (ra[:, None] + rb[None]).double() + 1e-6
    ii, jj = near.nonzero(as_tuple=True)
    for s in range(0, ii.numel(), chunk):
        i, j = ii[s:s + chunk], jj[s:s + chunk]
        iou[i, j] = rotated_iou_pairs(a[i], b[j])
    return iou


def nms_rotated(boxes: Tensor, scores: Tensor, iou_threshold: float, max_keep: int | None = None) -> Tensor:
    """Greedy NMS on rotated BEV boxes (x, y, dx, dy, angle); a box is dropped when its IoU with a
    kept, higher-scoring box is >= `iou_threshold` (mmcv's `nms_rotated` rule). Returns kept
    indices in descending score order, at most `max_keep`."""
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True)
    iou = rotated_iou_matrix(boxes[order], boxes[order]).cpu().numpy()
    keep = _greedy_keep(iou >= iou_threshold, max_keep)
    return order[torch.as_tensor(keep, dtype=torch.long, device=boxes.device)]


def _greedy_keep(suppresses: np.ndarray, max_keep: int | None) -> list[int]:
    """Greedy NMS over score-sorted candidates: keep i unless a kept j < i has suppresses[j, i]."""
    suppressed = np.zeros(len(suppresses), dtype=bool)
    keep: list[int] = []
    for i in range(len(suppresses)):
        if suppressed[i]:
            continue
        keep.append(i)
        if max_keep is not None and len(keep) >= max_keep:
            break
        suppressed[i + 1:] |= suppresses[i, i + 1:]
    return keep


def circle_nms(centers: Tensor, scores: Tensor, thresh: float, max_keep: int | None = None) -> Tensor:
    """CenterPoint's circle NMS: drop a box whose squared centre distance to a kept, higher-scoring
    box is <= `thresh` (mmdet3d passes `min_radius` straight in as this squared-distance bound)."""
    if centers.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=centers.device)
    order = scores.argsort(descending=True)
    c = centers[order].double()
    d2 = ((c[:, None] - c[None]) ** 2).sum(-1).cpu().numpy()
    keep = _greedy_keep(d2 <= thresh, max_keep)
    return order[torch.as_tensor(keep, dtype=torch.long, device=centers.device)]


# --------------------------------------------------------------------------- full decode

def _range_mask(boxes: Tensor, rng: Sequence[float] | None) -> Tensor:
    if rng is None:
        return torch.ones(boxes.shape[0], dtype=torch.bool, device=boxes.device)
    r = torch.tensor(rng, dtype=boxes.dtype, device=boxes.device)
    return (boxes[:, :3] >= r[:3]).all(1) & (boxes[:, :3] <= r[3:]).all(1)


def _nms_task(det: Detections, task_id: int, cfg: BoxCoderConfig) -> Detections:
    keep = det.scores >= cfg.score_threshold if cfg.score_threshold > 0 else torch.ones_like(det.scores, dtype=torch.bool)
    boxes, scores, labels = det.boxes[keep], det.scores[keep], det.labels[keep]
    if cfg.nms_type == "circle":
        sel = circle_nms(boxes[:, :2], scores, cfg.min_radius[task_id], cfg.post_max_size)
    else:
        # mmdet3d keeps only the best pre_max_size before NMS
        pre = scores.argsort(descending=True)[:cfg.pre_max_size]
        bev = boxes[pre][:, [0, 1, 3, 4, 6]]
        sel = pre[nms_rotated(bev, scores[pre], cfg.nms_thr, cfg.post_max_size)]
    boxes, scores, labels = boxes[sel], scores[sel], labels[sel]
    m = _range_mask(boxes, cfg.post_center_limit_range)
    return Detections(boxes[m], scores[m], labels[m])


def decode_detections(outputs: Sequence[Mapping[str, Tensor]], cfg: BoxCoderConfig) -> list[Detections]:
    """All task groups' head outputs (`CenterHead.forward`) -> one `Detections` per sample, labels
    indexing the concatenated class list of the groups (`CenterHead.class_names`)."""
    per_task = [decode_task(o, cfg) for o in outputs]
    offsets = np.cumsum([0] + [o["heatmap"].shape[1] for o in outputs])
    result = []
    for i in range(len(per_task[0])):
        dets = [_nms_task(per_task[t][i], t, cfg) for t in range(len(outputs))]
        result.append(Detections(
            torch.cat([d.boxes for d in dets]),
            torch.cat([d.scores for d in dets]),
            torch.cat([d.labels + int(offsets[t]) for t, d in enumerate(dets)])))
    return result


__all__ = ["BoxCoderConfig", "Detections", "decode_task", "decode_detections", "rotated_iou_pairs",
           "rotated_iou_matrix", "nms_rotated", "circle_nms"]
