"""The pixel conventions of export and student agree: a LiDAR point's depth, exported by
teacher_export.targets.depth_image and carried through the student's image augmentation, lands in the
feature cell whose Lift-Splat frustum ray passes through that point, in the right depth bin."""
import math

import numpy as np
import torch

from cache_schema.grid import BevGrid
from student.image_aug import ImageAugParams, image_aug_matrix
from student.models.view_transform import LSSViewTransform
from student.targets import depth_bin_onehot, depth_image_to_feature_grid
from teacher_export.targets import depth_image


def test_exported_depth_lands_on_the_frustum_point_of_the_lidar_point():
    h0, w0, stride = 360, 640, 4
    k = np.array([[300.0, 0, 320], [0, 300, 180], [0, 0, 1]])
    ida = image_aug_matrix(ImageAugParams(0.5, (8, 36), True, 0.0, (128, 304)), (h0, w0))
    k_aug = ida.double().numpy() @ k
    d_bound = (1.0, 41.0, 0.5)
    vt = LSSViewTransform(BevGrid((-40, -40, -10, 40, 40, 10), (0.5, 0.5, 20), 1), d_bound, (128, 304), 16)
    lidar_to_cam = np.eye(4)  # the camera frame doubles as the LiDAR frame here
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(200):
        p = np.array([rng.uniform(-8, 8), rng.uniform(-4, 4), rng.uniform(3, 35)])
        uvw = k_aug @ p
        u, v = uvw[0] / uvw[2], uvw[1] / uvw[2]
        # Skip points near a feature-cell edge: export rounds to a pixel and reduces by the depth stride.
        fu, fv = (u + 0.5) / 16, (v + 0.5) / 16
        if min(fu % 1, 1 - fu % 1, fv % 1, 1 - fv % 1) * 16 < 3 or not (0 <= u < 304 and 0 <= v < 128):
            continue
        dimg = depth_image(p[None], lidar_to_cam, k, (h0, w0), stride)
        cell = depth_image_to_feature_grid(torch.from_numpy(dimg)[None], ida[None], stride, (8, 19), 16)[0]
        rows, cols = torch.nonzero(cell, as_tuple=True)
        assert (int(rows[0]), int(cols[0])) == (math.floor(fv), math.floor(fu))
        assert math.isclose(float(cell[rows[0], cols[0]]), p[2], rel_tol=1e-3)
        onehot = depth_bin_onehot(cell, d_bound)
        b = int(onehot[:, rows[0], cols[0]].argmax())
        # The frustum point of that (cell, bin) is within a cell's footprint of the LiDAR point.
        geom = vt.geometry(torch.from_numpy(k_aug).float()[None, None], torch.eye(4)[None, None], torch.eye(4)[None])
        q = geom.points[0, 0, b, rows[0], cols[0]].double().numpy()
        assert abs(q[2] - p[2]) <= 0.25 + 1e-6  # half a bin
        assert np.linalg.norm(q[:2] * p[2] / q[2] - p[:2]) <= 8 * math.sqrt(2) * p[2] / 150 + 1e-6  # half a cell
        checked += 1
    assert checked > 50
