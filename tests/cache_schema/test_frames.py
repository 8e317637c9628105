"""Transforms and quaternions agree with pyquaternion (the devkit's own quaternion library); the sensor ->
LiDAR chain goes through the global frame."""
from __future__ import annotations

import numpy as np
from pyquaternion import Quaternion

from cache_schema.frames import (invert_transform, make_transform, matrix_to_quaternion, quaternion_to_matrix,
                                 sensor_to_lidar, yaw_of, yaw_to_quaternion)


def test_quaternion_round_trip_matches_pyquaternion() -> None:
    rng = np.random.default_rng(0)
    for q in rng.normal(size=(200, 4)):
        q /= np.linalg.norm(q)
        r = quaternion_to_matrix(q)
        np.testing.assert_allclose(r, Quaternion(q).rotation_matrix, atol=1e-12)
        back = matrix_to_quaternion(r)
        np.testing.assert_allclose(back, q if q[0] >= 0 else -q, atol=1e-9)
    # Rotations by ~180 deg take the non-trace branches.
    for axis in np.eye(3):
        q = np.r_[0.0, axis]
        np.testing.assert_allclose(quaternion_to_matrix(matrix_to_quaternion(quaternion_to_matrix(q))),
                                   quaternion_to_matrix(q), atol=1e-12)


def test_transforms_compose_and_invert() -> None:
    t = make_transform(yaw_to_quaternion(1.2), (3.0, -4.0, 0.5))
    assert abs(yaw_of(t[:3, :3]) - 1.2) < 1e-12
    np.testing.assert_allclose(invert_transform(t) @ t, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(make_transform(t[:3, :3], t[:3, 3]), t)
    np.testing.assert_allclose(t[:3, :3], Quaternion(axis=[0, 0, 1], angle=1.2).rotation_matrix, atol=1e-12)


def _rigid(rng: np.random.Generator, scale: float) -> np.ndarray:
    return make_transform(rng.normal(size=4), rng.normal(size=3) * scale)


def test_sensor_to_lidar_goes_through_the_global_frame() -> None:
    # A point seen by a sensor at its own time lands where the global frame says it is in the key LiDAR
    # frame, for one sensor and for a stack of them.
    rng = np.random.default_rng(1)
    lidar_to_ego, lidar_pose = _rigid(rng, 1), _rigid(rng, 10)
    sensor_to_ego = np.stack([_rigid(rng, 1) for _ in range(3)])
    sensor_pose = np.stack([_rigid(rng, 10) for _ in range(3)])
    p_sensor = np.array([3.0, -1.0, 0.5, 1.0])
    stacked = sensor_to_lidar(sensor_to_ego, sensor_pose, lidar_pose @ lidar_to_ego)
    for i in range(3):
        p_global = sensor_pose[i] @ sensor_to_ego[i] @ p_sensor
        expected = np.linalg.solve(lidar_to_ego, np.linalg.solve(lidar_pose, p_global))
        np.testing.assert_allclose(sensor_to_lidar(sensor_to_ego[i], sensor_pose[i], lidar_pose @ lidar_to_ego)
                                   @ p_sensor, expected, atol=1e-9)
        np.testing.assert_allclose(stacked[i] @ p_sensor, expected, atol=1e-9)
