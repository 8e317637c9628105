"""Transforms and quaternions agree with pyquaternion (the devkit's own quaternion library)."""
from __future__ import annotations

import numpy as np
from pyquaternion import Quaternion

from teacher_export.data.geometry import (invert_transform, make_transform, matrix_to_quaternion,
                                          quaternion_to_matrix, yaw_of, yaw_to_quaternion)


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
