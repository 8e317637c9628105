"""A key-frame sample as plain values: what the export, teacher fitting and evaluation read of any dataset.

`SampleInfo` (with its `CameraImage`s and LiDAR `SweepInfo`s) is the one sample type of x3kd: the nuScenes
reader (`dataset_access.nuscenes.samples.NuScenesSamples`) and the Waymo one
(`dataset_access.waymo.samples.WaymoSamples`) both hand it out, so the stages never see a dataset's own
records. Its frame is the sample's "LiDAR frame" (nuScenes: LIDAR_TOP's; Waymo: the vehicle frame), its
calibration a `cache_schema.views.Calib`, its boxes in the convention of `cache_schema.boxes`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cache_schema.frames import sensor_to_lidar
from cache_schema.views import Calib

if TYPE_CHECKING:  # radar exists only in nuScenes; the type is for the field's annotation
    from dataset_access.nuscenes.radar import RadarSweep


@dataclass(frozen=True, eq=False)
class CameraImage:
    """One camera image of a sample as the dataset records it; where it is and how the camera sits are
    in the sample's `calib` (same index). The camera frame is x right, y down, z forward."""

    name: str
    sample_data_token: str
    timestamp: int
    width: int
    height: int
    # Rows that are the camera's own, when the image is padded at the bottom to stack with taller cameras
    # (Waymo's side cameras); None: all of them.
    valid_height: int | None = None

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height), PIL's order."""
        return (self.width, self.height)


@dataclass(frozen=True, eq=False)
class SweepInfo:
    """A LiDAR sweep before the key frame: file relative to the dataroot, its timestamp (us) and the
    LiDAR->ego and ego->global transforms at that timestamp."""

    lidar_path: str
    timestamp: int
    lidar_to_ego: np.ndarray
    ego_pose: np.ndarray


@dataclass(frozen=True, eq=False)
class SampleInfo:
    """A key-frame sample: what the teachers and the student need, as plain values.

    `calib` holds the cameras' image paths, intrinsics and poses and the LiDAR's (float64), in the
    order of `cameras`. `gt_boxes` (N, 9) float32 are (x, y, z_centre, l, w, h, yaw, vx, vy) in this
    sample's LiDAR frame (see `cache_schema.boxes`), `gt_labels` (N,) int64 index `NUSCENES_CLASSES`,
    `gt_names` are those class names, `gt_num_lidar_pts` and `gt_num_radar_pts` (N,) int32 and `gt_tokens`
    the sample_annotation tokens. `sweeps` are the previous LiDAR sweeps, newest first; `radar_sweeps` the
    five radars' scans (key frame and the ones before it, see `dataset_access.nuscenes.radar`; empty for a
    dataroot without radar). `timestamp` is in microseconds.
    """

    token: str
    scene_token: str
    scene_name: str
    timestamp: int
    lidar_path: str
    calib: Calib
    cameras: tuple[CameraImage, ...]
    sweeps: tuple[SweepInfo, ...]
    gt_boxes: np.ndarray
    gt_labels: np.ndarray
    gt_names: tuple[str, ...]
    gt_num_lidar_pts: np.ndarray
    gt_num_radar_pts: np.ndarray
    gt_tokens: tuple[str, ...]
    radar_sweeps: tuple[RadarSweep, ...] = ()
    prev_token: str = ""  # the previous key frame of the scene; the sample's own token for a scene's first
    # Datasets that grade boxes (Waymo: LEVEL_1 / LEVEL_2) and keep camera-synced copies of them (the
    # camera-only track's ground truth, same rows as gt_boxes, NaN where a box has none); None elsewhere.
    gt_difficulty: np.ndarray | None = None
    gt_synced_boxes: np.ndarray | None = None

    def _camera_index(self, name: str) -> int:
        for i, cam in enumerate(self.cameras):
            if cam.name == name:
                return i
        raise KeyError(f"sample {self.token} has no camera {name!r}")

    def camera(self, name: str) -> CameraImage:
        return self.cameras[self._camera_index(name)]

    def image_path(self, name: str) -> str:
        """Camera `name`'s image, relative to the dataroot."""
        return self.calib.image_paths[self._camera_index(name)]

    def intrinsics(self, name: str) -> np.ndarray:
        return self.calib.cam_intrinsics[self._camera_index(name)]

    @property
    def lidar_to_ego(self) -> np.ndarray:
        return self.calib.lidar_to_ego

    @property
    def ego_pose(self) -> np.ndarray:
        """ego -> global at the LiDAR timestamp."""
        return self.calib.ego_pose

    @property
    def lidar_to_global(self) -> np.ndarray:
        return self.calib.lidar_to_global()

    def lidar_to_camera(self, name: str) -> np.ndarray:
        """4x4 transform from this sample's LiDAR frame to camera `name`'s frame, through the global
        frame so that the ego motion between the two timestamps is accounted for."""
        return self.calib.lidar_to_camera(self._camera_index(name))

    def camera_to_lidar(self, name: str) -> np.ndarray:
        i = self._camera_index(name)
        return sensor_to_lidar(self.calib.cam_to_ego[i], self.calib.cam_ego_pose[i], self.lidar_to_global)

    def lidar_to_image(self, name: str) -> np.ndarray:
        """4x4 projection LiDAR -> (u*d, v*d, d, 1) pixels of camera `name`; divide by the third row."""
        k = np.eye(4)
        k[:3, :3] = self.intrinsics(name)
        return k @ self.lidar_to_camera(name)
