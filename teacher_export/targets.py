"""Targets computed once at export: sparse per-camera LiDAR depth maps for depth supervision (DS).

BEVDepth supervises its depth net with LiDAR points projected into each camera, reduced to the depth
net's feature stride by taking the nearest point per cell (the nearest surface is what the camera sees
in that cell). We compute these at export so the student reads a small map instead of the point cloud.

Pixel convention: intrinsics follow OpenCV/nuScenes, where integer image coordinates are pixel centres,
so a point projecting to (u, v) lies in pixel (round(v), round(u)), and cell (r, c) of a stride-s map
covers pixels [r*s, (r+1)*s) × [c*s, (c+1)*s). Pixels beyond the last whole cell (when H or W is not a
multiple of s) are dropped, so the map is exactly (H // s, W // s).
"""
from __future__ import annotations

import numpy as np


def depth_image(points_lidar: np.ndarray, lidar_to_camera: np.ndarray, intrinsics: np.ndarray,
                image_hw: tuple[int, int], stride: int, min_depth: float = 1e-3) -> np.ndarray:
    """(H // stride, W // stride) float32 map of the smallest camera depth (z in metres) of the points
    falling in each cell, 0 where no point falls.

    points_lidar: (N, 3+) points in the LiDAR frame (extra columns such as intensity are ignored);
    lidar_to_camera: 4×4; intrinsics: 3×3; image_hw: (H, W) of the image the intrinsics belong to.
    Points with depth <= min_depth (behind or at the camera) are ignored.
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    out_h, out_w = h // stride, w // stride
    xyz = np.asarray(points_lidar, np.float64)[:, :3]
    t = np.asarray(lidar_to_camera, np.float64)
    cam = xyz @ t[:3, :3].T + t[:3, 3]
    cam = cam[cam[:, 2] > min_depth]
    uvw = cam @ np.asarray(intrinsics, np.float64).T
    u = np.floor(uvw[:, 0] / uvw[:, 2] + 0.5)
    v = np.floor(uvw[:, 1] / uvw[:, 2] + 0.5)
    col, row = u // stride, v // stride
    keep = (u >= 0) & (v >= 0) & (col < out_w) & (row < out_h)
    cell = row[keep].astype(np.int64) * out_w + col[keep].astype(np.int64)

    flat = np.full(out_h * out_w, np.inf)
    np.minimum.at(flat, cell, cam[keep, 2])
    flat[np.isinf(flat)] = 0.0
    return flat.reshape(out_h, out_w).astype(np.float32)


def depth_images(points_lidar: np.ndarray, lidar_to_cameras: np.ndarray, intrinsics: np.ndarray,
                 image_hw: tuple[int, int], stride: int, min_depth: float = 1e-3) -> np.ndarray:
    """The per-sample stack: (C, H // stride, W // stride) depth maps for C cameras of one image size,
    from (C, 4, 4) LiDAR→camera transforms and (C, 3, 3) intrinsics."""
    lidar_to_cameras = np.asarray(lidar_to_cameras)
    intrinsics = np.asarray(intrinsics)
    if lidar_to_cameras.shape[0] != intrinsics.shape[0]:
        raise ValueError(f"{lidar_to_cameras.shape[0]} camera transforms but {intrinsics.shape[0]} intrinsics")
    return np.stack([depth_image(points_lidar, t, k, image_hw, stride, min_depth)
                     for t, k in zip(lidar_to_cameras, intrinsics)])
