"""Typed views of one cache sample: what crosses from the store into the stages.

One frozen dataclass per group of the layout, whose fields are that group's arrays as `layout.ARRAYS`
declares them (checked when this module is imported, so a renamed or added array cannot drift), and
`CacheSample`, which holds the groups one reader read (the others are None). `CacheReader[i]` returns
a `CacheSample`; `CacheWriter.write_sample` takes one. Values are what the reader decodes: float32 maps
and floats, integers as stored, str / lists of str for text. Arrays a store's schema version predates
(see `ArraySpec.since`) are None.

`Calib` is the project's one calibration type: where a sample's camera images are and how its sensors
sit, as the export reads it from a dataset and as the student reads it back from the cache.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

import numpy as np

from .frames import invert_transform, sensor_to_lidar
from .layout import ARRAYS


@dataclass(frozen=True, eq=False)
class SampleMeta:
    """Which sample this is: its token, scene, timestamp (microseconds) and the previous key frame of
    its scene (the sample itself for a scene's first; None in stores older than schema 1.3)."""

    GROUP: ClassVar[str] = "meta"
    token: str
    scene_token: str
    timestamp: int
    prev_token: str | None = None


@dataclass(frozen=True, eq=False)
class Calib:
    """Where the N camera images of one sample are and how the sensors sit.

    image_paths: N paths relative to the dataroot.   cam_intrinsics: [N, 3, 3] of the original images.
    cam_to_ego: [N, 4, 4] at each camera's timestamp.  cam_ego_pose: [N, 4, 4] ego -> global at each
    camera's timestamp.  lidar_to_ego, ego_pose: [4, 4] at the LiDAR timestamp (ego_pose: ego -> global).
    Cameras fire at other times than the LiDAR, so camera <-> LiDAR goes through the global frame."""

    GROUP: ClassVar[str] = "calib"
    image_paths: list[str]
    cam_intrinsics: np.ndarray
    cam_to_ego: np.ndarray
    cam_ego_pose: np.ndarray
    lidar_to_ego: np.ndarray
    ego_pose: np.ndarray

    @property
    def num_cameras(self) -> int:
        return len(self.image_paths)

    def lidar_to_global(self) -> np.ndarray:
        return self.ego_pose.astype(np.float64) @ self.lidar_to_ego.astype(np.float64)

    def camera_to_lidar(self) -> np.ndarray:
        """[N, 4, 4] camera -> LiDAR frame of the sample:
        lidar_to_camera = inv(cam_to_ego) @ inv(cam_ego_pose) @ ego_pose @ lidar_to_ego."""
        return sensor_to_lidar(self.cam_to_ego, self.cam_ego_pose, self.lidar_to_global())

    def lidar_to_camera(self, camera: int) -> np.ndarray:
        """4x4 LiDAR -> camera `camera` (an index), the exact rigid inverse of its `camera_to_lidar`."""
        return invert_transform(sensor_to_lidar(self.cam_to_ego[camera], self.cam_ego_pose[camera],
                                                self.lidar_to_global()))

    def seen_from(self, key: "Calib") -> "Calib":
        """These cameras (another key frame's: BEVDepth's previous frame) with `key`'s LiDAR frame as
        the target of `camera_to_lidar`, so that their frustum lands where the world is in `key`'s frame
        (ego motion between the frames compensated through the global frame)."""
        return replace(self, lidar_to_ego=key.lidar_to_ego, ego_pose=key.ego_pose)


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """GT boxes [max_gt_boxes, 9] (`cache_schema.boxes` convention, LiDAR frame) and labels (class
    indices, -1 = padding), zero-padded after `count` rows."""

    GROUP: ClassVar[str] = "gt"
    boxes: np.ndarray
    labels: np.ndarray
    count: int

    def present(self) -> tuple[np.ndarray, np.ndarray]:
        """The `count` boxes and labels without the padding."""
        n = int(self.count)
        return np.asarray(self.boxes)[:n], np.asarray(self.labels)[:n]


@dataclass(frozen=True, eq=False)
class DepthTargets:
    """[N, H / depth_stride, W / depth_stride] minimum LiDAR depth (m) per cell of each camera image,
    0 where no point falls."""

    GROUP: ClassVar[str] = "depth"
    depth: np.ndarray


@dataclass(frozen=True, eq=False)
class LidarTeacherMaps:
    """The LiDAR teacher on the BEV grid: features [C_T, H, W], class heatmaps [K, H, W] (sigmoid),
    regression maps [10, H, W] (`layout.REGRESSION_CHANNELS`), and per channel the sums of the features
    and of their squares over the grid (X-FD's standardisation; None in stores older than 1.1)."""

    GROUP: ClassVar[str] = "lidar_teacher"
    bev_features: np.ndarray
    heatmaps: np.ndarray
    regression: np.ndarray
    bev_features_sum: np.ndarray | None = None
    bev_features_sqsum: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class ImageTeacherDetections:
    """The image teacher's detections per camera: boxes [N, M, 4] xyxy in original image pixels, labels
    [N, M] (-1 = padding), scores [N, M] and 28x28 mask probabilities [N, M, 28, 28] (x 255 as uint8
    when written; the reader returns them as stored)."""

    GROUP: ClassVar[str] = "image_teacher"
    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    masks: np.ndarray


@dataclass(frozen=True, eq=False)
class RadarPoints:
    """The five radars' multi-sweep points [max_radar_points, 7] (`layout.RADAR_POINT_FEATURES`) in the
    LiDAR frame, zero-padded after `count` rows."""

    GROUP: ClassVar[str] = "radar"
    points: np.ndarray
    count: int

    def present(self) -> np.ndarray:
        return np.asarray(self.points)[:int(self.count)]


GROUP_VIEWS: dict[str, type] = {v.GROUP: v for v in (SampleMeta, Calib, GroundTruth, DepthTargets, LidarTeacherMaps,
                                                     ImageTeacherDetections, RadarPoints)}


@dataclass(frozen=True, eq=False)
class CacheSample:
    """One sample of a store as typed views, one per group (None for groups not read or not stored).
    `index` is the sample's position in the store (set by the reader; the writer is told it apart)."""

    meta: SampleMeta | None = None
    calib: Calib | None = None
    gt: GroundTruth | None = None
    depth: DepthTargets | None = None
    lidar_teacher: LidarTeacherMaps | None = None
    image_teacher: ImageTeacherDetections | None = None
    radar: RadarPoints | None = None
    index: int | None = None

    @property
    def token(self) -> str:
        return self.meta.token

    def to_arrays(self) -> dict[str, Any]:
        """The values by layout key ('group/name'), the groups that are present, for the writer."""
        out: dict[str, Any] = {}
        for group in GROUP_VIEWS:
            view = getattr(self, group)
            if view is None:
                continue
            for f in fields(view):
                value = getattr(view, f.name)
                if value is not None:
                    out[f"{group}/{f.name}"] = value
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any], index: int | None = None) -> "CacheSample":
        """Views of decoded values by layout key; a group none of whose arrays is given stays None. A key
        the layout does not declare is a ValueError naming it."""
        known = {f"{group}/{f.name}" for group, view in GROUP_VIEWS.items() for f in fields(view)}
        unknown = sorted(set(arrays) - known)
        if unknown:
            raise ValueError(f"unknown keys {unknown} (the layout declares {sorted(known)})")
        views: dict[str, Any] = {}
        for group, view in GROUP_VIEWS.items():
            values = {f.name: arrays[f"{group}/{f.name}"] for f in fields(view) if f"{group}/{f.name}" in arrays}
            if values:
                views[group] = view(**values)
        return cls(**views, index=index)


def _check_views_against_layout() -> None:
    """Every view's fields are exactly its group's arrays: the layout stays the one declaration."""
    for group, view in GROUP_VIEWS.items():
        declared = {a.name for a in ARRAYS if a.group == group}
        have = {f.name for f in fields(view)}
        if declared != have:
            raise RuntimeError(f"cache_schema.views.{view.__name__} has fields {sorted(have)}, the layout's "
                               f"{group} group declares {sorted(declared)}")


_check_views_against_layout()
