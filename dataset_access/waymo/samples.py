"""A Waymo v2 split as x3kd samples: the `SampleInfo`s the export, the teacher fitting and the student's
evaluation read, the same type the nuScenes reader hands out.

Frames: a sample is one 10 Hz frame; its "LiDAR frame" is Waymo's vehicle frame (the points already live
there, so `lidar_to_ego` is the identity and `ego_pose` the frame's vehicle pose). Cameras are in the
x-right, y-down, z-forward frame x3kd uses (`reader.camera_to_cv`), each at its own exposure pose.
Waymo's cameras differ in height (front 1280 rows, sides 886): every image is padded at the bottom to the
tallest camera of the frame, so that the cameras stack; `CameraImage.valid_height` says how many rows
are the camera's own (no depth target lies below it). Images stay inside the Parquet files: a camera's
path is a reference `{split}/camera_image/{segment}.parquet#frame=..&camera=..&height=..` that
`dataset_access.images.read_rgb` resolves. Previous frames of the segment serve as LiDAR sweeps.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from cache_schema.errors import UserInputError
from cache_schema.frames import sensor_to_lidar, transform_points
from cache_schema.grid import ClassSetup
from cache_schema.views import Calib
from dataset_access.samples import CameraImage, SampleInfo, SweepInfo
from dataset_access.waymo.reader import WaymoV2, camera_to_cv
from dataset_access.waymo.schema import BOX_TYPES, LEVEL_2, WAYMO_CLASSES

WAYMO_VERSION = "waymo-v2"
# CenterHead tasks: vehicles alone, the two kinds of people together (similar sizes), signs alone.
WAYMO_TASKS: tuple[tuple[str, ...], ...] = (("vehicle",), ("pedestrian", "cyclist"), ("sign",))
WAYMO_CLASS_SETUP = ClassSetup(WAYMO_CLASSES, WAYMO_TASKS)
FEW_POINTS = 5  # Waymo's rule: a box with at most this many LiDAR points counts as LEVEL_2


def is_waymo_version(version: str | None) -> bool:
    return version == WAYMO_VERSION


def _token(segment: str, timestamp: int) -> str:
    return f"{segment}_{timestamp}"


def image_reference(split: str, segment: str, timestamp: int, camera_id: int, height: int) -> str:
    """A camera image inside the dataset's Parquet files, as a path relative to the root."""
    return f"{split}/camera_image/{segment}.parquet#frame={timestamp}&camera={camera_id}&height={height}"


def lidar_reference(split: str, segment: str, timestamp: int) -> str:
    return f"{split}/lidar/{segment}.parquet#frame={timestamp}"


def parse_reference(path: str | os.PathLike) -> tuple[Path, dict[str, int]]:
    """(the Parquet file, {key: value}) of a reference made by `image_reference` / `lidar_reference`."""
    text = str(path)
    file, _, fragment = text.partition("#")
    try:
        fields = {k: int(v) for k, v in (part.split("=") for part in fragment.split("&"))}
    except ValueError:
        raise UserInputError(f"{text}: not a Waymo frame reference (file.parquet#frame=..&camera=..)") from None
    return Path(file), fields


def is_reference(path: str | os.PathLike) -> bool:
    return ".parquet#frame=" in str(path)


class _FrameFiles:
    """Reading a built sample's points: needs the root, never the split's listing."""

    dataroot: Path
    num_sweeps: int

    def load_points(self, sample: SampleInfo, num_sweeps: int | None = None) -> np.ndarray:
        return load_waymo_points(self.dataroot, sample, self.num_sweeps if num_sweeps is None else num_sweeps)

    def load_radar(self, sample: SampleInfo) -> np.ndarray:
        return np.zeros((0, 7), np.float32)  # Waymo has no radar


class WaymoSamples(_FrameFiles, Sequence[SampleInfo]):
    """The frames of one split (`training`, `validation`) of a v2 root, segments in name order, frames in
    time; GT boxes of the detection classes (`WAYMO_CLASSES`) with at least one LiDAR point (Waymo
    labels nothing the LiDAR did not see), both filters alike (Waymo scores every such box). Bad paths and
    malformed files are `UserInputError`s naming the file."""

    def __init__(self, dataroot: str | os.PathLike, split: str, *, num_sweeps: int = 0,
                 gt_filter: str = "training", num_radar_sweeps: int = 0) -> None:
        if gt_filter not in ("training", "evaluation"):
            raise ValueError(f"gt_filter must be 'training' or 'evaluation', got {gt_filter!r}")
        if num_sweeps < 0:
            raise UserInputError(f"num_sweeps {num_sweeps}: must be >= 0")
        self.dataroot = Path(dataroot)
        self.version = WAYMO_VERSION
        self.split = split
        self.num_sweeps = int(num_sweeps)
        self.gt_filter = gt_filter
        self.data = WaymoV2(dataroot, split)
        for segment in self.data.segments:
            self.data.check_segment(segment)
        self._frames = self.data.frames()
        self._index = {_token(s, t): i for i, (s, t) in enumerate(self._frames)}
        self._poses: dict[str, dict[int, np.ndarray]] = {}

    @property
    def class_setup(self) -> ClassSetup:
        return WAYMO_CLASS_SETUP

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, index: int) -> SampleInfo:  # type: ignore[override]
        if isinstance(index, slice):
            raise TypeError("WaymoSamples takes integer indices")
        return self._sample_info(*self._frames[index])

    def __iter__(self) -> Iterator[SampleInfo]:
        for segment, ts in self._frames:
            yield self._sample_info(segment, ts)

    @property
    def sample_tokens(self) -> tuple[str, ...]:
        return tuple(_token(s, t) for s, t in self._frames)

    def index(self, token: str, *args) -> int:  # type: ignore[override]
        try:
            return self._index[token]
        except KeyError:
            raise ValueError(f"{token} is not a frame of {self.dataroot / self.split}") from None

    def sample(self, token: str) -> SampleInfo:
        return self[self.index(token)]

    def calib(self, token: str) -> Calib:
        return self.sample(token).calib

    def subset(self, indices: Iterable[int]) -> "WaymoSampleSubset":
        return WaymoSampleSubset(self.dataroot, self.num_sweeps, {int(i): self[int(i)] for i in indices})

    # -- building one sample ----------------------------------------------------------------------------

    def _segment_poses(self, segment: str) -> dict[int, np.ndarray]:
        if segment not in self._poses:
            from dataset_access.waymo.schema import KEY_TIMESTAMP, column

            table = self.data.read("vehicle_pose", segment)
            stamps = table.column(KEY_TIMESTAMP).to_numpy()
            mats = table.column(column("vehicle_pose", "world_from_vehicle.transform")).to_pylist()
            # one segment at a time: frames are visited segment by segment
            self._poses = {segment: {int(t): np.asarray(m, np.float64).reshape(4, 4) for t, m in zip(stamps, mats)}}
        return self._poses[segment]

    def _sample_info(self, segment: str, ts: int) -> SampleInfo:
        frame = self.data.frame(segment, ts, points=False, images=False)
        if not frame.cameras:
            raise UserInputError(f"{self.data.path('camera_image', segment)}: frame {ts} has no camera images")
        height = max(c.height for c in frame.cameras)
        token = _token(segment, ts)
        calib = Calib([image_reference(self.split, segment, ts, c.camera_id, height) for c in frame.cameras],
                      np.stack([c.intrinsics for c in frame.cameras]),
                      np.stack([camera_to_cv(c.extrinsic) for c in frame.cameras]),
                      np.stack([c.pose for c in frame.cameras]), np.eye(4), frame.vehicle_pose)
        cameras = tuple(CameraImage(name=c.name, sample_data_token=f"{token}_{c.camera_id}",
                                    timestamp=int(round(c.pose_timestamp * 1e6)), width=c.width, height=height,
                                    valid_height=c.height) for c in frame.cameras)
        # The segment's earlier frames, newest first (frames are listed segment by segment, in time).
        position = self._index[token]
        earlier = [t for s, t in self._frames[max(0, position - max(self.num_sweeps, 1)):position] if s == segment][::-1]
        poses = self._segment_poses(segment) if earlier and self.num_sweeps else {}
        sweeps = tuple(SweepInfo(lidar_path=lidar_reference(self.split, segment, t), timestamp=t,
                                 lidar_to_ego=np.eye(4), ego_pose=poses[t]) for t in earlier[:self.num_sweeps])
        prev = _token(segment, earlier[0]) if earlier else token
        keep = np.array([BOX_TYPES.get(int(t)) in WAYMO_CLASSES for t in frame.box_types], bool) \
            & (frame.box_num_points > 0)
        names = tuple(BOX_TYPES[int(t)] for t in frame.box_types[keep])
        boxes = np.concatenate([frame.boxes[keep], frame.box_speed[keep][:, :2]], axis=1).astype(np.float32)
        return SampleInfo(token=token, scene_token=segment, scene_name=segment, timestamp=int(ts),
                          lidar_path=lidar_reference(self.split, segment, ts), calib=calib, cameras=cameras,
                          sweeps=sweeps, gt_boxes=boxes,
                          gt_labels=np.array([WAYMO_CLASSES.index(n) for n in names], np.int64),
                          gt_names=names, gt_num_lidar_pts=frame.box_num_points[keep].astype(np.int32),
                          gt_num_radar_pts=np.zeros(int(keep.sum()), np.int32),
                          gt_tokens=tuple(np.asarray(frame.box_ids, dtype=object)[keep]) if len(frame.box_ids) else (),
                          prev_token=prev, gt_difficulty=np.where(
                              (frame.box_difficulty[keep] == LEVEL_2) | (frame.box_num_points[keep] <= FEW_POINTS),
                              2, 1).astype(np.int8),
                          gt_synced_boxes=frame.synced_boxes[keep].astype(np.float32))


class WaymoSampleSubset(_FrameFiles):
    """Some frames of a split, built (for a Dask export worker, which must not list the split again)."""

    def __init__(self, dataroot: Path, num_sweeps: int, infos: dict[int, SampleInfo]) -> None:
        self.dataroot, self.num_sweeps, self.infos = Path(dataroot), num_sweeps, infos

    def __len__(self) -> int:
        return len(self.infos)

    def __getitem__(self, index: int) -> SampleInfo:
        return self.infos[index]

    def __iter__(self) -> Iterator[SampleInfo]:
        return iter(self.infos.values())


@lru_cache(maxsize=8)
def _split(dataroot: Path, split: str) -> WaymoV2:
    return WaymoV2(dataroot, split)


def _frame_points(dataroot: Path, reference: str) -> np.ndarray:
    file, fields = parse_reference(reference)
    split, _, segment_file = Path(file).parts[-3:]
    return _split(dataroot, split).points(Path(segment_file).stem, fields["frame"])


def load_waymo_points(dataroot: str | os.PathLike, sample: SampleInfo, num_sweeps: int) -> np.ndarray:
    """(N, 5) float32 points (x, y, z, intensity, time lag s) in `sample`'s vehicle frame: the frame's
    points of every laser and both returns, then up to `num_sweeps` previous frames' moved into it."""
    root = Path(dataroot)
    key = _frame_points(root, sample.lidar_path)
    parts = [np.concatenate([key[:, :3], key[:, 4:5], np.zeros((len(key), 1), np.float32)], axis=1)]
    for sweep in sample.sweeps[:num_sweeps]:
        pts = _frame_points(root, sweep.lidar_path)
        to_key = sensor_to_lidar(sweep.lidar_to_ego, sweep.ego_pose, sample.lidar_to_global)
        xyz = transform_points(to_key, pts[:, :3].astype(np.float64)).astype(np.float32)
        lag = np.full((len(pts), 1), (sample.timestamp - sweep.timestamp) * 1e-6, np.float32)
        parts.append(np.concatenate([xyz, pts[:, 4:5], lag], axis=1))
    return np.concatenate(parts, axis=0)
