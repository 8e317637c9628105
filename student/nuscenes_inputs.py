"""Camera inputs of a nuScenes split read with nuscenes-devkit, for evaluation only.

Training reads everything from the cache; evaluation runs on a split without a cache (the student
never needs a teacher at test time), so it reads the six cameras' image paths, intrinsics, extrinsics
and ego poses of every key frame from the nuScenes tables here. Samples come in the split's scene
order, then by time, like the exporter's.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from cache_schema.errors import UserInputError
from cache_schema.layout import CAMERA_NAMES

from .data.cameras import CameraSetup

LIDAR_NAME = "LIDAR_TOP"
# Which version suffix a predefined split needs (DetectionEval asserts on it).
_SPLIT_VERSION = {"train": "trainval", "val": "trainval", "train_detect": "trainval", "train_track": "trainval",
                  "test": "test", "mini_train": "mini", "mini_val": "mini"}


def _pose(record: dict) -> np.ndarray:
    from pyquaternion import Quaternion

    m = np.eye(4)
    m[:3, :3] = Quaternion(record["rotation"]).rotation_matrix
    m[:3, 3] = record["translation"]
    return m


def open_nuscenes(dataroot: str | Path, version: str):
    """nuscenes-devkit's NuScenes for `dataroot`/`version`, with one-line errors for bad paths."""
    root = Path(dataroot)
    if not root.is_dir():
        raise UserInputError(f"{root}: nuScenes dataroot not found")
    if not (root / version / "sample.json").is_file():
        raise UserInputError(f"{root / version}: no nuScenes tables for version {version!r}")
    from nuscenes.nuscenes import NuScenes

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return NuScenes(version=version, dataroot=str(root), verbose=False)
    except (AssertionError, KeyError, ValueError, TypeError, IndexError, FileNotFoundError) as e:
        raise UserInputError(f"{root / version}: nuscenes-devkit cannot load the tables "
                             f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None


def split_sample_tokens(nusc, split: str) -> list[str]:
    """Key-frame tokens of the split's scenes present in this dataroot, in scene order then by time."""
    from nuscenes.utils.splits import create_splits_scenes

    scenes = create_splits_scenes()
    if split not in scenes:
        raise UserInputError(f"--split {split!r}: not a nuScenes split ({', '.join(sorted(scenes))})")
    suffix = _SPLIT_VERSION.get(split)
    if suffix and not nusc.version.endswith(suffix):
        raise UserInputError(f"--split {split!r} needs a *-{suffix} version, not {nusc.version!r}")
    by_name = {s["name"]: s for s in nusc.scene}
    tokens: list[str] = []
    for name in scenes[split]:
        scene = by_name.get(name)
        if scene is None:
            continue
        token, samples = scene["first_sample_token"], []
        while token:
            rec = nusc.get("sample", token)
            samples.append(rec)
            token = rec["next"]
        tokens.extend(s["token"] for s in sorted(samples, key=lambda s: s["timestamp"]))
    if not tokens:
        raise UserInputError(f"{nusc.dataroot}: no scene of split {split!r} in this dataroot")
    return tokens


def camera_setup(nusc, token: str, cameras: tuple[str, ...] = CAMERA_NAMES) -> CameraSetup:
    """The `CameraSetup` (same fields as the cache's calib group) of one sample."""
    sample = nusc.get("sample", token)
    lidar = nusc.get("sample_data", sample["data"][LIDAR_NAME])
    paths, intrinsics, cam_to_ego, cam_pose = [], [], [], []
    for name in cameras:
        if name not in sample["data"]:
            raise UserInputError(f"{nusc.dataroot}: sample {token} has no {name} image")
        sd = nusc.get("sample_data", sample["data"][name])
        calib = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        paths.append(sd["filename"])
        intrinsics.append(np.asarray(calib["camera_intrinsic"], dtype=np.float32))
        cam_to_ego.append(_pose(calib))
        cam_pose.append(_pose(nusc.get("ego_pose", sd["ego_pose_token"])))
    return CameraSetup(token, paths, np.stack(intrinsics), np.stack(cam_to_ego), np.stack(cam_pose),
                       _pose(nusc.get("calibrated_sensor", lidar["calibrated_sensor_token"])),
                       _pose(nusc.get("ego_pose", lidar["ego_pose_token"])))


def split_camera_setups(dataroot: str | Path, version: str, split: str) -> list[CameraSetup]:
    """Every key frame of `split` as a `CameraSetup`."""
    nusc = open_nuscenes(dataroot, version)
    return [camera_setup(nusc, t) for t in split_sample_tokens(nusc, split)]
