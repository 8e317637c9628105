"""The LiDAR caster: culling rays per box changes nothing, and hits land on what they hit."""
from __future__ import annotations

import numpy as np
import pytest

from dataset_access.synthetic import lidar
from dataset_access.synthetic.rig import lidar_to_ego
from dataset_access.synthetic.world import boxes_at, sample_world


@pytest.fixture(scope="module")
def world():
    times = np.arange(0.0, 3.0, 0.1)
    ego, actors = sample_world(np.random.default_rng(3), times, 15, (500.0, 800.0))
    return ego, actors


def test_ray_culling_is_exact(world, monkeypatch: pytest.MonkeyPatch) -> None:
    ego, actors = world
    refl = np.array([a.object_class.reflectivity for a in actors])
    for t in (0.0, 1.5):
        pose = ego.pose(t) @ lidar_to_ego()
        boxes = boxes_at(actors, t)
        culled = lidar.cast_lidar(pose, boxes, refl, np.random.default_rng(1), 16, 256)
        with monkeypatch.context() as m:
            m.setattr(lidar, "_candidate_rays", lambda l2w, b, elev, az: [np.arange(len(elev) * az)] * len(b))
            brute = lidar.cast_lidar(pose, boxes, refl, np.random.default_rng(1), 16, 256)
        np.testing.assert_array_equal(culled.points, brute.points)
        np.testing.assert_array_equal(culled.unoccluded_rays, brute.unoccluded_rays)
        assert (culled.hit_box >= 0).any()


def test_hits_lie_on_their_box_or_the_ground(world) -> None:
    ego, actors = world
    pose = ego.pose(0.0) @ lidar_to_ego()
    boxes = boxes_at(actors, 0.0)
    scan = lidar.cast_lidar(pose, boxes, np.full(len(actors), 50.0), np.random.default_rng(0), 16, 256)
    world_pts = scan.points[:, :3].astype(np.float64) @ pose[:3, :3].T + pose[:3, 3]
    ground = scan.hit_box < 0
    assert np.abs(world_pts[ground, 2]).max() < 0.15  # range noise only
    grown = boxes.copy()
    grown[:, 3:6] += 0.2  # noise moves surface points a few cm along the ray
    inside = lidar.points_in_boxes(world_pts[~ground], grown)
    assert inside[np.arange(len(inside)), scan.hit_box[~ground]].all()
    assert np.all(scan.visible_rays <= scan.unoccluded_rays)
    assert scan.points.dtype == np.float32 and scan.points.shape[1] == 5
