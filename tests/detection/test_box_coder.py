"""Box decoding geometry, rotated BEV IoU and the two NMS flavours."""
import math

import pytest
import torch
from torchvision.ops import box_iou

from cache_schema.grid import BevGrid
from detection.centerpoint_coder import BoxCoderConfig, decode_detections, decode_task
from detection.nms import circle_nms, nms_rotated, rotated_iou_matrix, rotated_iou_pairs


def mc_iou(a, b, n=400):
    """Monte-Carlo-free reference: area fractions on a dense grid over both boxes' extent."""
    def inside(px, py, box):
        x, y, dx, dy, t = box
        u = (px - x) * math.cos(t) + (py - y) * math.sin(t)
        v = -(px - x) * math.sin(t) + (py - y) * math.cos(t)
        return (u.abs() <= dx / 2) & (v.abs() <= dy / 2)
    r = max(math.hypot(a[2], a[3]), math.hypot(b[2], b[3]))
    lo_x, hi_x = min(a[0], b[0]) - r, max(a[0], b[0]) + r
    lo_y, hi_y = min(a[1], b[1]) - r, max(a[1], b[1]) + r
    xs = torch.linspace(lo_x, hi_x, n, dtype=torch.float64)
    ys = torch.linspace(lo_y, hi_y, n, dtype=torch.float64)
    px, py = torch.meshgrid(xs, ys, indexing="ij")
    ia, ib = inside(px, py, a), inside(px, py, b)
    return ((ia & ib).sum() / (ia | ib).sum()).item()


def test_rotated_iou_matches_dense_sampling_on_random_pairs():
    g = torch.Generator().manual_seed(0)
    a = torch.cat([torch.rand(20, 2, generator=g) * 2, 0.5 + torch.rand(20, 2, generator=g) * 2,
                   (torch.rand(20, 1, generator=g) - 0.5) * 2 * math.pi], 1)
    b = torch.cat([torch.rand(20, 2, generator=g) * 2, 0.5 + torch.rand(20, 2, generator=g) * 2,
                   (torch.rand(20, 1, generator=g) - 0.5) * 2 * math.pi], 1)
    ours = rotated_iou_pairs(a, b)
    ref = torch.tensor([mc_iou(x.tolist(), y.tolist()) for x, y in zip(a, b)])
    assert (ref > 0.05).sum() >= 10  # mostly overlapping pairs, so the check has teeth
    assert torch.allclose(ours, ref.float(), atol=0.01)


def test_rotated_iou_axis_aligned_equals_torchvision_and_is_rotation_invariant():
    g = torch.Generator().manual_seed(1)
    a = torch.cat([torch.rand(30, 2, generator=g) * 3, 0.5 + torch.rand(30, 2, generator=g) * 2, torch.zeros(30, 1)], 1)
    b = torch.cat([torch.rand(30, 2, generator=g) * 3, 0.5 + torch.rand(30, 2, generator=g) * 2, torch.zeros(30, 1)], 1)
    xyxy = lambda t: torch.cat([t[:, :2] - t[:, 2:4] / 2, t[:, :2] + t[:, 2:4] / 2], 1)  # noqa: E731
    ref = box_iou(xyxy(a), xyxy(b))
    assert torch.allclose(rotated_iou_matrix(a, b), ref, atol=1e-5)
    # rotate the whole scene by 0.7 rad: IoUs are unchanged
    c, s = math.cos(0.7), math.sin(0.7)
    rot = lambda t: torch.cat([torch.stack([c * t[:, 0] - s * t[:, 1], s * t[:, 0] + c * t[:, 1]], 1),  # noqa: E731
                               t[:, 2:4], t[:, 4:] + 0.7], 1)
    assert torch.allclose(rotated_iou_matrix(rot(a), rot(b)), ref, atol=1e-5)


def test_rotated_iou_special_cases():
    box = torch.tensor([[1.0, 2.0, 4.0, 2.0, 0.3]])
    assert rotated_iou_pairs(box, box).item() == pytest.approx(1.0, abs=1e-6)
    # the same rectangle described with swapped sides and a quarter turn
    same = torch.tensor([[1.0, 2.0, 2.0, 4.0, 0.3 + math.pi / 2]])
    assert rotated_iou_pairs(box, same).item() == pytest.approx(1.0, abs=1e-6)
    far = torch.tensor([[10.0, 2.0, 4.0, 2.0, 0.3]])
    assert rotated_iou_pairs(box, far).item() == 0.0
    # a square and itself turned 45 degrees: intersection is the regular octagon
    sq, sq45 = torch.tensor([[0.0, 0, 2, 2, 0]]), torch.tensor([[0.0, 0, 2, 2, math.pi / 4]])
    octagon = 8 * (math.sqrt(2) - 1)
    assert rotated_iou_pairs(sq, sq45).item() == pytest.approx(octagon / (8 - octagon), abs=1e-5)


def test_nms_rotated_suppresses_at_iou_equal_threshold():
    boxes = torch.tensor([[0.0, 0, 2, 1, 0], [1.0, 0, 2, 1, 0], [5.0, 5, 1, 1, 0.4]])  # IoU(0, 1) = 1/3
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert nms_rotated(boxes, scores, 1 / 3 - 1e-6).tolist() == [0, 2]
    assert nms_rotated(boxes, scores, 0.34).tolist() == [0, 1, 2]
    assert nms_rotated(boxes, torch.tensor([0.1, 0.8, 0.7]), 0.3).tolist() == [1, 2]
    assert nms_rotated(boxes, scores, 0.34, max_keep=2).tolist() == [0, 1]


def test_circle_nms_uses_squared_distance():
    centers = torch.tensor([[0.0, 0.0], [1.9, 0.0], [0.0, 3.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert circle_nms(centers, scores, 4.0).tolist() == [0, 2]   # 1.9^2 = 3.61 <= 4
    assert circle_nms(centers, scores, 3.0).tolist() == [0, 1, 2]


def _one_peak_outputs(h=8, w=8, num_cls=2, peak=(3, 5), cls=1):
    heat = torch.full((1, num_cls, h, w), -8.0)
    heat[0, cls, peak[0], peak[1]] = 3.0
    yaw = 0.4
    out = {
        "reg": torch.stack([torch.full((h, w), 0.25), torch.full((h, w), 0.75)])[None],
        "height": torch.full((1, 1, h, w), -1.0),
        "dim": torch.log(torch.tensor([4.0, 2.0, 1.5]))[None, :, None, None].expand(1, 3, h, w).clone(),
        "rot": torch.tensor([math.sin(yaw), math.cos(yaw)])[None, :, None, None].expand(1, 2, h, w).clone(),
        "vel": torch.tensor([1.0, -2.0])[None, :, None, None].expand(1, 2, h, w).clone(),
        "heatmap": heat,
    }
    return out


SMALL_GRID = BevGrid((-3.2, -3.2, -5.0, 3.2, 3.2, 3.0), (0.2, 0.2, 8.0), 4)


def test_decode_places_a_peak_in_metric_coordinates():
    cfg = BoxCoderConfig(grid=SMALL_GRID, max_num=10, coder_post_center_range=(-10, -10, -5, 10, 10, 5),
                         post_center_limit_range=None)
    det = decode_task(_one_peak_outputs(), cfg)[0]
    assert len(det) == 1 and det.labels.tolist() == [1]
    x = (5 + 0.25) * 4 * 0.2 - 3.2
    y = (3 + 0.75) * 4 * 0.2 - 3.2
    expected = torch.tensor([x, y, -1.0, 4.0, 2.0, 1.5, 0.4, 1.0, -2.0])
    assert torch.allclose(det.boxes[0], expected, atol=1e-5)
    assert det.scores[0].item() == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item())


def test_decode_detections_offsets_labels_by_task_and_filters_range():
    cfg = BoxCoderConfig(grid=SMALL_GRID, max_num=10, coder_post_center_range=None,
                         post_center_limit_range=(-10, -10, -5, 10, 10, 5))
    outs = [_one_peak_outputs(num_cls=1, cls=0), _one_peak_outputs(num_cls=2, cls=1, peak=(1, 1))]
    det = decode_detections(outs, cfg)[0]
    assert det.labels.tolist() == [0, 2]  # task 1's class 1 is class 2 overall
    narrow = BoxCoderConfig(**{**cfg.__dict__, "post_center_limit_range": (0, -10, -5, 10, 10, 5)})
    assert decode_detections(outs, narrow)[0].labels.tolist() == [0]  # task 1's box sits at x < 0
