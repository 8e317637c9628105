"""Waymo range images to points, in numpy, with the definitions of the official conversion.

A range image is (H, W, 4): range (m; <= 0 where the beam returned nothing), intensity, elongation and
the no-label-zone flag. Row i is the beam whose inclination is the i-th from the top (the calibration lists
inclinations bottom-up, so rows read them reversed); column j looks along the vehicle-frame azimuth
((W - j - 0.5) / W * 2 - 1) * pi, so the sensor-frame azimuth subtracts the extrinsic's yaw. A sensor with
a per-pixel pose (the TOP LiDAR: the car moves during its 0.1 s spin) gives each pixel the vehicle pose
of the moment it fired: points go sensor -> vehicle (extrinsic) -> world (pixel pose) -> the frame's
vehicle (inverse frame pose), which removes the rolling-shutter smear. Computed in float64.
"""
from __future__ import annotations

import numpy as np

RANGE, INTENSITY, ELONGATION, NO_LABEL_ZONE = range(4)
# Per point: position in the frame's vehicle frame, then the range image's own channels.
POINT_FEATURES: tuple[str, ...] = ("x", "y", "z", "range", "intensity", "elongation", "no_label_zone")


def beam_inclinations(height: int, values: np.ndarray | None = None,
                      min_max: tuple[float, float] | None = None) -> np.ndarray:
    """(height,) inclination of each range-image row, top row first, from the calibration's listed
    `values` (bottom-up) or, when it lists none, `min_max` spread uniformly over the rows' centres."""
    if values is not None and len(values):
        incl = np.asarray(values, dtype=np.float64)
        if len(incl) != height:
            raise ValueError(f"range image has {height} rows, the calibration {len(incl)} beam inclinations")
    elif min_max is not None:
        lo, hi = (float(v) for v in min_max)
        incl = lo + (np.arange(height) + 0.5) / height * (hi - lo)
    else:
        raise ValueError("the calibration has neither beam inclination values nor min/max")
    return incl[::-1].copy()


def euler_to_rotation(roll: np.ndarray, pitch: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations Rz(yaw) @ Ry(pitch) @ Rx(roll): roll applied first (Waymo's per-pixel pose)."""
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    return np.stack([
        np.stack([cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr], axis=-1),
        np.stack([sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr], axis=-1),
        np.stack([-sp, cp * sr, cp * cr], axis=-1),
    ], axis=-2)


def rotation_to_euler(rotation: np.ndarray) -> np.ndarray:
    """(..., 3) roll, pitch, yaw of (..., 3, 3) rotations, the inverse of `euler_to_rotation`."""
    roll = np.arctan2(rotation[..., 2, 1], rotation[..., 2, 2])
    pitch = np.arcsin(np.clip(-rotation[..., 2, 0], -1.0, 1.0))
    yaw = np.arctan2(rotation[..., 1, 0], rotation[..., 0, 0])
    return np.stack([roll, pitch, yaw], axis=-1)


def pixel_pose_transforms(pose_image: np.ndarray) -> np.ndarray:
    """(H, W, 4, 4) world_from_vehicle per pixel from a (H, W, 6) pose image (roll, pitch, yaw, x, y, z)."""
    pose_image = np.asarray(pose_image, dtype=np.float64)
    out = np.zeros(pose_image.shape[:2] + (4, 4))
    out[..., :3, :3] = euler_to_rotation(pose_image[..., 0], pose_image[..., 1], pose_image[..., 2])
    out[..., :3, 3] = pose_image[..., 3:6]
    out[..., 3, 3] = 1.0
    return out


def column_azimuths(width: int, extrinsic: np.ndarray) -> np.ndarray:
    """(width,) sensor-frame azimuth of each range-image column."""
    yaw = np.arctan2(extrinsic[1, 0], extrinsic[0, 0])
    ratios = (np.arange(width, 0, -1) - 0.5) / width
    return (ratios * 2.0 - 1.0) * np.pi - yaw


def range_image_to_cartesian(range_image: np.ndarray, extrinsic: np.ndarray, inclinations: np.ndarray,
                             pixel_pose: np.ndarray | None = None,
                             frame_pose: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) position of every pixel of `range_image` (H, W, >=1; channel 0 is range) in the vehicle
    frame of the frame: `extrinsic` (4, 4) sensor -> vehicle, `inclinations` (H,) top row first (see
    `beam_inclinations`); with `pixel_pose` (H, W, 6) also `frame_pose` (4, 4) world_from_vehicle."""
    rng = np.asarray(range_image, dtype=np.float64)[..., RANGE]
    extrinsic = np.asarray(extrinsic, dtype=np.float64)
    height, width = rng.shape
    if len(inclinations) != height:
        raise ValueError(f"range image has {height} rows, {len(inclinations)} inclinations given")
    az = column_azimuths(width, extrinsic)[None, :]
    incl = np.asarray(inclinations, dtype=np.float64)[:, None]
    sensor = np.stack([np.cos(az) * np.cos(incl) * rng, np.sin(az) * np.cos(incl) * rng, np.sin(incl) * rng],
                      axis=-1)
    vehicle = sensor @ extrinsic[:3, :3].T + extrinsic[:3, 3]
    if pixel_pose is None:
        return vehicle
    if frame_pose is None:
        raise ValueError("a pixel pose needs the frame pose (the vehicle frame the points end in)")
    transforms = pixel_pose_transforms(pixel_pose)
    world = np.einsum("hwij,hwj->hwi", transforms[..., :3, :3], vehicle) + transforms[..., :3, 3]
    vehicle_from_world = np.linalg.inv(np.asarray(frame_pose, dtype=np.float64))
    return world @ vehicle_from_world[:3, :3].T + vehicle_from_world[:3, 3]


def range_image_to_points(range_image: np.ndarray, extrinsic: np.ndarray, inclinations: np.ndarray,
                          pixel_pose: np.ndarray | None = None, frame_pose: np.ndarray | None = None) -> np.ndarray:
    """(N, 7) float32 points (`POINT_FEATURES`) of the pixels with a return (range > 0), row-major like
    the official conversion."""
    range_image = np.asarray(range_image)
    xyz = range_image_to_cartesian(range_image, extrinsic, inclinations, pixel_pose, frame_pose)
    valid = range_image[..., RANGE] > 0
    return np.concatenate([xyz[valid], range_image[valid][:, :4]], axis=1).astype(np.float32)
