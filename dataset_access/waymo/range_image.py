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


def column_azimuths(width: int, extrinsic: np.ndarray) -> np.ndarray:
    """(width,) sensor-frame azimuth of each range-image column."""
    yaw = np.arctan2(extrinsic[1, 0], extrinsic[0, 0])
    ratios = (np.arange(width, 0, -1) - 0.5) / width
    return (ratios * 2.0 - 1.0) * np.pi - yaw


def _to_vehicle(rng: np.ndarray, az: np.ndarray, incl: np.ndarray, extrinsic: np.ndarray,
                pose: np.ndarray | None, frame_pose: np.ndarray | None) -> np.ndarray:
    """(..., 3) vehicle-frame positions of returns at range `rng`, sensor azimuth `az` and inclination
    `incl` (broadcast together); `pose` (..., 6) the per-pixel roll, pitch, yaw, x, y, z, if any."""
    cos_incl = np.cos(incl)
    sensor = np.stack(np.broadcast_arrays(np.cos(az) * cos_incl * rng, np.sin(az) * cos_incl * rng,
                                          np.sin(incl) * rng), axis=-1)
    vehicle = sensor @ extrinsic[:3, :3].T + extrinsic[:3, 3]
    if pose is None:
        return vehicle
    if frame_pose is None:
        raise ValueError("a pixel pose needs the frame pose (the vehicle frame the points end in)")
    pose = np.asarray(pose, dtype=np.float64)
    rotation = euler_to_rotation(pose[..., 0], pose[..., 1], pose[..., 2])
    world = np.einsum("...ij,...j->...i", rotation, vehicle) + pose[..., 3:6]
    vehicle_from_world = np.linalg.inv(np.asarray(frame_pose, dtype=np.float64))
    return world @ vehicle_from_world[:3, :3].T + vehicle_from_world[:3, 3]


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
    return _to_vehicle(rng, az, incl, extrinsic, pixel_pose, frame_pose)


def range_image_to_points(range_image: np.ndarray, extrinsic: np.ndarray, inclinations: np.ndarray,
                          pixel_pose: np.ndarray | None = None, frame_pose: np.ndarray | None = None) -> np.ndarray:
    """(N, 7) float32 points (`POINT_FEATURES`) of the pixels with a return (range > 0), row-major like
    the official conversion; only those pixels are converted (a TOP image is mostly empty sky)."""
    range_image = np.asarray(range_image)
    height, width = range_image.shape[:2]
    if len(inclinations) != height:
        raise ValueError(f"range image has {height} rows, {len(inclinations)} inclinations given")
    extrinsic = np.asarray(extrinsic, dtype=np.float64)
    rows, cols = np.nonzero(range_image[..., RANGE] > 0)
    values = range_image[rows, cols]
    xyz = _to_vehicle(values[:, RANGE].astype(np.float64), column_azimuths(width, extrinsic)[cols],
                      np.asarray(inclinations, dtype=np.float64)[rows], extrinsic,
                      None if pixel_pose is None else np.asarray(pixel_pose)[rows, cols], frame_pose)
    return np.concatenate([xyz, values[:, :4]], axis=1).astype(np.float32)
