"""x3kd's Waymo reading against what the official package computes (fixtures: tests/fixtures/waymo,
made by its make_fixtures.py in a throw-away TensorFlow environment)."""
import json
from pathlib import Path

import numpy as np
import pytest

from dataset_access.waymo.range_image import range_image_to_points
from dataset_access.waymo.reader import WaymoV2
from dataset_access.waymo.schema import SCHEMAS

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "waymo"


def test_schemas_are_the_official_ones():
    official = json.loads((FIXTURES / "official_schemas.json").read_text())
    assert set(official) == set(SCHEMAS)
    for component, columns in official.items():
        ours = [[f.name, str(f.type)] for f in SCHEMAS[component]]
        assert ours == columns, component


@pytest.fixture(scope="module")
def split():
    return WaymoV2(FIXTURES / "v2", "training")


def test_points_match_the_official_conversion(split):
    official = np.load(FIXTURES / "official_points.npz")
    segment = split.segments[0]
    compared = 0
    for ts in split.timestamps(segment):
        frame = split.frame(segment, int(ts))
        for ret in (1, 2):
            expected = official[f"{ts}_return{ret}"]  # range, intensity, elongation, x, y, z
            ours = frame.points[frame.point_return == ret]
            assert len(ours) == len(expected) > 0
            np.testing.assert_allclose(ours[:, :3], expected[:, 3:6], atol=2e-3)
            np.testing.assert_allclose(ours[:, 3:6], expected[:, 0:3], atol=1e-6)
            compared += len(ours)
    assert compared > 500


def test_pixel_pose_matters(split):
    """Without the per-pixel pose the moving car's points land elsewhere: the fixture exercises it."""
    segment = split.segments[0]
    ts = int(split.timestamps(segment)[1])
    cams, lasers = split.calibration(segment)
    extrinsic, values, min_max = lasers[1]
    lidar = split.read("lidar", segment, ts)
    from dataset_access.waymo.range_image import beam_inclinations
    from dataset_access.waymo.schema import column
    values_col = lidar.column(column("lidar", "range_image_return1.values"))[0].values.to_numpy()
    shape = lidar.column(column("lidar", "range_image_return1.shape"))[0].as_py()
    image = values_col.reshape(shape)
    static = range_image_to_points(image, extrinsic, beam_inclinations(shape[0], values, min_max))
    frame = split.frame(segment, ts)
    moved = np.linalg.norm(static[:, :3] - frame.points[frame.point_return == 1][:, :3], axis=1)
    assert moved.max() > 0.05
