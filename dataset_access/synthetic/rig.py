"""The synthetic sensor rig: one LIDAR_TOP, nuScenes' six cameras and five radars, calibrated like the real car.

Values are rounded from nuScenes v1.0 calibration records (the Renault Zoe rig): cameras sit at
about 1.5 m, the LiDAR at 1.84 m on the roof with its x axis pointing to the car's right (a -90 deg yaw
in the ego frame). Intrinsics are given for nuScenes' 1600x900 images and scaled to the image size
that is asked for, so a synthetic camera has the field of view of the real one. The radars are
Continental ARS 408-21s at bumper height: one forward, two at the front corners looking sideways, two
at the rear corners looking backwards.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cache_schema.frames import make_transform, rotation_z
from cache_schema.layout import RADAR_NAMES
from dataset_access.nuscenes.samples import CAMERA_NAMES

NUSCENES_IMAGE_SIZE = (1600, 900)  # (width, height) of real nuScenes camera images


@dataclass(frozen=True)
class CameraSpec:
    """One camera of the rig at nuScenes resolution: where it looks (yaw in the ego frame, radians, 0 =
    forward, positive = to the left), where it sits (ego frame, metres), its focal length and principal
    point in 1600x900 pixels and its exposure delay after the LiDAR key frame (the LiDAR sweeps past it)."""

    name: str
    yaw: float
    translation: tuple[float, float, float]
    focal: float
    principal_point: tuple[float, float]
    delay_s: float


CAMERAS: tuple[CameraSpec, ...] = (
    CameraSpec("CAM_FRONT", 0.0, (1.70, 0.02, 1.51), 1266.4, (816.3, 491.5), 0.012),
    CameraSpec("CAM_FRONT_RIGHT", np.deg2rad(-55.0), (1.55, -0.49, 1.50), 1260.8, (807.9, 495.3), 0.020),
    CameraSpec("CAM_FRONT_LEFT", np.deg2rad(55.0), (1.52, 0.49, 1.51), 1272.6, (826.6, 479.8), 0.004),
    CameraSpec("CAM_BACK", np.pi, (0.03, 0.00, 1.58), 809.2, (829.2, 481.8), 0.037),
    CameraSpec("CAM_BACK_LEFT", np.deg2rad(110.0), (1.04, 0.48, 1.56), 1256.7, (817.8, 451.9), 0.046),
    CameraSpec("CAM_BACK_RIGHT", np.deg2rad(-110.0), (1.03, -0.48, 1.59), 1259.5, (807.3, 501.2), 0.029),
)
# The rig lists the cameras in the reader's order.
assert tuple(c.name for c in CAMERAS) == CAMERA_NAMES
LIDAR_TRANSLATION = (0.94, 0.0, 1.84)
LIDAR_YAW = -np.pi / 2
# Velodyne HDL-32E, as on the nuScenes car: 32 beams from -30.67 to +10.67 deg elevation.
LIDAR_ELEVATION_DEG = (-30.67, 10.67)
LIDAR_MAX_RANGE = 70.0


def camera_intrinsics(spec: CameraSpec, image_size: tuple[int, int]) -> np.ndarray:
    """3x3 intrinsics of `spec` for an image of `image_size` (width, height), scaled from 1600x900."""
    sx = image_size[0] / NUSCENES_IMAGE_SIZE[0]
    sy = image_size[1] / NUSCENES_IMAGE_SIZE[1]
    return np.array([[spec.focal * sx, 0.0, spec.principal_point[0] * sx],
                     [0.0, spec.focal * sy, spec.principal_point[1] * sy],
                     [0.0, 0.0, 1.0]])


def camera_to_ego(spec: CameraSpec, jitter: np.ndarray | None = None) -> np.ndarray:
    """4x4 camera->ego transform; the camera frame is x right, y down, z along the optical axis.

    `jitter` (6,: dx, dy, dz in metres, then yaw, pitch, roll in radians) perturbs the mounting, as the
    per-log calibrations of the real car differ slightly.
    """
    jitter = np.zeros(6) if jitter is None else jitter
    yaw = spec.yaw + jitter[3]
    # Columns = camera axes in the ego frame: right, down, forward (optical axis).
    forward = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    right = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
    down = np.array([0.0, 0.0, -1.0])
    r = np.stack([right, down, forward], axis=1)
    # Small pitch (about the camera's x axis) and roll (about its optical axis).
    cp, sp, cr, sr = np.cos(jitter[4]), np.sin(jitter[4]), np.cos(jitter[5]), np.sin(jitter[5])
    pitch = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
    roll = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
    return make_transform(r @ pitch @ roll, np.asarray(spec.translation) + jitter[:3])


def lidar_to_ego(jitter: np.ndarray | None = None) -> np.ndarray:
    """4x4 LiDAR->ego transform (x to the car's right, y forward, z up), optionally jittered as above."""
    jitter = np.zeros(6) if jitter is None else jitter
    return make_transform(rotation_z(LIDAR_YAW + jitter[3]), np.asarray(LIDAR_TRANSLATION) + jitter[:3])


def lidar_elevations(beams: int) -> np.ndarray:
    """Elevation angle (radians) of each of `beams` beams, spread like the HDL-32E's."""
    lo, hi = LIDAR_ELEVATION_DEG
    return np.deg2rad(np.linspace(lo, hi, beams))


@dataclass(frozen=True)
class RadarSpec:
    """One radar: yaw in the ego frame (radians, 0 = forward, positive = to the left) and position
    (ego frame, metres); its frame is x along the boresight, y left, z up, like nuScenes' radars."""

    name: str
    yaw: float
    translation: tuple[float, float, float]


RADARS: tuple[RadarSpec, ...] = (
    RadarSpec("RADAR_FRONT", 0.0, (3.41, 0.00, 0.50)),
    RadarSpec("RADAR_FRONT_LEFT", np.deg2rad(88.0), (2.42, 0.80, 0.78)),
    RadarSpec("RADAR_FRONT_RIGHT", np.deg2rad(-90.0), (2.42, -0.80, 0.77)),
    RadarSpec("RADAR_BACK_LEFT", np.deg2rad(178.0), (-0.56, 0.63, 0.53)),
    RadarSpec("RADAR_BACK_RIGHT", np.deg2rad(-178.0), (-0.56, -0.62, 0.53)),
)
assert tuple(r.name for r in RADARS) == RADAR_NAMES
# ARS 408 near-range scan: +-60 deg out to 70 m (its +-9 deg far scan reaches further than any
# synthetic object stands). nuScenes' radars run at about 13 Hz.
RADAR_FOV = np.deg2rad(60.0)
RADAR_MAX_RANGE = 70.0
RADAR_PERIOD_US = 77_000


def radar_to_ego(spec: RadarSpec, jitter: np.ndarray | None = None) -> np.ndarray:
    """4x4 radar->ego transform, optionally jittered like `camera_to_ego` (dx, dy, dz, yaw, ...)."""
    jitter = np.zeros(6) if jitter is None else jitter
    return make_transform(rotation_z(spec.yaw + jitter[3]), np.asarray(spec.translation) + jitter[:3])
