"""2D instance targets for the image teacher from the 3D GT boxes: each box projected into a camera.

A box that crosses the camera plane is first clipped to the near plane in 3D (corners in front plus
the crossings of its 12 edges), so the projection of what is in front stays exact; its 2D box is the
bounds of those projected points clipped to the image, and its mask the filled convex hull of the
points. Occlusion by nearer boxes is not modelled: a partly hidden object keeps its whole silhouette,
which is what an amodal instance mask is.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from cache_schema.boxes import BOX_EDGES, box_corners

NEAR_PLANE = 0.1


@dataclass
class CameraTargets:
    """Instances of one camera image: `boxes (K, 4)` float32 x1, y1, x2, y2 pixels; `labels (K,)` int64
    indices into the GT class list; `masks (K, H, W)` uint8; `box_index (K,)` which GT box each is."""

    boxes: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    box_index: np.ndarray


def _clip_to_front(corners_cam: np.ndarray) -> np.ndarray:
    """Vertices of a box (8, 3) in camera coordinates clipped to z >= NEAR_PLANE, as (M, 3) points whose
    convex hull is the clipped box (empty when the box is wholly behind)."""
    front = corners_cam[:, 2] >= NEAR_PLANE
    pts = [corners_cam[front]]
    for a, b in BOX_EDGES:
        if front[a] != front[b]:
            pa, pb = corners_cam[a], corners_cam[b]
            f = (NEAR_PLANE - pa[2]) / (pb[2] - pa[2])
            pts.append((pa + f * (pb - pa))[None])
    return np.concatenate(pts, 0)


def _hull(points: np.ndarray) -> np.ndarray:
    """Convex hull (counter-clockwise) of 2D points (Andrew's monotone chain)."""
    pts = sorted(set(map(tuple, np.round(points, 6))))
    if len(pts) <= 2:
        return np.array(pts)

    def half(seq):
        out: list[tuple[float, float]] = []
        for p in seq:
            while len(out) >= 2 and ((out[-1][0] - out[-2][0]) * (p[1] - out[-2][1])
                                     - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0])) <= 0:
                out.pop()
            out.append(p)
        return out
    lower, upper = half(pts), half(reversed(pts))
    return np.array(lower[:-1] + upper[:-1])


def project_boxes(boxes: np.ndarray, labels: np.ndarray, lidar_to_camera: np.ndarray, intrinsics: np.ndarray,
                  image_size: tuple[int, int], min_visible: float = 0.3, min_pixels: float = 2.0) -> CameraTargets:
    """Project GT `boxes (N, 9)` (LiDAR frame) into the camera `lidar_to_camera` (4x4) / `intrinsics`
    (3x3) of `image_size` (width, height).

    A box is kept when part of it is in front of the camera, at least `min_visible` of its projected
    2D box lies inside the image, and the clipped 2D box is at least `min_pixels` wide and high."""
    w, h = image_size
    kept_boxes, kept_labels, masks, index = [], [], [], []
    corners = box_corners(np.asarray(boxes, dtype=np.float64).reshape(-1, 9))
    for i, c in enumerate(corners):
        cam = c @ lidar_to_camera[:3, :3].T + lidar_to_camera[:3, 3]
        pts = _clip_to_front(cam)
        if len(pts) < 3:
            continue
        uv = pts @ intrinsics.T
        uv = uv[:, :2] / uv[:, 2:3]
        x1, y1 = uv.min(0)
        x2, y2 = uv.max(0)
        full = (x2 - x1) * (y2 - y1)
        cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(w)), min(y2, float(h))
        if cx2 - cx1 < min_pixels or cy2 - cy1 < min_pixels or full <= 0:
            continue
        if (cx2 - cx1) * (cy2 - cy1) / full < min_visible:
            continue
        mask = Image.new("L", (w, h), 0)
        hull = _hull(uv)
        if len(hull) >= 3:
            ImageDraw.Draw(mask).polygon([tuple(p) for p in hull], fill=1)
        m = np.asarray(mask, dtype=np.uint8)
        if not m.any():
            continue
        kept_boxes.append((cx1, cy1, cx2, cy2))
        kept_labels.append(int(labels[i]))
        masks.append(m)
        index.append(i)
    return CameraTargets(np.asarray(kept_boxes, dtype=np.float32).reshape(-1, 4),
                         np.asarray(kept_labels, dtype=np.int64),
                         np.stack(masks) if masks else np.zeros((0, h, w), dtype=np.uint8),
                         np.asarray(index, dtype=np.int64))
