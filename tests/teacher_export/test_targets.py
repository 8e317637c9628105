"""LiDAR depth targets: the vectorised projection against a per-point loop and a hand-placed point."""
from __future__ import annotations

import math

import numpy as np
import pytest

from teacher_export.targets import depth_image, depth_images

# LiDAR (x forward, y left, z up) → camera (x right, y down, z forward), the nuScenes front camera's axes.
LIDAR_TO_CAM_AXES = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], np.float64)
K = np.array([[50.0, 0, 48.0], [0, 50.0, 32.0], [0, 0, 1]])


def rigid(rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    t = np.eye(4)
    t[:3, :3], t[:3, 3] = q, rng.normal(size=3) * scale
    return t


def yaw_jitter(rng: np.random.Generator) -> np.ndarray:
    """A camera mount that still looks roughly forward: a yaw of up to ±0.3 rad and a small offset."""
    a = rng.uniform(-0.3, 0.3)
    t = np.eye(4)
    t[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    t[:3, 3] = rng.normal(size=3) * 0.3
    return t


def naive_depth(points, lidar_to_camera, intrinsics, image_hw, stride, min_depth=1e-3):
    h, w = image_hw
    out = np.zeros((h // stride, w // stride), np.float32)
    for p in points:
        x, y, z, _ = lidar_to_camera @ np.array([p[0], p[1], p[2], 1.0])
        if z <= min_depth:
            continue
        u, v, s = intrinsics @ np.array([x, y, z])
        px, py = math.floor(u / s + 0.5), math.floor(v / s + 0.5)  # integer coordinates are pixel centres
        if not (0 <= px < w and 0 <= py < h):
            continue
        r, c = py // stride, px // stride
        if r >= h // stride or c >= w // stride:
            continue
        if out[r, c] == 0 or z < out[r, c]:
            out[r, c] = z
    return out


@pytest.mark.parametrize("image_hw,stride", [((64, 96), 4), ((66, 99), 8), ((64, 96), 1)])
def test_matches_naive_loop(image_hw, stride):
    rng = np.random.default_rng(stride)
    # Points all around the car, many in front of the camera, many behind it or outside the image.
    pts = np.concatenate([rng.uniform([-30, -30, -3], [30, 30, 3], size=(3000, 3)),
                          rng.uniform([1, -8, -2], [20, 8, 2], size=(2000, 3))])
    pts = np.concatenate([pts, rng.uniform(size=(len(pts), 2))], axis=1)  # intensity, ring: ignored
    tf = LIDAR_TO_CAM_AXES @ yaw_jitter(rng)
    got = depth_image(pts, tf, K, image_hw, stride)
    want = naive_depth(pts, tf, K, image_hw, stride)
    assert got.shape == (image_hw[0] // stride, image_hw[1] // stride) and got.dtype == np.float32
    assert (got > 0).sum() > 20  # the scene really lands in the image
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_known_point_lands_in_its_cell_with_its_depth():
    # (10, -2, 1) in the LiDAR frame → camera (2, -1, 10) → pixel u = 50*0.2+48 = 58, v = 50*-0.1+32 = 27.
    pts = np.array([
        [10.0, -2.0, 1.0],     # the point under test
        [20.0, -4.0, 2.0],     # same ray, farther: must lose against the nearer one
        [-10.0, 2.0, -1.0],    # behind the camera, projects to the same pixel if not rejected
        [10.0, -20.0, 0.0],    # in front but right of the image
    ])
    got = depth_image(pts, LIDAR_TO_CAM_AXES, K, (64, 96), stride=4)
    assert got[27 // 4, 58 // 4] == pytest.approx(10.0)
    assert np.count_nonzero(got) == 1


def test_depth_images_stacks_cameras():
    rng = np.random.default_rng(0)
    pts = rng.uniform([-20, -20, -2], [20, 20, 2], size=(2000, 3))
    tfs = np.stack([LIDAR_TO_CAM_AXES @ yaw_jitter(rng) for _ in range(6)])
    ks = np.stack([K] * 6)
    stack = depth_images(pts, tfs, ks, (64, 96), 8)
    assert stack.shape == (6, 8, 12) and (stack > 0).sum() > 30
    for c in range(6):
        np.testing.assert_array_equal(stack[c], depth_image(pts, tfs[c], ks[c], (64, 96), 8))
    with pytest.raises(ValueError):
        depth_images(pts, tfs, ks[:5], (64, 96), 8)
