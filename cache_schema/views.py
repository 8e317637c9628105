"""Typed views of a cache sample's groups."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .frames import sensor_to_lidar


@dataclass
class CameraSetup:
    """Where the images of one sample are and how the cameras sit (the cache's `calib` group).

    image_paths: N paths relative to the dataroot.   intrinsics: [N, 3, 3] of the original images.
    cam_to_ego: [N, 4, 4] at each camera's timestamp.  cam_ego_pose: [N, 4, 4] ego -> global at each
    camera's timestamp.  lidar_to_ego, ego_pose: [4, 4] at the LiDAR timestamp (ego_pose: ego -> global)."""

    token: str
    image_paths: list[str]
    intrinsics: np.ndarray
    cam_to_ego: np.ndarray
    cam_ego_pose: np.ndarray
    lidar_to_ego: np.ndarray
    ego_pose: np.ndarray

    @classmethod
    def from_cache_sample(cls, sample: dict) -> "CameraSetup":
        return cls(sample["meta/token"], list(sample["calib/image_paths"]), np.asarray(sample["calib/cam_intrinsics"]),
                   np.asarray(sample["calib/cam_to_ego"]), np.asarray(sample["calib/cam_ego_pose"]),
                   np.asarray(sample["calib/lidar_to_ego"]), np.asarray(sample["calib/ego_pose"]))

    def camera_to_lidar(self) -> np.ndarray:
        """[N, 4, 4] camera -> LiDAR frame of the sample, through the global frame, so that each
        camera's own ego pose (cameras fire at other times than the LiDAR) is respected:
        lidar_to_camera = inv(cam_to_ego) @ inv(cam_ego_pose) @ ego_pose @ lidar_to_ego."""
        return sensor_to_lidar(self.cam_to_ego, self.cam_ego_pose, self.lidar_to_global())

    def lidar_to_global(self) -> np.ndarray:
        return self.ego_pose.astype(np.float64) @ self.lidar_to_ego.astype(np.float64)

    def seen_from(self, key: "CameraSetup") -> "CameraSetup":
        """These cameras (another key frame's: BEVDepth's previous frame) with `key`'s LiDAR frame as
        the target of `camera_to_lidar`, so that their frustum lands where the world is in `key`'s frame
        (ego motion between the frames compensated through the global frame)."""
        return replace(self, lidar_to_ego=key.lidar_to_ego, ego_pose=key.ego_pose)
