"""Key-frame samples of a nuScenes dataroot as small frozen dataclasses.

`NuScenesSamples` wraps nuscenes-devkit's `NuScenes` once and hands out `SampleInfo`s: paths relative to
the dataroot, calibration and poses as 4x4 float64 matrices, and ground-truth boxes in the sample's
LiDAR frame in the box convention of `cache_schema.boxes`, filtered for training (default) or the way
the devkit's detection evaluation filters them (`gt_filter`). Nothing of the devkit leaks out, so the rest of the project never touches its
tables. Works on real v1.0-mini / v1.0-trainval dataroots and on `x3kd-cache make-synthetic` output.

Frames: a `SampleInfo` is anchored at its LiDAR key frame. Its calibration is a `cache_schema.views.Calib`
(the same type the cache's calib group reads back as): `ego_pose` maps ego -> global at the LiDAR
timestamp; each camera has its own ego pose at its exposure timestamp (cameras fire up to ~50 ms after
the LiDAR), so LiDAR -> camera goes through the global frame:
    lidar_to_camera = inv(cam_to_ego) @ inv(cam_ego_pose) @ ego_pose @ lidar_to_ego
(`SampleInfo.lidar_to_camera(name)` computes it).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cache_schema.boxes import BOX_DIM
from cache_schema.errors import UserInputError
from cache_schema.frames import invert_transform, make_transform, sensor_to_lidar, transform_points, yaw_of
from cache_schema.grid import NUSCENES_CLASSES
from cache_schema.layout import CAMERA_NAMES
from cache_schema.views import Calib
from dataset_access.nuscenes.tables import LIDAR_NAME, open_nuscenes, pose, split_sample_tokens
from dataset_access.nuscenes.radar import DEFAULT_RADAR_SWEEPS, radar_points, radar_sweeps
from dataset_access.samples import CameraImage, SampleInfo, SweepInfo


def load_points(dataroot: str | os.PathLike, sample: SampleInfo, num_sweeps: int | None = None) -> np.ndarray:
    """(N, 5) float32 points (x, y, z, intensity, time_lag) in `sample`'s LiDAR frame: the key frame
    (time lag 0) followed by up to `num_sweeps` (default: all in `sample.sweeps`) previous sweeps,
    motion-compensated as CenterPoint/mmdet3d do (sweep LiDAR -> ego -> global -> key ego -> key LiDAR)
    with their time lag in seconds."""
    root = Path(dataroot)
    key = _read_pcd_bin(root / sample.lidar_path)
    parts = [np.concatenate([key[:, :4], np.zeros((len(key), 1), np.float32)], axis=1)]
    sweeps = sample.sweeps if num_sweeps is None else sample.sweeps[:num_sweeps]
    for sweep in sweeps:
        pts = _read_pcd_bin(root / sweep.lidar_path)
        to_key = sensor_to_lidar(sweep.lidar_to_ego, sweep.ego_pose, sample.lidar_to_global)
        xyz = transform_points(to_key, pts[:, :3].astype(np.float64)).astype(np.float32)
        lag = np.full((len(pts), 1), (sample.timestamp - sweep.timestamp) * 1e-6, dtype=np.float32)
        parts.append(np.concatenate([xyz, pts[:, 3:4], lag], axis=1))
    return np.concatenate(parts, axis=0)


def _read_pcd_bin(path: Path) -> np.ndarray:
    """nuScenes LiDAR file: float32 rows of (x, y, z, intensity, ring)."""
    if not path.is_file():
        raise UserInputError(f"{path}: LiDAR point file not found")
    size = path.stat().st_size
    if size % 20:  # bytes, not floats: np.fromfile would silently drop a truncated last value
        raise UserInputError(f"{path}: not a nuScenes .pcd.bin ({size} bytes is not a whole number of 5-float32 "
                             "points, 20 bytes each)")
    return np.fromfile(path, dtype=np.float32).reshape(-1, 5)


class _SampleFiles:
    """Reading a built sample's sensor files: needs the dataroot, never the tables."""

    dataroot: Path
    num_sweeps: int

    def load_points(self, sample: SampleInfo, num_sweeps: int | None = None) -> np.ndarray:
        """Key-frame points plus `num_sweeps` (default: this reader's) motion-compensated sweeps; see
        `load_points`."""
        return load_points(self.dataroot, sample, self.num_sweeps if num_sweeps is None else num_sweeps)

    def load_radar(self, sample: SampleInfo) -> np.ndarray:
        """(N, 7) radar points of the sample's `radar_sweeps` in its LiDAR frame (`dataset_access.nuscenes.radar`)."""
        return radar_points(self.dataroot, sample.radar_sweeps, sample.lidar_to_global, sample.timestamp)


@dataclass(frozen=True, eq=False)
class SampleSubset(_SampleFiles):
    """Some samples of a split, built, keyed by their index in the split (`NuScenesSamples.subset`).

    What a process that must not hold the dataset's tables (a Dask export worker) is sent: a few KB per
    sample, picklable, reading the same files as the `NuScenesSamples` it came from."""

    dataroot: Path
    num_sweeps: int
    infos: dict[int, SampleInfo]

    def __len__(self) -> int:
        return len(self.infos)

    def __getitem__(self, index: int) -> SampleInfo:
        try:
            return self.infos[index]
        except KeyError:
            raise IndexError(f"sample {index} is not in this subset (it holds {sorted(self.infos)[:5]}...)") from None

    def __iter__(self) -> Iterator[SampleInfo]:
        return iter(self.infos.values())


class NuScenesSamples(_SampleFiles, Sequence[SampleInfo]):
    """The key-frame samples of one split of a nuScenes dataroot, in scene order (the split's scene
    list), then by timestamp.

    `split` is a predefined nuScenes split (train, val, test, mini_train, mini_val, ...; it must suit
    the version) or a custom split of `<dataroot>/<version>/splits.json`. GT boxes are filtered for
    `gt_filter`:
    - "training" (default; export, teacher fitting): detection classes (`category_to_detection_name`)
      with at least one LiDAR or radar point, as mmdet3d/BEVDepth train. The export then keeps the
      boxes whose centre is on its BEV grid. A cone at 35 m that a LiDAR teacher highlights must not be
      a focal-loss negative.
    - "evaluation": what the devkit's `DetectionEval` keeps: the above, within the per-class range of
      `eval_config` (cones/barriers 30 m, pedestrians/bikes 40 m, vehicles 50 m), bicycles/motorcycles
      outside bike racks.
    Bad paths raise `UserInputError` naming the path.
    """

    def __init__(self, dataroot: str | os.PathLike, version: str, split: str, *, num_sweeps: int = 9,
                 eval_config: str = "detection_cvpr_2019", gt_filter: str = "training",
                 num_radar_sweeps: int = DEFAULT_RADAR_SWEEPS) -> None:
        if gt_filter not in ("training", "evaluation"):
            raise ValueError(f"gt_filter must be 'training' or 'evaluation', got {gt_filter!r}")
        self.gt_filter = gt_filter
        self.dataroot = Path(dataroot)
        self.version = version
        self.split = split
        self.num_sweeps = int(num_sweeps)
        if self.num_sweeps < 0:
            raise UserInputError(f"num_sweeps {num_sweeps}: must be >= 0")
        self.num_radar_sweeps = int(num_radar_sweeps)
        if self.num_radar_sweeps < 0:
            raise UserInputError(f"radar sweeps {num_radar_sweeps}: must be >= 0")
        self._nusc = open_nuscenes(self.dataroot, version)
        self._class_range = self._load_class_range(eval_config)
        self._tokens = split_sample_tokens(self._nusc, split)

    # -- construction ---------------------------------------------------------------------------------

    @staticmethod
    def _load_class_range(eval_config: str) -> dict[str, float]:
        from nuscenes.eval.common.config import config_factory

        try:
            cfg = config_factory(eval_config)
        except Exception as e:  # the devkit raises a bare assertion for unknown names
            raise UserInputError(f"eval config {eval_config!r}: not a nuscenes-devkit detection config") from e
        return dict(cfg.class_range)

    # -- sequence -------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._tokens)

    def __getitem__(self, index: int) -> SampleInfo:  # type: ignore[override]
        if isinstance(index, slice):
            raise TypeError("NuScenesSamples takes integer indices")
        return self._sample_info(self._tokens[index])

    def __iter__(self) -> Iterator[SampleInfo]:
        for token in self._tokens:
            yield self._sample_info(token)

    @property
    def sample_tokens(self) -> tuple[str, ...]:
        return tuple(self._tokens)

    def index(self, token: str, *args) -> int:  # type: ignore[override]
        """Position of the sample with `token` (faster than Sequence.index, which builds every sample)."""
        return self._tokens.index(token)

    def subset(self, indices: Iterable[int]) -> SampleSubset:
        """The samples at `indices`, built, without the tables (to send to another process)."""
        return SampleSubset(self.dataroot, self.num_sweeps, {int(i): self[int(i)] for i in indices})

    # -- building one sample --------------------------------------------------------------------------

    def sample(self, token: str) -> SampleInfo:
        """The sample with `token`, also outside the split (a previous key frame, say)."""
        return self._sample_info(token)

    def calib(self, token: str) -> Calib:
        """The calibration of the sample with `token` alone (no GT, sweeps or radar), e.g. a two-key-frame
        student's previous key frame."""
        return self._cameras(self._nusc.get("sample", token))[0]

    @property
    def nusc(self):
        """nuscenes-devkit's `NuScenes` of these tables, for the devkit's own metric and renderers
        (`dataset_access.nuscenes.metrics`); nothing outside dataset_access touches it."""
        return self._nusc

    def _cameras(self, sample: dict) -> tuple[Calib, tuple[CameraImage, ...]]:
        """The sample's calibration (its cameras in CAMERA_NAMES order, and the LiDAR) and camera images."""
        nusc, token = self._nusc, sample["token"]
        if LIDAR_NAME not in sample["data"]:
            raise UserInputError(f"{self.dataroot / self.version}: sample {token} has no {LIDAR_NAME} key frame")
        lidar_sd = nusc.get("sample_data", sample["data"][LIDAR_NAME])
        paths, intrinsics, cam_to_ego, cam_pose, cameras = [], [], [], [], []
        for name in CAMERA_NAMES:
            if name not in sample["data"]:
                raise UserInputError(f"{self.dataroot / self.version}: sample {token} has no {name} image")
            sd = nusc.get("sample_data", sample["data"][name])
            calib = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
            self._require_file(sd["filename"], "camera image")
            paths.append(sd["filename"])
            intrinsics.append(np.asarray(calib["camera_intrinsic"], dtype=np.float64))
            cam_to_ego.append(pose(calib))
            cam_pose.append(pose(nusc.get("ego_pose", sd["ego_pose_token"])))
            cameras.append(CameraImage(name=name, sample_data_token=sd["token"], timestamp=int(sd["timestamp"]),
                                       width=int(sd["width"]), height=int(sd["height"])))
        calib = Calib(paths, np.stack(intrinsics), np.stack(cam_to_ego), np.stack(cam_pose),
                      pose(nusc.get("calibrated_sensor", lidar_sd["calibrated_sensor_token"])),
                      pose(nusc.get("ego_pose", lidar_sd["ego_pose_token"])))
        return calib, tuple(cameras)

    def _sample_info(self, token: str) -> SampleInfo:
        nusc = self._nusc
        sample = nusc.get("sample", token)
        scene = nusc.get("scene", sample["scene_token"])
        calib, cameras = self._cameras(sample)
        lidar_sd = nusc.get("sample_data", sample["data"][LIDAR_NAME])
        self._require_file(lidar_sd["filename"], "LiDAR point file")

        sweeps, sd = [], lidar_sd
        while len(sweeps) < self.num_sweeps and sd["prev"]:
            sd = nusc.get("sample_data", sd["prev"])
            sweeps.append(SweepInfo(lidar_path=sd["filename"], timestamp=int(sd["timestamp"]),
                                    lidar_to_ego=pose(nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])),
                                    ego_pose=pose(nusc.get("ego_pose", sd["ego_pose_token"]))))

        boxes, labels, names, npts, ann_tokens = self._gt_boxes(sample, calib.ego_pose, calib.lidar_to_ego)
        return SampleInfo(token=token, scene_token=scene["token"], scene_name=scene["name"],
                          timestamp=int(sample["timestamp"]), lidar_path=lidar_sd["filename"],
                          calib=calib, cameras=cameras, sweeps=tuple(sweeps),
                          gt_boxes=boxes, gt_labels=labels, gt_names=names, gt_num_lidar_pts=npts[0],
                          gt_num_radar_pts=npts[1],
                          gt_tokens=ann_tokens,
                          radar_sweeps=radar_sweeps(nusc, token, self.num_radar_sweeps) if self.num_radar_sweeps else (),
                          prev_token=sample["prev"] or token)

    def _require_file(self, relative: str, what: str) -> None:
        if not (self.dataroot / relative).is_file():
            raise UserInputError(f"{self.dataroot / relative}: {what} not found")

    def _gt_boxes(self, sample: dict, ego_pose: np.ndarray, lidar_to_ego: np.ndarray):
        """The sample's annotations that `gt_filter` keeps, as LiDAR-frame boxes."""
        from nuscenes.eval.detection.utils import category_to_detection_name

        nusc = self._nusc
        anns = [nusc.get("sample_annotation", t) for t in sample["anns"]]
        racks = [a for a in anns if a["category_name"] == "static_object.bicycle_rack"]
        global_to_lidar = invert_transform(ego_pose @ lidar_to_ego)
        rows, labels, names, npts, tokens = [], [], [], [], []
        for ann in anns:
            name = category_to_detection_name(ann["category_name"])
            if name is None or name not in NUSCENES_CLASSES:
                continue
            if ann["num_lidar_pts"] + ann["num_radar_pts"] == 0:
                continue
            centre = np.asarray(ann["translation"], dtype=np.float64)
            if self.gt_filter == "evaluation":
                # The devkit measures range in the global frame from the ego position (xy only).
                if np.linalg.norm(centre[:2] - ego_pose[:2, 3]) >= self._class_range[name]:
                    continue
                if name in ("bicycle", "motorcycle") and any(_inside(centre, r) for r in racks):
                    continue
            box_to_global = make_transform(ann["rotation"], centre)
            box_to_lidar = global_to_lidar @ box_to_global
            velocity = np.nan_to_num(nusc.box_velocity(ann["token"]), nan=0.0)
            v_lidar = global_to_lidar[:3, :3] @ velocity
            w, l, h = ann["size"]
            rows.append((*box_to_lidar[:3, 3], l, w, h, yaw_of(box_to_lidar[:3, :3]), v_lidar[0], v_lidar[1]))
            labels.append(NUSCENES_CLASSES.index(name))
            names.append(name)
            npts.append((ann["num_lidar_pts"], ann["num_radar_pts"]))
            tokens.append(ann["token"])
        boxes = np.asarray(rows, dtype=np.float32).reshape(-1, BOX_DIM)
        return (boxes, np.asarray(labels, dtype=np.int64), tuple(names), np.asarray(npts, dtype=np.int32).reshape(-1, 2).T,
                tuple(tokens))


def _inside(point: np.ndarray, ann: dict) -> bool:
    """Whether a global point lies inside an annotation's box."""
    local = invert_transform(make_transform(ann["rotation"], ann["translation"]))
    p = local[:3, :3] @ point + local[:3, 3]
    w, l, h = ann["size"]
    return bool(abs(p[0]) <= l / 2 and abs(p[1]) <= w / 2 and abs(p[2]) <= h / 2)
