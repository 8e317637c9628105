"""Rotated BEV IoU and the two NMS rules CenterPoint uses at test time.

The rotated NMS is exact: mmdet3d 1.4's `nms_bev` hands (x, y, dx, dy, yaw) boxes to mmcv's
`nms_rotated`, which computes the polygon intersection of the rotated rectangles (no axis-aligned
approximation) and suppresses at IoU >= threshold; we do the same in torch.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


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
