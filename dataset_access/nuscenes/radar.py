"""Multi-sweep radar points of a nuScenes sample, in its LiDAR frame.

The one implementation, behind `NuScenesSamples.load_radar`, which both readers of radar from a dataroot
use: the export (which writes the points into the cache's `radar` group, all the radar student trains
on) and evaluation (which reads a split straight from the dataroot, as the camera student's evaluation
reads its JPEGs). Training never comes here: it needs no devkit.

Per sample and radar: the key-frame scan and the scans before it (`num_sweeps` in all, newest first,
as mmdet3d's / RadarDistill's multi-sweep radar loading), read with nuscenes-devkit's
`RadarPointCloud.from_file` and its default filters (valid clusters, dyn_prop 0-6, unambiguous
Doppler), then moved into the key frame's LiDAR frame through the global frame with each scan's own
ego pose (positions fully, the compensated Doppler velocities by rotation only).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cache_schema.errors import UserInputError
from cache_schema.frames import sensor_to_lidar
from cache_schema.layout import RADAR_NAMES, RADAR_POINT_FEATURES

from dataset_access.nuscenes.tables import pose

DEFAULT_RADAR_SWEEPS = 6
# columns of a devkit radar point (its 18 fields)
_X, _Y, _Z, _RCS, _VX_COMP, _VY_COMP = 0, 1, 2, 5, 8, 9


@dataclass(frozen=True, eq=False)
class RadarSweep:
    """One radar scan: channel, file relative to the dataroot, timestamp (us), radar -> ego and
    ego -> global (at this scan's timestamp) as 4x4 float64."""

    channel: str
    path: str
    timestamp: int
    radar_to_ego: np.ndarray
    ego_pose: np.ndarray


def radar_sweeps(nusc, sample_token: str, num_sweeps: int = DEFAULT_RADAR_SWEEPS) -> tuple[RadarSweep, ...]:
    """The scans of the five radars for a sample: per radar (in `RADAR_NAMES` order) its key-frame
    scan and up to `num_sweeps - 1` scans before it, newest first. A sample without radar data gives ()."""
    sample = nusc.get("sample", sample_token)
    out = []
    for channel in RADAR_NAMES:
        token = sample["data"].get(channel)
        taken = 0
        while token and taken < num_sweeps:
            sd = nusc.get("sample_data", token)
            calib = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
            out.append(RadarSweep(channel, sd["filename"], int(sd["timestamp"]), pose(calib),
                                  pose(nusc.get("ego_pose", sd["ego_pose_token"]))))
            taken += 1
            token = sd["prev"]
    return tuple(out)


def read_radar_file(path: str | os.PathLike) -> np.ndarray:
    """(n, 18) float64 points of a nuScenes radar .pcd after nuscenes-devkit's default filters; a
    missing or malformed file is a one-line UserInputError naming it."""
    from nuscenes.utils.data_classes import RadarPointCloud

    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"{p}: radar point file not found")
    try:
        # explicit filters: RadarPointCloud keeps them as class state that other code may have changed
        cloud = RadarPointCloud.from_file(str(p), invalid_states=[0], dynprop_states=list(range(7)),
                                          ambig_states=[3])
    except Exception as e:  # the devkit asserts and unpacks without messages of its own
        raise UserInputError(f"{p}: not a nuScenes radar .pcd ({type(e).__name__}{': ' + str(e) if str(e) else ''})"
                             ) from None
    if cloud.points.shape[0] != 18:
        raise UserInputError(f"{p}: a nuScenes radar .pcd has 18 fields, this one {cloud.points.shape[0]}")
    return cloud.points.T


def radar_points(dataroot: str | os.PathLike, sweeps: tuple[RadarSweep, ...], lidar_to_global: np.ndarray,
                 timestamp: int) -> np.ndarray:
    """(N, 7) float32 points (`RADAR_POINT_FEATURES`: x, y, z, rcs, vx_comp, vy_comp, time_lag) of
    `sweeps` in the LiDAR frame whose -> global transform is `lidar_to_global`, at key time
    `timestamp` (us)."""
    root = Path(dataroot)
    parts = [np.zeros((0, len(RADAR_POINT_FEATURES)), np.float32)]
    for sweep in sweeps:
        pts = read_radar_file(root / sweep.path)
        if not len(pts):
            continue
        to_lidar = sensor_to_lidar(sweep.radar_to_ego, sweep.ego_pose, lidar_to_global)
        xyz = pts[:, [_X, _Y, _Z]] @ to_lidar[:3, :3].T + to_lidar[:3, 3]
        vel = np.stack([pts[:, _VX_COMP], pts[:, _VY_COMP], np.zeros(len(pts))], axis=1) @ to_lidar[:3, :3].T
        lag = np.full(len(pts), (timestamp - sweep.timestamp) * 1e-6)
        parts.append(np.column_stack([xyz, pts[:, _RCS], vel[:, :2], lag]).astype(np.float32))
    return np.concatenate(parts)
