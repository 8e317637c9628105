"""The one 3D box convention used in the cache, by the teachers and by the student.

A box row is (x, y, z, l, w, h, yaw, vx, vy) in the LiDAR frame of its sample:
- (x, y, z) is the box's gravity centre (nuScenes' convention; mmdet3d's LiDAR boxes use the bottom
  centre, so z_bottom = z - h / 2 when talking to mmdet3d);
- l, w, h are the sizes along the box's own x (heading), y and z axes (nuScenes `wlh` reordered);
- yaw is the heading angle about +z, counter-clockwise from +x, in radians;
- vx, vy is the velocity in m/s in the LiDAR frame (NaN in nuScenes becomes 0).
"""
from __future__ import annotations

import numpy as np

BOX_DIM = 9
BOX_FIELDS = ("x", "y", "z", "l", "w", "h", "yaw", "vx", "vy")
_CORNER_SIGNS = np.array([[(i >> 0) & 1, (i >> 1) & 1, (i >> 2) & 1] for i in range(8)], dtype=np.float64) - 0.5


def box_corners(boxes: np.ndarray) -> np.ndarray:
    """(N, >=7) boxes (x, y, z_centre, l, w, h, yaw, ...) -> (N, 8, 3) corners in the boxes' frame.

    Corner i has the signs (x, y, z) = bits 0, 1, 2 of i along the box's own axes: 0..3 are the bottom
    face, (0, 1, 3, 2) walks it round, and corners 1 and 3 sit at the front (heading) end."""
    boxes = np.atleast_2d(np.asarray(boxes, dtype=np.float64))
    local = _CORNER_SIGNS[None] * boxes[:, None, 3:6]
    c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    x = local[..., 0] * c[:, None] - local[..., 1] * s[:, None]
    y = local[..., 0] * s[:, None] + local[..., 1] * c[:, None]
    return np.stack([x, y, local[..., 2]], -1) + boxes[:, None, :3]


# Edges join corners that differ in one bit.
BOX_EDGES: tuple[tuple[int, int], ...] = tuple((i, i | b) for i in range(8) for b in (1, 2, 4) if not i & b)
