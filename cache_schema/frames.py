"""Rigid transforms as 4x4 float64 matrices, the quaternion conversions nuScenes tables need, and the
one chain that moves a sensor's frame into a sample's LiDAR frame.

nuScenes stores every pose as (rotation quaternion [w, x, y, z], translation [x, y, z]); everything here
works with homogeneous 4x4 matrices instead, so composing frames is a matrix product. The cache's
`calib` group stores such matrices; how they compose (`sensor_to_lidar`) is part of the contract, so it
lives here, where the exporter, the readers and the student all find it (numpy only).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def quaternion_to_matrix(q: Sequence[float]) -> np.ndarray:
    """3x3 rotation matrix of a quaternion (w, x, y, z); the quaternion need not be normalised."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quaternion(r: np.ndarray) -> np.ndarray:
    """Quaternion (w, x, y, z) with w >= 0 of a 3x3 rotation matrix (Shepperd's method, stable for all
    angles)."""
    r = np.asarray(r, dtype=np.float64)
    tr = np.trace(r)
    if tr > 0:
        s = 2.0 * np.sqrt(1.0 + tr)
        q = np.array([0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s])
    elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
        s = 2.0 * np.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2])
        q = np.array([(r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s])
    elif r[1, 1] > r[2, 2]:
        s = 2.0 * np.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2])
        q = np.array([(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s])
    else:
        s = 2.0 * np.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1])
        q = np.array([(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s])
    q /= np.linalg.norm(q)
    return -q if q[0] < 0 else q


def yaw_to_quaternion(yaw: float) -> np.ndarray:
    """Quaternion (w, x, y, z) of a rotation by `yaw` radians about +z."""
    return np.array([np.cos(yaw / 2.0), 0.0, 0.0, np.sin(yaw / 2.0)])


def rotation_z(yaw: float) -> np.ndarray:
    """3x3 rotation by `yaw` radians about +z."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def make_transform(rotation: np.ndarray | Sequence[float], translation: Sequence[float]) -> np.ndarray:
    """4x4 transform from a 3x3 rotation matrix or a (w, x, y, z) quaternion and a translation."""
    rotation = np.asarray(rotation, dtype=np.float64)
    t = np.eye(4)
    t[:3, :3] = quaternion_to_matrix(rotation) if rotation.shape == (4,) else rotation
    t[:3, 3] = np.asarray(translation, dtype=np.float64)
    return t


def invert_transform(t: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform (exact: transpose of the rotation, no general matrix inverse)."""
    inv = np.eye(4)
    r = t[:3, :3]
    inv[:3, :3] = r.T
    inv[:3, 3] = -r.T @ t[:3, 3]
    return inv


def sensor_to_lidar(sensor_to_ego: np.ndarray, sensor_ego_pose: np.ndarray, lidar_to_global: np.ndarray
                    ) -> np.ndarray:
    """4x4 (or [..., 4, 4]) transform from a sensor's frame to the key LiDAR frame of a sample, through
    the global frame: every nuScenes sensor (camera, radar, LiDAR sweep) fires at its own time, with
    the ego pose (ego -> global) of that time, so the ego motion between the two timestamps counts:
    inv(lidar_to_global) @ sensor_ego_pose @ sensor_to_ego, where lidar_to_global is the key frame's
    ego_pose @ lidar_to_ego."""
    return (invert_transform(np.asarray(lidar_to_global, np.float64)) @ np.asarray(sensor_ego_pose, np.float64)
            @ np.asarray(sensor_to_ego, np.float64))


def transform_points(t: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to (N, 3) points; returns (N, 3) in the points' dtype."""
    out = points[:, :3].astype(np.float64) @ t[:3, :3].T + t[:3, 3]
    return out.astype(points.dtype, copy=False)


def yaw_of(rotation: np.ndarray) -> float:
    """Heading about +z of a 3x3 rotation: the angle of its rotated x axis in the xy plane."""
    return float(np.arctan2(rotation[1, 0], rotation[0, 0]))
