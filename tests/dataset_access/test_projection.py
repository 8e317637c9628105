"""2D instance targets from projected 3D boxes (`dataset_access.projection`)."""
from __future__ import annotations

import numpy as np

from cache_schema.boxes import box_corners
from dataset_access.nuscenes.samples import NuScenesSamples
from dataset_access.projection import project_boxes

# A camera at the LiDAR origin looking along +x (camera z = LiDAR x, camera x = -LiDAR y, y = -z).
LIDAR_TO_CAM = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
K = np.array([[100.0, 0.0, 80.0], [0.0, 100.0, 45.0], [0.0, 0.0, 1.0]])
SIZE = (160, 90)


def _box(x, y, z=0.0, l=4.0, w=2.0, h=1.5, yaw=0.0):
    return np.array([x, y, z, l, w, h, yaw, 0.0, 0.0])


def test_box_straight_ahead_projects_to_its_pinhole_bounds():
    t = project_boxes(_box(10.0, 0.0, yaw=0.3)[None], np.array([3]), LIDAR_TO_CAM, K, SIZE)
    assert t.labels.tolist() == [3] and t.box_index.tolist() == [0]
    cam = box_corners(_box(10.0, 0.0, yaw=0.3)[None])[0] @ LIDAR_TO_CAM[:3, :3].T
    uv = cam @ K.T
    uv = uv[:, :2] / uv[:, 2:]
    np.testing.assert_allclose(t.boxes[0], [*uv.min(0), *uv.max(0)], atol=1e-4)
    # the mask is the silhouette: inside the box, touching all four sides, and filling most of it
    ys, xs = np.nonzero(t.masks[0])
    x1, y1, x2, y2 = t.boxes[0]
    assert xs.min() >= np.floor(x1) and xs.max() <= np.ceil(x2) and ys.min() >= np.floor(y1) and ys.max() <= np.ceil(y2)
    assert xs.min() - x1 < 1.5 and x2 - xs.max() < 1.5 and ys.min() - y1 < 1.5 and y2 - ys.max() < 1.5
    assert t.masks[0].sum() > 0.6 * (x2 - x1) * (y2 - y1)


def test_boxes_behind_or_outside_are_dropped():
    boxes = np.stack([_box(-10.0, 0.0),          # behind the camera
                      _box(10.0, 40.0),           # far off to the left, outside the image
                      _box(1.0, 0.0, l=6.0),      # crosses the camera plane: its projection is mostly off-image
                      _box(10.0, 4.0)])           # partly cut by the image edge, mostly inside
    t = project_boxes(boxes, np.arange(4), LIDAR_TO_CAM, K, SIZE)
    assert t.box_index.tolist() == [3]
    assert 0 <= t.boxes[0, 0] < t.boxes[0, 2] <= SIZE[0] and 0 <= t.boxes[0, 1] < t.boxes[0, 3] <= SIZE[1]
    assert t.masks.shape == (1, SIZE[1], SIZE[0]) and t.masks.dtype == np.uint8
    # Without the visibility rule the crossing box is kept: clipped at the near plane in 3D, it covers
    # the image centre (where the part in front of the camera is) and its 2D box is the whole image.
    t = project_boxes(boxes[2:3], np.zeros(1), LIDAR_TO_CAM, K, SIZE, min_visible=0.0)
    assert t.box_index.tolist() == [0]
    np.testing.assert_allclose(t.boxes[0], [0, 0, SIZE[0], SIZE[1]])
    assert t.masks[0, 45, 80] == 1


def test_gt_centres_of_synthetic_samples_project_inside_their_2d_boxes(synthetic_dataroot):
    samples = NuScenesSamples(synthetic_dataroot, "v1.0-mini", "mini_train", num_sweeps=0)
    kept = 0
    for s in samples:
        for cam in s.cameras:
            t = project_boxes(s.gt_boxes, s.gt_labels, s.lidar_to_camera(cam.name), s.intrinsics(cam.name),
                              cam.image_size)
            assert np.array_equal(t.labels, s.gt_labels[t.box_index])
            for k, i in enumerate(t.box_index):
                c = s.lidar_to_camera(cam.name) @ np.append(s.gt_boxes[i, :3].astype(np.float64), 1.0)
                if c[2] <= 0.5:
                    continue
                u, v = (s.intrinsics(cam.name) @ c[:3])[:2] / c[2]
                if not (0 <= u < cam.width and 0 <= v < cam.height):
                    continue  # the centre itself is off-image; the box was kept for its visible part
                x1, y1, x2, y2 = t.boxes[k]
                assert x1 <= u <= x2 and y1 <= v <= y2
                assert t.masks[k, int(v), int(u)] == 1  # a box's centre is inside its silhouette
                kept += 1
    assert kept >= 5
