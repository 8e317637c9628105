"""Frames of a Waymo Open Dataset v2 split, read from its Parquet files with pyarrow (no TensorFlow).

`WaymoV2(root, split)` lists the split's segments and reads one frame at a time by its key: every
component file is read with a filter on `key.frame_timestamp_micros`, which pyarrow answers from the
row groups whose statistics can hold that timestamp (Waymo writes a segment's rows in time order), so a
frame costs its own bytes, not the segment's. The small per-segment calibration files are read whole,
once per segment. A `WaymoFrame` is plain numpy in Waymo's frames: the vehicle frame (x forward, y left,
z up), camera frames x along the optical axis, y left, z up; `camera_to_cv` turns a Waymo camera
extrinsic into the x-right, y-down, z-forward camera frame the rest of x3kd uses.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cache_schema.errors import UserInputError
from dataset_access.waymo.range_image import beam_inclinations, range_image_to_points
from dataset_access.waymo.schema import (BOX_TYPES, CAMERA_NAMES, KEY_CAMERA, KEY_LASER, KEY_OBJECT,
                                         KEY_TIMESTAMP, LASER_NAMES, REQUIRED_COMPONENTS, SCHEMAS, SPLITS, TOP_LASER,
                                         column)

# Waymo camera frame (x forward along the optical axis, y left, z up) from the x-right, y-down,
# z-forward one: cv x = -waymo y, cv y = -waymo z, cv z = waymo x.
WAYMO_CAMERA_FROM_CV = np.array([[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0],
                                 [0.0, 0.0, 0.0, 1.0]])


def camera_to_cv(extrinsic: np.ndarray) -> np.ndarray:
    """A Waymo camera extrinsic (camera -> vehicle) as the transform from the x-right, y-down, z-forward
    camera frame to the vehicle frame."""
    return np.asarray(extrinsic, dtype=np.float64) @ WAYMO_CAMERA_FROM_CV


@dataclass(frozen=True, eq=False)
class WaymoCamera:
    """One camera image of a frame: JPEG bytes, its calibration (pinhole `intrinsics` 3x3, `distortion`
    k1 k2 p1 p2 k3, `extrinsic` camera -> vehicle in Waymo's camera frame) and the vehicle pose at its
    exposure (`pose`, world_from_vehicle, at `pose_timestamp` seconds)."""

    name: str
    camera_id: int
    jpeg: bytes
    width: int
    height: int
    intrinsics: np.ndarray
    distortion: np.ndarray
    extrinsic: np.ndarray
    pose: np.ndarray
    pose_timestamp: float


@dataclass(frozen=True, eq=False)
class WaymoFrame:
    """One frame: `vehicle_pose` world_from_vehicle (4x4), `cameras` in camera-id order, `points` (N, 7)
    (`range_image.POINT_FEATURES`, vehicle frame) of every laser and both returns with `point_laser` and
    `point_return` (N,) int8, and the LiDAR boxes: `boxes` (M, 7) x, y, z (centre), length, width,
    height, heading in the vehicle frame, `box_types` (M,) int8 (`schema.BOX_TYPES`), `box_speed` (M, 3),
    `box_num_points` (M,), `box_difficulty` (M,) int8, `box_ids`; `synced_boxes` (M, 7) the
    camera-synced boxes (NaN where the frame has none for a box) and `synced_camera` (M,) int8."""

    segment: str
    timestamp: int
    vehicle_pose: np.ndarray
    cameras: tuple[WaymoCamera, ...]
    points: np.ndarray
    point_laser: np.ndarray
    point_return: np.ndarray
    boxes: np.ndarray
    box_types: np.ndarray
    box_speed: np.ndarray
    box_num_points: np.ndarray
    box_difficulty: np.ndarray
    box_ids: tuple[str, ...]
    synced_boxes: np.ndarray
    synced_camera: np.ndarray

    @property
    def box_names(self) -> tuple[str, ...]:
        return tuple(BOX_TYPES.get(int(t), "unknown") for t in self.box_types)


def _matrix(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(4, 4)


def _box_columns(table: pa.Table, component: str, prefix: str) -> np.ndarray:
    names = [f"{prefix}.center.x", f"{prefix}.center.y", f"{prefix}.center.z", f"{prefix}.size.x",
             f"{prefix}.size.y", f"{prefix}.size.z", f"{prefix}.heading"]
    if table.num_rows == 0:
        return np.zeros((0, 7))
    return np.stack([table.column(column(component, n)).to_numpy(zero_copy_only=False) for n in names],
                    axis=1).astype(np.float64)


class WaymoV2:
    """A split of a v2 dataset: `WaymoV2(root, "validation").segments`, `.timestamps(segment)`,
    `.frame(segment, timestamp)`; `.frames()` walks every frame of the split in order."""

    def __init__(self, root: str | os.PathLike, split: str) -> None:
        self.root = Path(root)
        self.split = split
        if split not in SPLITS:
            raise UserInputError(f"--split {split!r}: a Waymo v2 split is one of {', '.join(SPLITS)}")
        folder = self.root / split
        if not folder.is_dir():
            raise UserInputError(f"{folder}: no such split folder (expected {{root}}/{split}/{{component}}/"
                                 "{segment}.parquet)")
        poses = folder / "vehicle_pose"
        self.segments: tuple[str, ...] = tuple(sorted(p.stem for p in poses.glob("*.parquet"))) \
            if poses.is_dir() else ()
        if not self.segments:
            raise UserInputError(f"{poses}: no segments (no vehicle_pose/*.parquet files)")
        self._read_calibration = lru_cache(maxsize=4)(self._calibration)

    def path(self, component: str, segment: str) -> Path:
        """The file of `component` for `segment`; a missing one is a `UserInputError` naming it."""
        path = self.root / self.split / component / f"{segment}.parquet"
        if not path.is_file():
            raise UserInputError(f"{path}: missing (segment {segment} has no {component} component)")
        return path

    def read(self, component: str, segment: str, timestamp: int | None = None,
             columns: Sequence[str] | None = None) -> pa.Table:
        """Rows of `component` for `segment` (only those of frame `timestamp` when given)."""
        path = self.path(component, segment)
        filters = [(KEY_TIMESTAMP, "==", int(timestamp))] if timestamp is not None else None
        try:
            return pq.read_table(path, columns=list(columns) if columns else None, filters=filters)
        except (pa.ArrowInvalid, OSError, KeyError) as e:
            raise UserInputError(f"{path}: not a readable {component} Parquet file ({e})") from None

    def timestamps(self, segment: str) -> np.ndarray:
        """(F,) int64 frame timestamps (us) of `segment`, in time order."""
        table = self.read("vehicle_pose", segment, columns=[KEY_TIMESTAMP])
        return np.sort(table.column(KEY_TIMESTAMP).to_numpy())

    def frames(self) -> list[tuple[str, int]]:
        """(segment, timestamp) of every frame of the split, segments in name order, frames in time."""
        return [(s, int(t)) for s in self.segments for t in self.timestamps(s)]

    def check_segment(self, segment: str) -> None:
        """Every component x3kd needs exists for `segment` (each missing one is a one-line error)."""
        for component in REQUIRED_COMPONENTS:
            self.path(component, segment)

    def _calibration(self, segment: str) -> tuple[dict, dict]:
        cams = self.read("camera_calibration", segment)
        path = self.path("camera_calibration", segment)
        if cams.num_rows == 0:
            raise UserInputError(f"{path}: segment {segment} has no camera calibration")
        cameras = {}
        for row in cams.to_pylist():
            c = lambda name: row[column("camera_calibration", name)]  # noqa: E731
            k = np.array([[c("intrinsic.f_u"), 0.0, c("intrinsic.c_u")], [0.0, c("intrinsic.f_v"), c("intrinsic.c_v")],
                          [0.0, 0.0, 1.0]])
            distortion = np.array([c(f"intrinsic.{p}") for p in ("k1", "k2", "p1", "p2", "k3")], dtype=np.float64)
            cameras[int(row[KEY_CAMERA])] = (k, distortion, _matrix(c("extrinsic.transform")), int(c("width")),
                                             int(c("height")))
        lasers = {}
        for row in self.read("lidar_calibration", segment).to_pylist():
            c = lambda name: row[column("lidar_calibration", name)]  # noqa: E731
            lasers[int(row[KEY_LASER])] = (_matrix(c("extrinsic.transform")), c("beam_inclination.values"),
                                           (c("beam_inclination.min"), c("beam_inclination.max")))
        return cameras, lasers

    def calibration(self, segment: str) -> tuple[dict, dict]:
        """({camera id: (intrinsics 3x3, distortion (5,), extrinsic 4x4, width, height)},
        {laser id: (extrinsic 4x4, inclination values or None, (min, max))}) of `segment`."""
        return self._read_calibration(segment)

    def vehicle_pose(self, segment: str, timestamp: int) -> np.ndarray:
        """world_from_vehicle (4x4) of frame `timestamp`."""
        pose_table = self.read("vehicle_pose", segment, timestamp)
        if pose_table.num_rows != 1:
            raise UserInputError(f"{self.path('vehicle_pose', segment)}: {pose_table.num_rows} vehicle poses for "
                                 f"frame {timestamp} (expected 1)")
        return _matrix(pose_table.column(column("vehicle_pose", "world_from_vehicle.transform"))[0].as_py())

    def points(self, segment: str, timestamp: int) -> np.ndarray:
        """(N, 7) points of frame `timestamp` (every laser, both returns; `range_image.POINT_FEATURES`)."""
        _, lasers_calib = self.calibration(segment)
        return self._points(segment, timestamp, lasers_calib, self.vehicle_pose(segment, timestamp))["points"]

    def frame(self, segment: str, timestamp: int, *, points: bool = True, images: bool = True) -> WaymoFrame:
        """Frame `timestamp` of `segment`, every component read by its key. `points=False` skips the range
        images (empty `points`), `images=False` the JPEG bytes (empty `jpeg`): what a sample's index needs."""
        cameras_calib, lasers_calib = self.calibration(segment)
        vehicle_pose = self.vehicle_pose(segment, timestamp)
        lidar = self._points(segment, timestamp, lasers_calib, vehicle_pose) if points else {
            "points": np.zeros((0, 7), np.float32), "point_laser": np.zeros(0, np.int8),
            "point_return": np.zeros(0, np.int8)}
        return WaymoFrame(segment=segment, timestamp=int(timestamp), vehicle_pose=vehicle_pose,
                          cameras=self._cameras(segment, timestamp, cameras_calib, images), **lidar,
                          **self._boxes(segment, timestamp))

    def _cameras(self, segment: str, timestamp: int, calib: dict, images: bool = True) -> tuple[WaymoCamera, ...]:
        columns = None if images else [n for n in SCHEMAS["camera_image"].names if n != column("camera_image", "image")]
        table = self.read("camera_image", segment, timestamp, columns)
        out = []
        for row in sorted(table.to_pylist(), key=lambda r: r[KEY_CAMERA]):
            cam_id = int(row[KEY_CAMERA])
            if cam_id not in calib:
                raise UserInputError(f"{self.path('camera_calibration', segment)}: segment {segment} has no camera "
                                     f"calibration for camera {CAMERA_NAMES.get(cam_id, cam_id)}")
            k, distortion, extrinsic, width, height = calib[cam_id]
            c = lambda name: row[column("camera_image", name)]  # noqa: E731
            out.append(WaymoCamera(name=CAMERA_NAMES.get(cam_id, str(cam_id)), camera_id=cam_id,
                                   jpeg=c("image") if images else b"",
                                   width=width, height=height, intrinsics=k, distortion=distortion, extrinsic=extrinsic,
                                   pose=_matrix(c("pose.transform")), pose_timestamp=float(c("pose_timestamp"))))
        return tuple(out)

    def _points(self, segment: str, timestamp: int, calib: dict, vehicle_pose: np.ndarray) -> dict:
        lidar = self.read("lidar", segment, timestamp)
        path = self.path("lidar", segment)
        poses = self.read("lidar_pose", segment, timestamp)
        pose_rows = {int(v): i for i, v in enumerate(poses.column(KEY_LASER).to_numpy())}
        chunks, lasers, returns = [], [], []
        laser_ids = lidar.column(KEY_LASER).to_numpy()
        for row in np.argsort(laser_ids, kind="stable"):
            laser = int(laser_ids[row])
            name = LASER_NAMES.get(laser, str(laser))
            if laser not in calib:
                raise UserInputError(f"{self.path('lidar_calibration', segment)}: segment {segment} has no "
                                     f"calibration for laser {name}")
            extrinsic, values, min_max = calib[laser]
            pixel_pose = None
            if laser == TOP_LASER and laser in pose_rows:
                pixel_pose = _range_image(poses, pose_rows[laser], "lidar_pose", "range_image_return1",
                                          self.path("lidar_pose", segment), timestamp, name)
            for ret in (1, 2):
                image = _range_image(lidar, row, "lidar", f"range_image_return{ret}", path, timestamp, name)
                if image is None:
                    continue
                try:
                    incl = beam_inclinations(image.shape[0], values, min_max)
                except ValueError as e:
                    raise UserInputError(f"{path}: frame {timestamp} laser {name} return {ret}: range image "
                                         f"{list(image.shape)} disagrees with its calibration ({e})") from None
                if pixel_pose is not None and pixel_pose.shape[:2] != image.shape[:2]:
                    raise UserInputError(f"{path}: frame {timestamp} laser {name}: range image {list(image.shape)} "
                                         f"and its pose image {list(pixel_pose.shape)} differ in size")
                pts = range_image_to_points(image, extrinsic, incl, pixel_pose,
                                            vehicle_pose if pixel_pose is not None else None)
                chunks.append(pts)
                lasers.append(np.full(len(pts), laser, dtype=np.int8))
                returns.append(np.full(len(pts), ret, dtype=np.int8))
        if not chunks:
            return {"points": np.zeros((0, 7), np.float32), "point_laser": np.zeros(0, np.int8),
                    "point_return": np.zeros(0, np.int8)}
        return {"points": np.concatenate(chunks), "point_laser": np.concatenate(lasers),
                "point_return": np.concatenate(returns)}

    def _boxes(self, segment: str, timestamp: int) -> dict:
        table = self.read("lidar_box", segment, timestamp)
        ids = tuple(table.column(KEY_OBJECT).to_pylist())
        get = lambda name, dtype: (table.column(column("lidar_box", name)).fill_null(0)  # noqa: E731
                                   .to_numpy(zero_copy_only=False).astype(dtype))
        speed = np.stack([get(f"speed.{a}", np.float64) for a in "xyz"], axis=1) if ids else np.zeros((0, 3))
        synced = np.full((len(ids), 7), np.nan)
        synced_camera = np.zeros(len(ids), dtype=np.int8)
        synced_path = self.root / self.split / "lidar_camera_synced_box" / f"{segment}.parquet"
        if synced_path.is_file() and ids:
            st = self.read("lidar_camera_synced_box", segment, timestamp)
            where = {oid: i for i, oid in enumerate(ids)}
            rows = _box_columns(st, "lidar_camera_synced_box", "camera_synced_box")
            cams = st.column(column("lidar_camera_synced_box", "most_visible_camera_name")).to_numpy()
            for j, oid in enumerate(st.column(KEY_OBJECT).to_pylist()):
                if oid in where:
                    synced[where[oid]] = rows[j]
                    synced_camera[where[oid]] = cams[j]
        return {"boxes": _box_columns(table, "lidar_box", "box"), "box_types": get("type", np.int8),
                "box_speed": speed, "box_num_points": get("num_lidar_points_in_box", np.int64),
                "box_difficulty": get("difficulty_level.detection", np.int8), "box_ids": ids,
                "synced_boxes": synced, "synced_camera": synced_camera}


def _range_image(table: pa.Table, row: int, component: str, prefix: str, path: Path, timestamp: int,
                 laser: str) -> np.ndarray | None:
    """Row `row`'s range image `prefix` as (H, W, C) float32, None where the row has none; read through
    arrow buffers (a Python list of a 64 x 2650 x 4 image would cost more than the conversion)."""
    values = table.column(column(component, f"{prefix}.values"))[int(row)]
    shape = table.column(column(component, f"{prefix}.shape"))[int(row)]
    if not values.is_valid or not shape.is_valid or len(values) == 0:
        return None
    values = values.values.to_numpy(zero_copy_only=False)
    shape = shape.as_py()
    if int(np.prod(shape)) != len(values):
        raise UserInputError(f"{path}: frame {timestamp} laser {laser} {prefix}: shape {list(shape)} does not hold "
                             f"its {len(values)} values")
    return np.asarray(values, dtype=np.float32).reshape(shape)
