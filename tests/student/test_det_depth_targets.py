"""Target builders: CenterPoint Gaussians/regression and depth targets through image augmentation."""
import math

import numpy as np
import torch

from cache_schema.grid import ClassSetup
from student.image_aug import ImageAugParams, image_aug_matrix
from student.targets import depth_bin_onehot, depth_image_to_feature_grid
from detection.det_targets import build_det_targets, draw_gaussian, gaussian_radius
from .student_scenes import TINY_GRID


def test_gaussian_radius_is_the_smallest_of_cornernets_three_quadratic_cases():
    for h, w, o in [(3.0, 5.0, 0.1), (10.0, 2.0, 0.1), (4.0, 4.0, 0.7)]:
        cases = [(1, h + w, w * h * (1 - o) / (1 + o)), (4, 2 * (h + w), (1 - o) * w * h),
                 (4 * o, -2 * o * (h + w), (o - 1) * w * h)]
        # CenterPoint's form: a * (largest root of a r^2 - b r + c = 0).
        ref = min(a * max(np.roots([a, -b, c]).real) for a, b, c in cases)
        assert math.isclose(gaussian_radius(h, w, o), ref, rel_tol=1e-9)


def test_draw_gaussian_values_and_clipping_at_the_border():
    hm = torch.zeros(6, 8)
    draw_gaussian(hm, (1, 2), 2)  # (col, row), clipped on the left
    sigma = 5 / 6
    for i in range(6):
        for j in range(8):
            d2 = (j - 1) ** 2 + (i - 2) ** 2
            inside = abs(j - 1) <= 2 and abs(i - 2) <= 2
            expect = math.exp(-d2 / (2 * sigma * sigma)) if inside else 0.0
            assert math.isclose(float(hm[i, j]), expect, rel_tol=1e-5, abs_tol=1e-7)
    draw_gaussian(hm, (2, 2), 2)  # overlapping draws keep the maximum
    assert float(hm[2, 1]) == 1.0 and float(hm[2, 2]) == 1.0


def test_build_det_targets_centres_regression_and_task_groups():
    classes = ClassSetup()
    box = torch.tensor([[1.0, -2.0, 0.5, 4.0, 2.0, 1.6, 0.7, 1.5, -0.5]])  # a car
    far = torch.tensor([[40.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]])  # outside the grid: dropped
    tt = build_det_targets([torch.cat([box, far])], [torch.tensor([0, 0])], TINY_GRID, classes)
    car = tt[0]
    gx, gy = (1.0 + 12.8) / 0.8, (-2.0 + 12.8) / 0.8  # 17.25, 13.5
    col, row = int(gx), int(gy)
    assert car.heatmap.shape == (1, 1, 32, 32)
    assert float(car.heatmap[0, 0, row, col]) == 1.0 and int(car.heatmap.eq(1).sum()) == 1
    assert car.batch_index.tolist() == [0] and car.cell_index.tolist() == [row * 32 + col]
    expect = [gx - col, gy - row, 0.5, math.log(4), math.log(2), math.log(1.6), math.sin(0.7), math.cos(0.7), 1.5, -0.5]
    assert torch.allclose(car.box_target[0], torch.tensor(expect), atol=1e-5)
    assert all(t.box_target.shape[0] == 0 and t.heatmap.sum() == 0 for t in tt[1:])


def _reference_depth_grid(depth, ida, s, hw, stride):
    h, w = hw
    out = np.full((h, w), np.inf)
    for r in range(depth.shape[0]):
        for c in range(depth.shape[1]):
            d = float(depth[r, c])
            if d <= 0:
                continue
            p = ida.double().numpy() @ np.array([c * s + (s - 1) / 2, r * s + (s - 1) / 2, 1.0])
            j, k = math.floor((p[0] / p[2] + 0.5) / stride), math.floor((p[1] / p[2] + 0.5) / stride)
            if 0 <= j < w and 0 <= k < h:
                out[k, j] = min(out[k, j], d)
    out[np.isinf(out)] = 0
    return out


def test_depth_image_to_feature_grid_matches_a_pointwise_loop_under_flip_and_rotation():
    g = torch.Generator().manual_seed(0)
    depth = torch.rand(2, 45, 80, generator=g) * 50
    depth[torch.rand(2, 45, 80, generator=g) > 0.15] = 0  # sparse like LiDAR
    ida = torch.stack([
        image_aug_matrix(ImageAugParams(0.2, (4, 10), True, 0.0, (64, 176)), (900, 1600)),
        image_aug_matrix(ImageAugParams(0.22, (20, 30), False, 5.0, (64, 176)), (900, 1600))])
    got = depth_image_to_feature_grid(depth, ida, 20, (4, 11), 16)
    for i in range(2):
        ref = _reference_depth_grid(depth[i], ida[i], 20, (4, 11), 16)
        assert np.allclose(got[i].numpy(), ref, atol=1e-5)
    assert (got > 0).sum() > 20


def test_depth_bin_onehot_against_loop():
    d = torch.tensor([[0.0, 1.99, 2.0, 2.49], [2.5, 57.9, 58.0, 30.2]])
    oh = depth_bin_onehot(d, (2.0, 58.0, 0.5))
    assert oh.shape == (112, 2, 4)
    for i in range(2):
        for j in range(4):
            v = float(d[i, j])
            k = math.floor((v - 2.0) / 0.5)
            expect = torch.zeros(112)
            if v > 0 and 0 <= k < 112:
                expect[k] = 1
            assert torch.equal(oh[:, i, j], expect), (v, oh[:, i, j].nonzero())
