"""Lift-Splat geometry and voxel pooling against a naive loop."""
import math

import torch

from cache_schema.grid import BevGrid
from student.models.view_transform import LSSViewTransform


def _cameras(b, n):
    k = torch.tensor([[40.0, 0, 31.5], [0, 40.0, 15.5], [0, 0, 1]]).expand(b, n, 3, 3).clone()
    c2l = torch.eye(4).repeat(b, n, 1, 1)
    for i in range(n):
        a = 2 * math.pi * i / n + 0.3
        # Camera z (optical axis) along (cos a, sin a, 0), camera x to the right, camera y down.
        c2l[:, i, :3, :3] = torch.tensor([[math.sin(a), 0, math.cos(a)], [-math.cos(a), 0, math.sin(a)], [0, -1, 0]])
        c2l[:, i, :3, 3] = torch.tensor([0.5 * math.cos(a), 0.5 * math.sin(a), 1.0])
    return k, c2l


def test_lifted_points_project_back_to_their_pixels():
    grid = BevGrid((-8, -8, -3, 8, 8, 3), (0.5, 0.5, 6), 2)
    vt = LSSViewTransform(grid, (1.0, 9.0, 2.0), (32, 64), 16)
    k, c2l = _cameras(1, 2)
    geom = vt.geometry(k, c2l, torch.eye(4)[None])
    pts = geom.points[0, 1]  # [D, h, w, 3] LiDAR frame
    cam = (torch.cat([pts, torch.ones_like(pts[..., :1])], -1) @ torch.linalg.inv(c2l[0, 1]).T)[..., :3]
    uvw = cam @ k[0, 1].T
    assert torch.allclose(uvw[..., 0] / uvw[..., 2], vt.frustum[..., 0], atol=1e-3)
    assert torch.allclose(uvw[..., 1] / uvw[..., 2], vt.frustum[..., 1], atol=1e-3)
    assert torch.allclose(cam[..., 2], vt.frustum[..., 2], atol=1e-4)  # depth along the optical axis


def test_voxel_pooling_matches_a_naive_loop_with_bev_augmentation():
    grid = BevGrid((-8, -8, -3, 8, 8, 3), (0.5, 0.5, 6), 2)  # 16 x 16 cells of 1 m
    vt = LSSViewTransform(grid, (1.0, 11.0, 2.5), (32, 64), 16)  # 4 bins, 2 x 4 pixels
    b, n, c = 2, 3, 3
    k, c2l = _cameras(b, n)
    bda = torch.eye(4).repeat(b, 1, 1)
    bda[1, :2, :2] = torch.tensor([[0.0, -1.0], [1.0, 0.0]]) * 1.05  # rotate 90 and scale sample 1
    g = torch.Generator().manual_seed(0)
    prob = torch.rand(b, n, 4, 2, 4, generator=g)
    ctx = torch.randn(b, n, c, 2, 4, generator=g)
    bev = vt.pool(prob, ctx, vt.geometry(k, c2l, bda))

    ref = torch.zeros(b, c, 16, 16)
    r = grid.point_cloud_range
    hit = 0
    for bi in range(b):
        for ni in range(n):
            kinv = torch.linalg.inv(k[bi, ni])
            for di in range(4):
                for i in range(2):
                    for j in range(4):
                        u, v, d = vt.frustum[di, i, j].tolist()
                        p = kinv @ torch.tensor([u * d, v * d, d])
                        p = bda[bi] @ c2l[bi, ni] @ torch.cat([p, torch.ones(1)])
                        col, row = math.floor((p[0] - r[0]) / 1.0), math.floor((p[1] - r[1]) / 1.0)
                        if 0 <= col < 16 and 0 <= row < 16 and r[2] <= p[2] < r[5]:
                            ref[bi, :, row, col] += prob[bi, ni, di, i, j] * ctx[bi, ni, :, i, j]
                            hit += 1
    assert hit > 20
    assert torch.allclose(bev, ref, atol=1e-5)


def test_voxel_pooling_gradients_reach_depth_and_context():
    grid = BevGrid((-8, -8, -3, 8, 8, 3), (0.5, 0.5, 6), 2)
    vt = LSSViewTransform(grid, (1.0, 11.0, 2.5), (32, 64), 16)
    k, c2l = _cameras(1, 2)
    logits = torch.randn(2, 4, 2, 4, requires_grad=True)
    ctx = torch.randn(2, 5, 2, 4, requires_grad=True)
    bev = vt(logits, ctx, k, c2l, torch.eye(4)[None])
    assert bev.shape == (1, 5, 16, 16)
    (bev ** 2).sum().backward()
    assert logits.grad.abs().sum() > 0 and ctx.grad.abs().sum() > 0
